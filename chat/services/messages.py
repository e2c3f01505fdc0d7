"""Messages: the user's side of a send (validate, send, edit, regenerate), each in one transaction.

Each send ends by creating a queued reply (chat.services.replies), which a worker's task then writes.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.utils import timezone

from chat import events, selectors
from chat.errors import ChatError, ReplyInFlight, StaleEdit, TooManyInFlight
from chat.models import Conversation, Message
from chat.services.conversations import title_from_text
from chat.services.replies import reply_create
from inference.quotas import prompt_fit_check, reply_allowed_check
from inference.selectors import limits_get

logger = logging.getLogger(__name__)

# First key of the transaction-level advisory lock that serializes one user's sends (the second is their id).
SEND_LOCK = 0x67707473  # "gpts"


def validate_message_text(text: str) -> str:
    """Return *text* if it can be sent, else raise ChatError saying what is wrong.

    The one check of a message's text, for the form post and the socket alike: PostgreSQL stores neither a NUL
    character nor a lone UTF-16 surrogate (which JSON's "\\ud800" escape can carry).
    """
    if not text.strip():
        raise ChatError("Type a message first.")
    limit = settings.GPTOSS_MAX_MESSAGE_CHARS
    if len(text) > limit:
        raise ChatError(f"This message is {len(text):,} characters long; the limit is {limit:,}.")
    if "\x00" in text:
        raise ChatError(
            "This message contains a NUL character, which cannot be stored. Remove it and send again."
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ChatError(
            "This message contains an invalid character (a lone UTF-16 surrogate). Remove it and send again."
        ) from None
    return text


class AlreadySent(Exception):
    """The browser sent this message before (its acknowledgement was lost with the connection)."""


def message_send(*, conversation: Conversation, text: str, client_id: str = "") -> tuple[Message, Message]:
    """Store the user's message and a queued reply in one transaction; enqueue the reply on commit.

    Raises ChatError (and stores nothing) when the text is invalid, the conversation is already answering or
    the owner has too many replies in flight. A browser that resends with the same *client_id* (it never got
    the acknowledgement) gets AlreadySent instead of a second copy.
    """
    validate_message_text(text)
    sent_key = f"sent:{conversation.pk}:{client_id[:64]}" if client_id else ""
    if sent_key and _cache_get(sent_key):
        raise AlreadySent()
    _check_fits(conversation, text)
    with transaction.atomic():
        locked = _locked(conversation)
        budget = reply_queue_check(locked)
        user_message, reply = _question_create(conversation=locked, text=text, reserved_tokens=budget)
        if not locked.title:
            locked.title = title_from_text(text)
            locked.save(update_fields=["title"])
            events.title_changed(locked.pk, locked.title)
        if sent_key:
            transaction.on_commit(lambda: _cache_set(sent_key, reply.pk))
    conversation.refresh_from_db()
    return user_message, reply


def _cache_get(key: str) -> object:
    try:
        return cache.get(key)
    except Exception:  # Redis down: no duplicate check, the send goes on
        return None


def _cache_set(key: str, value: object) -> None:
    try:
        cache.set(key, value, timeout=3600)
    except Exception:
        logger.warning("could not remember sent message %s", key)


def message_edit(*, conversation: Conversation, message_id: int, text: str) -> tuple[Message, Message]:
    """Replace the latest question of *conversation* by *text* and reply to it anew.

    The old question and its replies are kept but superseded (hidden, and left out of the prompt). Only the
    latest question can be edited, and only while no reply is in flight.
    """
    validate_message_text(text)
    _check_fits(conversation, text)
    with transaction.atomic():
        locked = _locked(conversation)
        latest = selectors.message_latest_get(conversation=locked, role=Message.Role.USER)
        if latest is None or latest.pk != message_id:
            raise StaleEdit()
        budget = reply_queue_check(locked)
        reply_ids = latest.replies.filter(superseded_at__isnull=True).values_list("pk", flat=True)
        superseded = [latest.pk, *reply_ids]
        Message.objects.filter(pk__in=superseded).update(superseded_at=timezone.now())
        events.messages_removed(locked.pk, superseded)
        return _question_create(conversation=locked, text=text, reserved_tokens=budget)


def message_regenerate(*, conversation: Conversation, message_id: int) -> Message:
    """Reply to the latest question again; the previous reply *message_id* is kept but superseded."""
    with transaction.atomic():
        locked = _locked(conversation)
        latest = selectors.message_latest_get(conversation=locked, role=Message.Role.ASSISTANT)
        if latest is None or latest.pk != message_id or latest.reply_to is None:
            raise StaleEdit()
        budget = reply_queue_check(locked)
        _check_fits(locked, latest.reply_to.content)
        Message.objects.filter(pk=latest.pk).update(superseded_at=timezone.now())
        events.messages_removed(locked.pk, [latest.pk])
        reply = reply_create(conversation=locked, reply_to=latest.reply_to, reserved_tokens=budget)
        _touch(locked)
        return reply


def _question_create(
    *, conversation: Conversation, text: str, reserved_tokens: int
) -> tuple[Message, Message]:
    user_message = Message.objects.create(
        conversation=conversation, role=Message.Role.USER, status=Message.Status.DONE, content=text
    )
    reply = reply_create(
        conversation=conversation,
        reply_to=user_message,
        reserved_tokens=reserved_tokens,
        announce_question=True,
    )
    _touch(conversation)
    return user_message, reply


def _locked(conversation: Conversation) -> Conversation:
    """Return *conversation* locked until the transaction ends, with its owner (every check reads them)."""
    locking = Conversation.objects.select_for_update(of=("self",)).select_related("owner")
    return locking.get(pk=conversation.pk)


def _touch(conversation: Conversation) -> None:
    conversation.updated_at = timezone.now()
    conversation.save(update_fields=["updated_at"])


def _owner_lock(conversation: Conversation) -> None:
    """Wait until no other send of the conversation's owner is deciding, in any web process, until commit.

    One user's sends are serialized (not only one conversation's), so the counts that follow see every reply
    committed before: the in-flight limit and the daily quota hold however many sends arrive at once. Under
    READ COMMITTED each later statement of this transaction reads the commits made before the lock was won.
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [SEND_LOCK, conversation.owner_id])


def reply_queue_check(conversation: Conversation) -> int:
    """Raise ChatError unless the conversation's owner may queue a reply now; return the tokens it may use.

    Call it in the send's transaction, with the conversation row locked, before any write. The chat page's
    sends and the API's requests both pass here: one in-flight limit, one quota, one lock per user.
    """
    _owner_lock(conversation)
    if selectors.message_in_flight_get(conversation=conversation) is not None:
        raise ReplyInFlight()
    limits = limits_get(user=conversation.owner)
    if selectors.replies_in_flight_count(user=conversation.owner) >= limits.max_in_flight:
        raise TooManyInFlight(limits.max_in_flight)
    return reply_allowed_check(
        user=conversation.owner,
        model_name=conversation.model_name,
        limit=conversation.max_answer_tokens,
        limits=limits,
    )


def _check_fits(conversation: Conversation, text: str) -> None:
    """Refuse now a question that cannot fit the model's context even alone, rather than after the queue."""
    prompt_fit_check(conversation=conversation, text=text)
