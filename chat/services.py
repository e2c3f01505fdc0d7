"""Writes: every change to conversations and messages happens here, each in one transaction."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, User
from django.contrib.sessions.models import Session
from django.core.cache import cache
from django.db import IntegrityError, connection, transaction
from django.db.models import Subquery
from django.utils import timezone

from chat import events, selectors
from chat.errors import ChatError, GenerationInFlight, StaleEdit, TooManyInFlight
from chat.models import Conversation, Invitation, Message, ReasoningEffort
from inference.dispatch import enqueue_reply
from inference.quotas import generation_allowed_check, model_access_check, prompt_fit_check
from inference.selectors import default_model_name, limits_get, served_model_get
from inference.tools.records import ToolCallRecord

logger = logging.getLogger(__name__)

TITLE_CHARS = 60
# First key of the transaction-level advisory lock that serializes one user's sends (the second is their id).
SEND_LOCK = 0x67707473  # "gpts"


def conversation_create(
    *,
    owner: User,
    title: str = "",
    model_name: str | None = None,
    reasoning_effort: str | None = None,
    enabled_tools: Sequence[str] = (),
    instructions: str = "",
) -> Conversation:
    """Create an empty conversation for *owner*, with their default model and its default effort."""
    model_name = model_name or default_model_name(user=owner)
    if reasoning_effort is None:
        row = served_model_get(name=model_name)
        reasoning_effort = row.default_reasoning_effort if row else ReasoningEffort.MEDIUM
    return Conversation.objects.create(
        owner=owner,
        title=title.strip()[:200],
        model_name=model_name,
        reasoning_effort=reasoning_effort,
        enabled_tools=sorted(set(enabled_tools)),
        instructions=instructions,
    )


def conversation_rename(*, conversation: Conversation, title: str) -> Conversation:
    """Give *conversation* a new title (blank means "New conversation")."""
    conversation.title = title.strip()[:200]
    conversation.save(update_fields=["title"])
    return conversation


def conversation_update_settings(
    *,
    conversation: Conversation,
    reasoning_effort: str,
    enabled_tools: Sequence[str],
    instructions: str,
    model_name: str | None = None,
) -> Conversation:
    """Change the settings that the next reply of *conversation* is generated with.

    Raises ChatError when *model_name* is not one the owner may use.
    """
    fields = ["reasoning_effort", "enabled_tools", "instructions"]
    if model_name and model_name != conversation.model_name:
        model_access_check(user=conversation.owner, model_name=model_name)
        conversation.model_name = model_name
        fields.append("model_name")
    conversation.reasoning_effort = reasoning_effort
    conversation.enabled_tools = sorted(set(enabled_tools))
    conversation.instructions = instructions
    conversation.save(update_fields=fields)
    return conversation


def conversation_delete(*, conversation: Conversation) -> None:
    """Delete *conversation* and its messages; a reply still generating is cancelled by its worker."""
    logger.info("conversation %s deleted", conversation.pk)
    conversation.delete()


def title_from_text(text: str) -> str:
    """Return a title from the first line of the first message: no extra model call, ever."""
    first_line = next((line.strip() for line in text.splitlines() if line.strip()), "")
    if len(first_line) <= TITLE_CHARS:
        return first_line
    cut = first_line[:TITLE_CHARS].rsplit(" ", 1)[0] or first_line[:TITLE_CHARS]
    return cut.rstrip(" ,.;:") + "…"


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
    the owner has too many answers in flight. A browser that resends with the same *client_id* (it never got
    the acknowledgement) gets AlreadySent instead of a second copy.
    """
    validate_message_text(text)
    sent_key = f"sent:{conversation.pk}:{client_id[:64]}" if client_id else ""
    if sent_key and _cache_get(sent_key):
        raise AlreadySent()
    _check_fits(conversation, text)
    with transaction.atomic():
        locked = Conversation.objects.select_for_update().get(pk=conversation.pk)
        budget = _check_can_generate(locked)
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
    """Replace the latest question of *conversation* by *text* and answer it anew.

    The old question and its answers are kept but superseded (hidden, and left out of the prompt). Only the
    latest question can be edited, and only while nothing is generating.
    """
    validate_message_text(text)
    _check_fits(conversation, text)
    with transaction.atomic():
        locked = Conversation.objects.select_for_update().get(pk=conversation.pk)
        latest = selectors.message_latest_get(conversation=locked, role=Message.Role.USER)
        if latest is None or latest.pk != message_id:
            raise StaleEdit()
        budget = _check_can_generate(locked)
        answers = latest.replies.filter(superseded_at__isnull=True).values_list("pk", flat=True)
        superseded = [latest.pk, *answers]
        Message.objects.filter(pk__in=superseded).update(superseded_at=timezone.now())
        events.messages_removed(locked.pk, superseded)
        return _question_create(conversation=locked, text=text, reserved_tokens=budget)


