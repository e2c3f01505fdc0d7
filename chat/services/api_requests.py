"""Replies asked for through the OpenAI-compatible API (chat.api): the same checks, queue and quota as a send
from the chat page, in a conversation the request makes for itself."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from chat.models import ApiPrompt, ApiRequest, ApiSampling, Conversation, Message
from chat.services.messages import reply_queue_check
from chat.services.replies import reply_create
from inference.quotas import api_prompt_fit_check

logger = logging.getLogger(__name__)

# An API reply whose client left is kept this long after it ended, then deleted (its usage figures stay).
SWEEP_AFTER = timedelta(minutes=1)


def api_reply_queue(
    *,
    owner: User,
    kind: str,
    model_name: str,
    effort: str,
    prompt: ApiPrompt,
    sampling: ApiSampling,
    max_tokens: int | None,
) -> Message:
    """Queue a reply for an API request; raise ChatError (storing nothing) when it may not be queued.

    The conversation is ephemeral: listed nowhere, deleted with `api_reply_forget` once the reply is
    delivered. The reply holds at most *max_tokens* (else the model's answer budget) against the quota.
    """
    api_prompt_fit_check(model_name=model_name, effort=effort, prompt=prompt, max_tokens=max_tokens)
    with transaction.atomic():
        conversation = Conversation.objects.create(
            owner=owner, model_name=model_name, reasoning_effort=effort, ephemeral=True, title="API request"
        )
        budget = reply_queue_check(conversation)
        if max_tokens is not None:
            budget = min(budget, max_tokens)
        question = Message.objects.create(
            conversation=conversation,
            role=Message.Role.USER,
            status=Message.Status.DONE,
            content=prompt["user"],
        )
        reply = reply_create(conversation=conversation, reply_to=question, reserved_tokens=budget)
        ApiRequest.objects.create(reply=reply, kind=kind, prompt=prompt, sampling=sampling)
    logger.info("reply %s queued for an API request of user %s", reply.pk, owner.pk)
    return reply


def api_reply_forget(*, reply: Message) -> None:
    """Delete the ephemeral conversation of a delivered API reply; its usage figures stay."""
    Conversation.objects.filter(pk=reply.conversation_id, ephemeral=True).delete()


def api_reply_finished(*, reply: Message, finish_reason: str) -> None:
    """Record why an API reply ended (called in the reply's final write, by the GPU worker)."""
    ApiRequest.objects.filter(reply_id=reply.pk).update(finish_reason=finish_reason)


def api_conversations_sweep(*, older_than: timedelta = SWEEP_AFTER) -> int:
    """Delete the ephemeral conversations whose reply ended more than *older_than* ago (their client left
    before it ended, so nobody forgot them); return how many. The reaper calls it every round."""
    ended = timezone.now() - older_than
    stale = (
        Conversation.objects.filter(ephemeral=True)
        .exclude(messages__status__in=Message.IN_FLIGHT)
        .exclude(messages__finished_at__gt=ended)
    )
    _, deleted = Conversation.objects.filter(pk__in=stale.values("pk")).delete()
    count = deleted.get("chat.Conversation", 0)
    if count:
        logger.info("%d API conversations deleted after their client left", count)
    return count
