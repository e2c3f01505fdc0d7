"""Replies: the assistant's message through its lifecycle, queued → streaming → done | cancelled | failed |
interrupted.

Created queued by a send (chat.services.messages) and enqueued on commit; then started, announced, stored as
it streams and finished by the worker's task (inference.worker.tasks), failed while queued by the serving
checks (inference.serving), interrupted or released by the reaper (inference.worker.reaper), cancelled
by Stop.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from django.db import IntegrityError, connection, transaction
from django.utils import timezone

from chat import events, selectors
from chat.errors import ReplyInFlight
from chat.models import Conversation, Message
from chat.services.branches import branch_move
from inference.dispatch import enqueue_reply
from inference.status import conversation_cache_key
from inference.tools.records import ToolCallRecord

logger = logging.getLogger(__name__)

# reply_start's claim: the oldest queued reply of the task's model (a routed task's own first), skipping rows
# another worker is claiming.
_CLAIM_SQL = """
UPDATE chat_message SET status = 'streaming', started_at = %s, task_id = %s, worker = %s
WHERE status = 'queued' AND id = (
    SELECT id FROM chat_message
    WHERE status = 'queued' AND role = 'assistant'
      AND model_name = (SELECT model_name FROM chat_message WHERE id = %s)
    ORDER BY (%s AND id = %s) DESC, created_at, id
    LIMIT 1
    FOR UPDATE SKIP LOCKED
)
RETURNING id
"""


def reply_create(
    *,
    conversation: Conversation,
    reply_to: Message,
    reserved_tokens: int,
    announce_question: bool = False,
    parent: Message | None = None,
) -> Message:
    """Create the queued assistant reply to *reply_to*, after *parent* on its branch (default: the question
    itself), and make it the conversation's current leaf; the database refuses a second one in flight.

    *conversation* must be locked by the caller's transaction (its current leaf moves).

    On commit the task is enqueued first, so the GPU waits for no broadcast; then the browsers are told of the
    question (with *announce_question*) and of the reply.
    """
    try:
        # No savepoint (two round trips on the way to the GPU): a refused insert fails the caller's whole
        # transaction, which ReplyInFlight then leaves.
        with transaction.atomic(savepoint=False):
            reply = Message.objects.create(
                conversation=conversation,
                role=Message.Role.ASSISTANT,
                status=Message.Status.QUEUED,
                reply_to=reply_to,
                parent=parent or reply_to,
                model_name=conversation.model_name,
                reasoning_effort=conversation.reasoning_effort,
                reserved_tokens=reserved_tokens,
            )
    except IntegrityError as error:
        if "message_one_generation_in_flight" in str(error):
            raise ReplyInFlight() from error
        raise
    branch_move(conversation=conversation, leaf=reply, touch=True)  # a new reply is new activity
    transaction.on_commit(lambda: _enqueue(reply))
    if announce_question:
        events.message_changed(reply_to)
    # Its place and any waiting note are read after the commit and the enqueue, off the way to the GPU.
    transaction.on_commit(lambda: _announce_queued(reply))
    return reply


def _enqueue(reply: Message) -> None:
    # Routed by the conversation's cache; an API reply's cache is its client's (never offered under this key),
    # so it goes to the shared queue.
    key = conversation_cache_key(reply.conversation_id)
    enqueue_reply(message_id=reply.pk, model_name=reply.model_name, cache_key=key)


def _announce_queued(reply: Message) -> None:
    events.message_changed(
        reply,
        queue_position=selectors.queue_position_get(message=reply),
        waiting=selectors.reply_waiting_get(message=reply),
    )


def reply_waiting_changed(updates: Sequence[tuple[int, int, int, str]]) -> None:
    """Tell queued replies their place and whether a worker serves their model: (conversation id, message id,
    position, note). Nothing is stored: the note is read from the workers' heartbeats, also on a reload."""
    events.queue_waiting(updates)


def _broadcast_queue(model_name: str) -> None:
    """Tell every reply still queued for *model_name* its new place (after one left the queue)."""
    events.queue_positions(selectors.queue_positions(model_name=model_name))