def message_regenerate(*, conversation: Conversation, message_id: int) -> Message:
    """Answer the latest question again; the previous answer *message_id* is kept but superseded."""
    with transaction.atomic():
        locked = Conversation.objects.select_for_update().get(pk=conversation.pk)
        latest = selectors.message_latest_get(conversation=locked, role=Message.Role.ASSISTANT)
        if latest is None or latest.pk != message_id or latest.reply_to is None:
            raise StaleEdit()
        budget = _check_can_generate(locked)
        _check_fits(locked, latest.reply_to.content)
        Message.objects.filter(pk=latest.pk).update(superseded_at=timezone.now())
        events.messages_removed(locked.pk, [latest.pk])
        reply = _reply_create(conversation=locked, reply_to=latest.reply_to, reserved_tokens=budget)
        _touch(locked)
        return reply


def generation_cancel(*, conversation: Conversation) -> Message | None:
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


def _question_create(
    *, conversation: Conversation, text: str, reserved_tokens: int
) -> tuple[Message, Message]:
    user_message = Message.objects.create(
        conversation=conversation, role=Message.Role.USER, status=Message.Status.DONE, content=text
    )
    reply = _reply_create(
        conversation=conversation,
        reply_to=user_message,
        reserved_tokens=reserved_tokens,
        announce_question=True,
    )
    _touch(conversation)
    return user_message, reply


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


def _check_can_generate(conversation: Conversation) -> int:
    """Raise ChatError unless the conversation's owner may queue a reply now; return the tokens it may use.

    Call it in the send's transaction, with the conversation row locked, before any write.
    """
    _owner_lock(conversation)
    if selectors.message_in_flight_get(conversation=conversation) is not None:
        raise GenerationInFlight()
    limit = limits_get(user=conversation.owner).max_in_flight
    if selectors.generations_in_flight_count(user=conversation.owner) >= limit:
        raise TooManyInFlight(limit)
    return generation_allowed_check(user=conversation.owner, model_name=conversation.model_name)


def _check_fits(conversation: Conversation, text: str) -> None:
    """Refuse now a question that cannot fit the model's context even alone, rather than after the queue."""
    prompt_fit_check(conversation=conversation, text=text)


def _reply_create(
    *, conversation: Conversation, reply_to: Message, reserved_tokens: int, announce_question: bool = False
) -> Message:
    """Create the queued assistant reply; the database refuses a second one in flight.

    On commit the task is enqueued first, so the GPU waits for no broadcast; then the browsers are told of the
    question (with *announce_question*) and of the reply.
    """
    try:
        with transaction.atomic():
            reply = Message.objects.create(
                conversation=conversation,
                role=Message.Role.ASSISTANT,
                status=Message.Status.QUEUED,
                reply_to=reply_to,
                model_name=conversation.model_name,
                reasoning_effort=conversation.reasoning_effort,
                reserved_tokens=reserved_tokens,
            )
    except IntegrityError as error:
        if "message_one_generation_in_flight" in str(error):
            raise GenerationInFlight() from error
        raise
    transaction.on_commit(lambda: _enqueue(reply))
    if announce_question:
        events.message_changed(reply_to)
    events.message_changed(
        reply,
        queue_position=selectors.queue_position_get(message=reply),
        waiting=selectors.reply_waiting_get(message=reply),
    )
    return reply


def reply_waiting_changed(updates: Sequence[tuple[int, int, int, str]]) -> None:
    """Tell queued replies their place and whether a worker serves their model: (conversation id, message id,
    position, note). Nothing is stored: the note is read from the workers' heartbeats, also on a reload."""
    events.queue_waiting(updates)


def _broadcast_queue(model_name: str) -> None:
    """Tell every reply still queued for *model_name* its new place (after one left the queue)."""
    events.queue_positions(selectors.queue_positions(model_name=model_name))


