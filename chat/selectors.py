"""Reads: what a page or a consumer shows."""

from __future__ import annotations

from django.contrib.auth.models import User
from django.db.models import QuerySet

from chat.models import Conversation, Message


def conversation_list(*, user: User) -> QuerySet[Conversation]:
    """Return *user*'s conversations, most recently active first."""
    return Conversation.objects.filter(owner_id=user.pk).order_by("-updated_at", "-id")


def message_list(*, conversation: Conversation) -> QuerySet[Message]:
    """Return the messages of *conversation* in the order they were written."""
    return conversation.messages.order_by("created_at", "id")


def message_in_flight_get(*, conversation: Conversation) -> Message | None:
    """Return the conversation's queued or streaming reply, if any."""
    return conversation.messages.filter(status__in=Message.IN_FLIGHT).first()


def generations_in_flight_count(*, user: User) -> int:
    """Return how many replies of *user* are queued or streaming, over all conversations."""
    return Message.objects.filter(conversation__owner_id=user.pk, status__in=Message.IN_FLIGHT).count()
