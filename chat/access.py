"""Fetch-and-check in one call: anything a user does not own does not exist for them (404)."""

from __future__ import annotations

from collections.abc import Mapping
from importlib import import_module
from typing import Any

from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.contrib.sessions.backends.base import SessionBase
from django.contrib.sessions.backends.db import SessionStore as DatabaseSessionStore
from django.http import Http404
from django.utils import timezone
from django.utils.crypto import constant_time_compare

from chat.models import ApiKey, Conversation, Message, Project, Share


def access_conversation(
    user: AbstractBaseUser | AnonymousUser, conversation_id: int | str, *, lock: bool = False
) -> Conversation:
    """Return the conversation *conversation_id* if *user* owns it, else raise Http404.

    With *lock*, the row is locked for the rest of the transaction (callers must be inside one).
    """
    if not user.is_authenticated:
        raise Http404("No such conversation")
    try:
        pk = int(conversation_id)
    except (TypeError, ValueError):
        raise Http404("No such conversation") from None
    # With its owner: a send reads the owner's settings and limits next.
    queryset = Conversation.objects.select_related("owner").filter(pk=pk, owner_id=user.pk, ephemeral=False)
    if lock:
        queryset = queryset.select_for_update(of=("self",))
    conversation = queryset.first()
    if conversation is None:
        raise Http404("No such conversation")
    return conversation


def access_message(user: AbstractBaseUser | AnonymousUser, message_id: int | str) -> Message:
    """Return the message *message_id* if *user* owns its conversation, else raise Http404."""
    if not user.is_authenticated:
        raise Http404("No such message")
    try:
        pk = int(message_id)
    except (TypeError, ValueError):
        raise Http404("No such message") from None
    message = (
        Message.objects.select_related("conversation").filter(pk=pk, conversation__owner_id=user.pk).first()
    )
    if message is None:
        raise Http404("No such message")
    return message


def access_api_key(user: AbstractBaseUser | AnonymousUser, key_id: int | str) -> ApiKey:
    """Return the API key *key_id* if *user* owns it, else raise Http404."""
    if not user.is_authenticated:
        raise Http404("No such API key")
    try:
        pk = int(key_id)
    except (TypeError, ValueError):
        raise Http404("No such API key") from None
    key = ApiKey.objects.filter(pk=pk, owner_id=user.pk).first()
    if key is None:
        raise Http404("No such API key")
    return key


def access_share(user: AbstractBaseUser | AnonymousUser, share_id: int | str) -> Share:
    """Return the share *share_id* if *user* made it (revoked or not), else raise Http404."""
    if not user.is_authenticated:
        raise Http404("No such share")
    try:
        pk = int(share_id)
    except (TypeError, ValueError):
        raise Http404("No such share") from None
    share = Share.objects.filter(pk=pk, owner_id=user.pk).first()
    if share is None:
        raise Http404("No such share")
    return share


def access_shared(user: AbstractBaseUser | AnonymousUser, token: str) -> Share:
    """Return the share whose link carries *token*, for any signed-in user, while it is not revoked; else
    raise Http404 (an unknown, malformed or revoked link alike)."""
    if not user.is_authenticated or not token or len(token) > 64:
        raise Http404("No such share")
    share = Share.objects.select_related("owner").filter(token=token, revoked_at__isnull=True).first()
    if share is None:
        raise Http404("No such share")
    return share


def sessions_signed_in(
    *, sessions: Mapping[str, int], users: Mapping[int, AbstractBaseUser] | None = None
) -> set[str]:
    """Return the keys of *sessions* (session key → the user id it signed in) that are still signed in.

    The check of django.contrib.auth.get_user, for many sessions at once: the session still exists and has
    not expired (logout deletes it), it names that user through a configured backend, its auth hash matches
    the user's password (a password change elsewhere rotates it; update_session_auth_hash stores the new one
    in the changing session) under SECRET_KEY or a fallback, and the user is active. With the database session
    backend it costs two queries whatever the number of sessions, one when the caller passes the *users* it
    has just read (each with its password and is_active).
    """
    if not sessions:
        return set()
    data = _session_data(set(sessions))
    if users is None:
        users = {
            user.pk: user
            for user in get_user_model()
            ._default_manager.filter(pk__in=set(sessions.values()))
            .only("pk", "password", "is_active")
        }
    hashes: dict[int, set[str]] = {}
    signed_in = set()
    for key, user_id in sessions.items():
        session, user = data.get(key), users.get(user_id)
        if session is None or user is None or not user.is_active:
            continue
        if str(session.get(SESSION_KEY)) != str(user_id):
            continue
        if session.get(BACKEND_SESSION_KEY) not in settings.AUTHENTICATION_BACKENDS:
            continue
        if user_id not in hashes:
            hashes[user_id] = {user.get_session_auth_hash(), *user.get_session_auth_fallback_hash()}
        session_hash = session.get(HASH_SESSION_KEY)
        if isinstance(session_hash, str) and any(
            constant_time_compare(session_hash, h) for h in hashes[user_id]
        ):
            signed_in.add(key)
    return signed_in


def _session_data(keys: set[str]) -> dict[str, dict[str, Any]]:
    """Return the stored data of the sessions in *keys* that exist and have not expired."""
    store_class: type[SessionBase] = import_module(settings.SESSION_ENGINE).SessionStore
    if issubclass(store_class, DatabaseSessionStore):  # db and cached_db: logout deletes the row
        rows = store_class.get_model_class().objects.filter(
            session_key__in=keys, expire_date__gt=timezone.now()
        )
        decoder = store_class()
        return {key: decoder.decode(raw) for key, raw in rows.values_list("session_key", "session_data")}
    # Cache, file or signed-cookie sessions: each store looks its session up; a missing one loads as {}.
    return {key: store_class(key).load() for key in keys}


def access_project(user: AbstractBaseUser | AnonymousUser, project_id: int | str) -> Project:
    """Return the project *project_id* if *user* owns it, else raise Http404."""
    if not user.is_authenticated:
        raise Http404("No such project")
    try:
        pk = int(project_id)
    except (TypeError, ValueError):
        raise Http404("No such project") from None
    project = Project.objects.filter(pk=pk, owner_id=user.pk).first()
    if project is None:
        raise Http404("No such project")
    return project