def _enqueue(reply: Message) -> None:
    enqueue_reply(message_id=reply.pk, model_name=reply.model_name)


def invitation_accept(*, invitation: Invitation, username: str, password: str) -> User:
    """Create the invited user, add them to the invitation's groups and use the invitation up."""
    with transaction.atomic():
        locked = Invitation.objects.select_for_update().get(pk=invitation.pk)
        if not locked.usable:
            raise ChatError("This invitation has expired or was already used. Ask an admin for a new one.")
        user = get_user_model().objects.create_user(username=username, email=locked.email, password=password)
        groups: list[Group] = list(locked.groups.all())
        user.groups.add(*groups)
        locked.used_by = user
        locked.used_at = timezone.now()
        locked.save(update_fields=["used_by", "used_at"])
    return user


def user_sessions_end(*, user_ids: Sequence[int]) -> int:
    """Sign the users *user_ids* out everywhere: delete their sessions; return how many there were.

    Sessions live in the database (Django's default engine) and name their user only inside the signed
    payload, so each live one is decoded; an intranet install has a few thousand at most.
    """
    wanted = {str(user_id) for user_id in user_ids}
    ended = [
        session.pk
        for session in Session.objects.filter(expire_date__gt=timezone.now()).iterator()
        if str(session.get_decoded().get("_auth_user_id", "")) in wanted
    ]
    Session.objects.filter(pk__in=ended).delete()
    logger.info("ended %d sessions of users %s", len(ended), sorted(user_ids))
    return len(ended)


# --- Generation lifecycle (called by the GPU worker's task and the reaper) ----------------------------------


def generation_start(*, message_id: int, task_id: str, worker: str) -> Message | None:
    """Claim the oldest queued reply of *message_id*'s model; return None when none is queued.

    A task is a turn at the model's queue rather than a ticket for one reply: replies are generated in the
    order they were created (the order users see as their place in the queue), whatever order their tasks
    reach the broker in (re-sent after Redis lost them, or after a database outage). `SKIP LOCKED` lets two
    workers claim at once, and the conditional UPDATE makes a redelivered or duplicated task harmless: it
    finds nothing left to claim. The browsers are told by generation_announce, which the task calls once the
    engine has the prompt.
    """
    model_name = Message.objects.filter(pk=message_id).values("model_name")[:1]
    queued = Message.objects.filter(
        status=Message.Status.QUEUED, role=Message.Role.ASSISTANT, model_name=Subquery(model_name)
    )
    with transaction.atomic():
        oldest = queued.select_for_update(skip_locked=True).order_by("created_at", "id").first()
        if oldest is None:
            logger.info("no reply of reply %s's model is queued; task %s does nothing", message_id, task_id)
            return None
        Message.objects.filter(pk=oldest.pk).update(
            status=Message.Status.STREAMING, started_at=timezone.now(), task_id=task_id, worker=worker
        )
    if oldest.pk != message_id:
        logger.info("task %s of reply %s claims the older queued reply %s", task_id, message_id, oldest.pk)
    return Message.objects.select_related("conversation", "reply_to").get(pk=oldest.pk)


def generation_announce(*, message: Message) -> None:
    """Tell the reply's sockets it started, and the replies still queued their new places."""
    events.reply_started(message)
    _broadcast_queue(message.model_name)


def generation_notice(*, message: Message, notice: str) -> None:
    """Store something the user should know about this answer (the task also streams it)."""
    Message.objects.filter(pk=message.pk).update(notice=notice[:300])


def generation_save_progress(
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


def generation_finish(
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


def generation_fail_queued(*, message_ids: Sequence[int], error: str, retryable: bool) -> int:
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


def generation_interrupt(*, message: Message, reason: str) -> bool:
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


def generation_release(*, message: Message) -> bool:
    """End the quota reservation of a stopped reply whose worker is gone (it will never count its tokens).

    Return False when there was none left (the worker counted them, or the reply is gone).
    """
    released = Message.objects.filter(
        pk=message.pk, status=Message.Status.CANCELLED, reserved_tokens__gt=0
    ).update(reserved_tokens=0)
    if released:
        logger.warning("reply %s: its worker is gone; the tokens it held are given back", message.pk)
    return bool(released)
