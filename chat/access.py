"""Fetch-and-check in one call: anything a user does not own does not exist for them (404)."""

from __future__ import annotations

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.http import Http404

from chat.models import Conversation, Message


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
    queryset = Conversation.objects.filter(pk=pk, owner_id=user.pk)
    if lock:
        queryset = queryset.select_for_update()
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
