"""Replies asked for through the OpenAI-compatible API (chat.api): the same checks, queue and quota as a send
from the chat page, in a conversation the request makes for itself."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from chat import events
from chat.errors import ChatError
from chat.models import ApiPrompt, ApiRequest, ApiSampling, Conversation, Message
from chat.services.branches import branch_move
from chat.services.messages import reply_queue_check
from chat.services.replies import reply_cancel, reply_create
from gptoss_web.reads import reads_once
from inference.quotas import api_prompt_fit_check

logger = logging.getLogger(__name__)

# An API reply whose client left is kept this long after it ended, then deleted (its usage figures stay).
SWEEP_AFTER = timedelta(minutes=1)


class ResponseNotFound(ChatError):
    """A response id that is not one of the user's stored responses (or never was)."""

    def __init__(self, response_id: str) -> None:
        super().__init__(f"No response with id {response_id!r} found: it is not stored or not yours.")


@reads_once()  # its checks and its enqueue read the model's row once
def api_reply_queue(
    *,
    owner: User,
    kind: str,
    model_name: str,
    effort: str,
    prompt: ApiPrompt,
    sampling: ApiSampling,
    max_tokens: int | None,
    store: bool = False,
    after: ApiRequest | None = None,
    response_id: str | None = None,
    options: dict[str, Any] | None = None,
) -> Message:
    """Queue a reply for an API request; raise ChatError (storing nothing) when it may not be queued.

    Without *store* the conversation is ephemeral: listed nowhere, deleted with `api_reply_forget` once the
    reply is delivered. With it, the reply is kept in a conversation of the user's, marked as coming from
    the API: a new one, or the one of the stored response it follows (*after*). The reply holds at most
    *max_tokens* (else the model's answer budget) against the quota.
    """
    api_prompt_fit_check(model_name=model_name, effort=effort, prompt=prompt, max_tokens=max_tokens)
    with transaction.atomic():
        if after is not None and store:
            conversation = Conversation.objects.select_for_update().get(pk=after.reply.conversation_id)
            conversation.model_name, conversation.reasoning_effort = model_name, effort
            conversation.updated_at = timezone.now()
            conversation.save(update_fields=["model_name", "reasoning_effort", "updated_at"])
        else:
            conversation = Conversation.objects.create(
                owner=owner,
                model_name=model_name,
                reasoning_effort=effort,
                ephemeral=not store,
                from_api=store,
                title=_title(prompt["user"]) if store else "API request",
            )
            if store:  # listed: the owner's open tabs show it
                events.sidebar_changed(owner.pk, conversation.pk, "created")
        budget = reply_queue_check(conversation)
        if max_tokens is not None:
            budget = min(budget, max_tokens)
        # The stored response it follows is where its branch goes on (`previous_response_id` may name an
        # older one than the conversation's last: a branch, as an edit makes on the chat page).
        follows = after.reply if after is not None and store else None
        if follows is not None and after is not None and _continues_turn(after.prompt, prompt):
            # Function outputs that carry the stored turn on: the reply answers the same question.
            question = follows.reply_to
        else:
            question = Message.objects.create(
                conversation=conversation,
                role=Message.Role.USER,
                status=Message.Status.DONE,
                content=prompt["user"],
                parent=follows,
            )
            follows = question
        assert question is not None
        reply = reply_create(
            conversation=conversation, reply_to=question, reserved_tokens=budget, parent=follows
        )
        ApiRequest.objects.create(
            reply=reply,
            kind=kind,
            prompt=prompt,
            sampling=sampling,
            response_id=response_id,
            options=options or {},
        )
    logger.info("reply %s queued for an API request of user %s", reply.pk, owner.pk)
    return reply


def _title(text: str) -> str:
    line = " ".join(text.split())
    return line if len(line) <= 60 else line[:59].rstrip() + "…"


def _continues_turn(before: ApiPrompt, now: ApiPrompt) -> bool:
    """Whether *now* is *before*'s turn carried on (with function outputs), rather than a new question."""
    return (
        len(now["history"]) == len(before["history"]) and now["user"] == before["user"] and bool(now["steps"])
    )


def api_response_get(*, owner: User, response_id: str) -> ApiRequest:
    """Return *owner*'s response *response_id* (stored, or still running); raise ResponseNotFound."""
    request = (
        ApiRequest.objects.select_related("reply__conversation")
        .filter(response_id=response_id, reply__conversation__owner_id=owner.pk)
        .first()
    )
    if request is None:
        raise ResponseNotFound(response_id)
    return request


def api_response_delete(*, owner: User, response_id: str) -> None:
    """Delete *owner*'s stored response: its reply, and its question when no other reply answers it; the
    conversation goes with its last message. A response still running is cancelled first."""
    request = api_response_get(owner=owner, response_id=response_id)
    with transaction.atomic():
        reply = Message.objects.select_for_update().get(pk=request.reply_id)
        conversation = Conversation.objects.select_for_update().get(pk=reply.conversation_id)
        if reply.in_flight:
            reply_cancel(conversation=conversation)
        question = reply.reply_to
        gone = {reply.pk}
        if question is not None and not question.replies.exclude(pk=reply.pk).exists():
            gone.add(question.pk)
        # The turns after it stay: they follow what came before it, on the same branch.
        above = reply.parent
        while above is not None and above.pk in gone:
            above = above.parent
        Message.objects.filter(parent_id__in=gone).exclude(pk__in=gone).update(parent=above)
        if conversation.current_leaf_id in gone:
            if above is not None:
                branch_move(conversation=conversation, leaf=above)
            else:
                conversation.current_leaf = None
                conversation.save(update_fields=["current_leaf"])
        Message.objects.filter(pk__in=gone).delete()
        if not conversation.messages.exists():
            conversation.delete()
    logger.info("response %s deleted by user %s", response_id, owner.pk)


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