def reply_cancel(*, conversation: Conversation) -> Message | None:
    """Stop the reply in flight in *conversation* (Stop); its partial text is kept as `cancelled`.

    A queued reply ends at once. A streaming one is marked here and its worker, told through Redis, stops it
    within a step and stores the text it had; return the reply, or None when nothing was in flight.
    """
    with transaction.atomic():
        reply = (
            Message.objects.select_for_update()
            .filter(conversation_id=conversation.pk, status__in=Message.IN_FLIGHT)
            .first()
        )
        if reply is None:
            return None
        was_queued = reply.status == Message.Status.QUEUED
        reply.status = Message.Status.CANCELLED
        reply.finished_at = timezone.now()
        # Nothing generated: its tokens come back now (a streaming reply's when its worker has counted them).
        if was_queued:
            reply.reserved_tokens = 0
        reply.save(update_fields=["status", "finished_at", "reserved_tokens"])
        logger.info("reply %s of conversation %s stopped by its owner", reply.pk, conversation.pk)
        if was_queued:
            events.reply_finished(reply)
            _broadcast_queue(reply.model_name)
        else:
            events.cancel_signal(reply.pk)
            events.message_changed(reply)
    return reply


# --- From the worker's side (called by the GPU worker's task, the serving checks and the reaper) ----------


def reply_start(*, message_id: int, task_id: str, worker: str, routed: bool = False) -> Message | None:
    """Claim the oldest queued reply of *message_id*'s model; return None when none is queued.

    A *routed* task (sent to the own queue of the worker that keeps the conversation's cache) claims its own
    reply while it is still queued, else the oldest like any other: the dispatcher routes only while nothing
    waits in the model's shared queue, so no older reply is passed over (docs/architecture.md, "Routing").

    A task is a turn at the model's queue rather than a ticket for one reply: replies are generated in the
    order they were created (the order users see as their place in the queue), whatever order their tasks
    reach the broker in (re-sent after Redis lost them, or after a database outage). `SKIP LOCKED` lets two
    workers claim at once, and the conditional UPDATE makes a redelivered or duplicated task harmless: it
    finds nothing left to claim. The browsers are told by reply_announce, which the task calls once the
    engine has the prompt, and the replies still queued by queue_moved, once the first text is out.
    """
    with connection.cursor() as cursor:  # one statement, one round trip: it is on the way to the first token
        cursor.execute(_CLAIM_SQL, [timezone.now(), task_id, worker, message_id, routed, message_id])
        row = cursor.fetchone()
    if row is None:
        logger.info("no reply of reply %s's model is queued; task %s does nothing", message_id, task_id)
        return None
    claimed = row[0]
    if claimed != message_id:
        logger.info("task %s of reply %s claims the older queued reply %s", task_id, message_id, claimed)
    return Message.objects.select_related("conversation__owner", "reply_to", "api_request").get(pk=claimed)


def reply_announce(*, message: Message) -> None:
    """Tell the reply's sockets it started (the task calls queue_moved once the first text is out)."""
    events.reply_started(message)


def queue_moved(*, model_name: str) -> None:
    """Tell the replies still queued for *model_name* their new places, after one left the queue."""
    _broadcast_queue(model_name)


def reply_notice(*, message: Message, notice: str) -> None:
    """Store something the user should know about this reply (the task also streams it)."""
    Message.objects.filter(pk=message.pk).update(notice=notice[:300])


def reply_save_progress(
    *, message: Message, content: str, reasoning: str, tool_calls: list[ToolCallRecord], seq: int
) -> bool:
    """Store the text generated so far, up to stream event *seq*.

    Return False when the reply stopped streaming (Stop, deleted, interrupted): the task then stops too.
    """
    return bool(
        Message.objects.filter(pk=message.pk, status=Message.Status.STREAMING).update(
            content=content, reasoning=reasoning, tool_calls=tool_calls, stream_seq=seq
        )
    )


