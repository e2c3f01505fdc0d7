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


def finished_turns(*, reply: Message) -> list[tuple[str, str]]:
    """Return the (user text, answer text) pairs before *reply*'s question, oldest first.

    Replies that were stopped or interrupted count with the text they have; failed or empty ones leave their
    question out, so the model never sees a question without its answer.
    """
    answers = (
        Message.objects.filter(
            conversation_id=reply.conversation_id,
            role=Message.Role.ASSISTANT,
            reply_to__isnull=False,
            reply_to__created_at__lt=reply.reply_to.created_at if reply.reply_to else reply.created_at,
            status__in=[Message.Status.DONE, Message.Status.CANCELLED, Message.Status.INTERRUPTED],
        )
        .exclude(content="")
        .select_related("reply_to")
        .order_by("reply_to__created_at", "reply_to_id", "created_at")
    )
    latest: dict[int, tuple[str, str]] = {}
    for answer in answers:  # a regenerated question keeps only its latest answer
        assert answer.reply_to is not None
        latest[answer.reply_to.pk] = (answer.reply_to.content, answer.content)
    return list(latest.values())