def reply_finish(
    *,
    message: Message,
    status: str,
    content: str,
    reasoning: str,
    tool_calls: list[ToolCallRecord],
    seq: int,
    prompt_tokens: int,
    reasoning_tokens: int,
    answer_tokens: int,
    queue_wait_ms: int | None,
    ttft_ms: int | None,
    tokens_per_second: float | None,
    error: str = "",
    retryable: bool = True,
) -> Message | None:
    """Store the final state of a reply and tell its sockets; return it, or None if it no longer exists.

    A reply stopped by the user meanwhile keeps `cancelled` but gets the text; one that the reaper marked
    `interrupted` (the worker looked dead) keeps that state and what it had. The reply's quota reservation
    ends here: call this in the transaction that records its usage, so that its tokens always count against
    the quota, as held or as used (inference.worker.tasks does).
    """
    now = timezone.now()
    fields = {
        "content": content,
        "reasoning": reasoning,
        "tool_calls": tool_calls,
        "stream_seq": seq,
        "prompt_tokens": prompt_tokens,
        "reasoning_tokens": reasoning_tokens,
        "answer_tokens": answer_tokens,
        "queue_wait_ms": queue_wait_ms,
        "ttft_ms": ttft_ms,
        "tokens_per_second": tokens_per_second,
        "error": error,
        "retryable": retryable,
        "finished_at": now,
        "reserved_tokens": 0,
    }
    with transaction.atomic():
        updated = Message.objects.filter(pk=message.pk, status=Message.Status.STREAMING).update(
            status=status, **fields
        )
        if not updated:
            Message.objects.filter(pk=message.pk, status=Message.Status.CANCELLED).update(**fields)
        final = Message.objects.filter(pk=message.pk).first()
        if final is None:
            return None
        Conversation.objects.filter(pk=message.conversation_id).update(updated_at=now)
        events.reply_finished(final)
    return final


def replies_fail_queued(*, message_ids: Sequence[int], error: str, retryable: bool) -> int:
    """Fail the replies among *message_ids* that are still queued, with *error*; return how many.

    Their tasks stay in the queue: a worker that takes one later finds it no longer queued and does nothing.
    """
    with transaction.atomic():
        failed = list(
            Message.objects.select_for_update()
            .filter(pk__in=list(message_ids), status=Message.Status.QUEUED)
            .order_by("created_at", "id")
        )
        now = timezone.now()
        for reply in failed:
            reply.status, reply.error, reply.retryable, reply.finished_at = (
                Message.Status.FAILED, error, retryable, now
            )  # fmt: skip
            reply.reserved_tokens = 0  # it generated nothing: its budget goes back to the quota
            reply.save(update_fields=["status", "error", "retryable", "finished_at", "reserved_tokens"])
            logger.warning(
                "queued reply %s of conversation %s failed: %s", reply.pk, reply.conversation_id, error
            )
            events.reply_finished(reply)
        for model_name in {reply.model_name for reply in failed}:
            _broadcast_queue(model_name)
    return len(failed)


INTERRUPT_FIELDS = (
    "content", "reasoning", "tool_calls", "notice", "stream_seq", "status", "error", "finished_at",
    "reserved_tokens",
)  # fmt: skip


def reply_interrupt(*, message: Message, reason: str) -> bool:
    """Mark a streaming reply whose worker is gone as `interrupted`, keeping its text for Retry.

    The worker stored its text about once a second; what it streamed after its last write is still in the
    reply's Redis list, so it is folded in: the user keeps every word they saw.
    """
    with transaction.atomic():
        locked = Message.objects.select_for_update().filter(pk=message.pk, status=Message.Status.STREAMING)
        current = locked.first()
        if current is None:
            return False
        payload = events.message_payload(current)
        for event in events.stream_events_after(current.pk, current.stream_seq) or []:
            events.apply_stream_event(payload, event)
        current.content, current.reasoning = payload["content"], payload["reasoning"]
        current.tool_calls, current.notice = payload["tool_calls"], payload["notice"]
        current.stream_seq = payload["seq"]
        current.status, current.error = Message.Status.INTERRUPTED, reason
        current.finished_at = timezone.now()
        current.reserved_tokens = 0  # its worker is gone and will never count what it generated
        current.save(update_fields=[*INTERRUPT_FIELDS])
        logger.warning("reply %s interrupted: %s", current.pk, reason)
        events.reply_finished(current)
    return True


def reply_release(*, message: Message) -> bool:
    """End the quota reservation of a stopped reply whose worker is gone (it will never count its tokens).

    Return False when there was none left (the worker counted them, or the reply is gone).
    """
    released = Message.objects.filter(
        pk=message.pk, status=Message.Status.CANCELLED, reserved_tokens__gt=0
    ).update(reserved_tokens=0)
    if released:
        logger.warning("reply %s: its worker is gone; the tokens it held are given back", message.pk)
    return bool(released)
