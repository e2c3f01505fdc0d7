"""Everything broadcast to conversation sockets is built and sent here (docs/protocol.md).

Two kinds of events:
- state changes (`message`, `branch`, `queued`, `done`, `title`), sent after the transaction that made them
  commits;
- stream events of a reply (`delta`, `tool`, `notice`), numbered by `seq`, sent by the GPU worker's task and
  also appended to a Redis list per reply so a socket that (re)connects mid-reply can catch up without a gap.

A user's sockets (every one of them joins the user's group) are told what changed in their sidebar
(`sidebar`: a conversation created, renamed, pinned, archived, moved, deleted, or a reply of it finished) so
that every tab's list follows; the frame names the conversation only, and the browser fetches its row.

Besides, a user's sockets are told to check their session when one of the user's sessions is deleted or the
user is saved (`sessions_changed`, sent from the signal receivers connected in chat/apps.py).

Redis carries what may be lost: every function here reports a Redis failure by returning False, never by
raising, so a Redis restart cannot fail a reply or a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
from collections.abc import Coroutine, Iterable
from typing import Any, TypedDict, cast

import redis
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth import SESSION_KEY
from django.db import transaction
from django.utils import timezone

from chat.frames import (
    BroadcastFrame,
    ChatEventMessage,
    MessagePayload,
    RecheckMessage,
    SidebarChange,
    SidebarEventMessage,
    StreamEvent,
)
from chat.models import Conversation, Message
from chat.rendering import message_sources, render_markdown
from gptoss_web.channel_layer import LogEntry, TwoTripRedisChannelLayer
from inference.tools.records import ToolCallRecord

logger = logging.getLogger(__name__)

# A reply's stream list outlives the reply a little, for sockets that reconnect right at the end.
STREAM_TTL_S = 3600
STREAM_TTL_AFTER_DONE_S = 120
SEND_TIMEOUT_S = 2.0
BURST_CONCURRENCY = 8


class StreamedText(TypedDict):
    """What a reply's stream events add up to; a `MessagePayload` is one too."""

    content: str
    reasoning: str
    tool_calls: list[ToolCallRecord]
    notice: str
    seq: int


def streamed_text() -> StreamedText:
    """Return the text of a reply before its first stream event."""
    return {"content": "", "reasoning": "", "tool_calls": [], "notice": "", "seq": 0}


def conversation_group(conversation_id: int) -> str:
    """Return the channel-layer group of a conversation's sockets."""
    return f"conversation.{conversation_id}"


def user_group(user_id: int) -> str:
    """Return the channel-layer group of every socket of a user (told when their sessions may have ended)."""
    return f"user.{user_id}"


def message_payload(
    message: Message, *, queue_position: int | None = None, waiting: str = ""
) -> MessagePayload:
    """Return the stored state of *message* as the browser receives it."""
    return {
        "id": message.pk,
        "role": message.role,
        "status": message.status,
        "reply_to": message.reply_to_id,
        "content": message.content,
        "reasoning": message.reasoning,
        "tool_calls": message.tool_calls,
        "error": message.error,
        "notice": message.notice,
        "reasoning_effort": message.reasoning_effort,
        "model_name": message.model_name,
        "seq": message.stream_seq,
        "html": render_markdown(message.content, message_sources(message.tool_calls)),
        "stats": {
            "prompt_tokens": message.prompt_tokens,
            "reasoning_tokens": message.reasoning_tokens,
            "answer_tokens": message.answer_tokens,
            "queue_wait_ms": message.queue_wait_ms,
            "ttft_ms": message.ttft_ms,
            "tokens_per_second": message.tokens_per_second,
        },
        "queue_position": queue_position,
        "waiting": waiting,
        "retryable": message.retryable,
    }


def without_reasoning(frame: BroadcastFrame) -> BroadcastFrame:
    """Return *frame* as a user who may not see reasoning receives it: its reasoning text emptied.

    A stream event keeps its `seq` (dropping it would be a gap the browser reloads for); a stored message
    keeps everything else, its reasoning token count included.
    """
    if frame["type"] == "delta":
        delta = frame.copy()
        delta["reasoning"] = ""
        return delta
    if frame["type"] == "message" or frame["type"] == "done":
        stored = frame.copy()
        stored["message"] = stored["message"].copy()
        stored["message"]["reasoning"] = ""
        return stored
    return frame


# --- Sending -----------------------------------------------------------------------------------------------


class _Broadcaster:
    """One event loop thread per process for the bursts of group sends (`broadcast_many`): every queued
    reply's new place, sent concurrently.

    Callers are sync (views, services, the worker's task threads). Sending from one loop keeps the
    connection pool warm, where async_to_sync in a plain thread would open a new loop and connection per call.
    A single send (`broadcast`, `stream_publish`) goes in the caller's own thread instead: a hop to this one
    and back waits for two threads to be scheduled, on the way to the first token.
    """

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                loop = asyncio.new_event_loop()
                threading.Thread(target=loop.run_forever, name="broadcaster", daemon=True).start()
                self._loop = loop
            return self._loop

    def run(self, coroutine: Coroutine[Any, Any, Any]) -> bool:
        future = asyncio.run_coroutine_threadsafe(coroutine, self._running_loop())
        try:
            future.result(timeout=SEND_TIMEOUT_S)
        except Exception as error:  # a Redis outage: the stored state stays the truth
            future.cancel()
            logger.warning("broadcast not sent: %r", error)
            return False
        return True


_broadcaster = _Broadcaster()
_redis: redis.Redis | None = None


def _redis_client() -> redis.Redis:
    global _redis
    if _redis is None:
        _redis = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    return _redis


def broadcast(conversation_id: int, payload: BroadcastFrame) -> bool:
    """Send *payload* to every socket of the conversation now; return False if Redis could not take it."""
    return _send_now(conversation_group(conversation_id), {"type": "chat.event", "payload": payload})


def _send_now(
    group: str, message: ChatEventMessage | SidebarEventMessage | RecheckMessage, log: LogEntry | None = None
) -> bool:
    """Send *message* to *group* from this thread, in two round trips (no hop to another thread: this is on
    the way to the first token); return False if Redis could not take it."""
    layer = get_channel_layer()
    assert isinstance(layer, TwoTripRedisChannelLayer), "CHANNEL_LAYERS is not the app's layer"
    try:
        layer.group_send_blocking(group, cast(dict[str, Any], message), log=log)
    except redis.RedisError as error:  # a Redis outage: the stored state stays the truth
        logger.warning("broadcast to %s not sent: %r", group, error)
        return False
    return True


def broadcast_many(items: list[tuple[int, BroadcastFrame]]) -> bool:
    """Send each (conversation id, payload) now, concurrently; return False if Redis could not take them."""
    layer = get_channel_layer()
    assert layer is not None, "CHANNEL_LAYERS is not configured"

    async def send_all() -> None:
        # A burst (every queued reply's new place) must not take the whole connection pool from the streams.
        limit = asyncio.Semaphore(BURST_CONCURRENCY)

        async def send(conversation_id: int, payload: BroadcastFrame) -> None:
            async with limit:
                message: ChatEventMessage = {"type": "chat.event", "payload": payload}
                await layer.group_send(conversation_group(conversation_id), message)

        await asyncio.gather(*(send(c, p) for c, p in items))

    return _broadcaster.run(send_all())


def broadcast_on_commit(conversation_id: int, payload: BroadcastFrame) -> None:
    """Send *payload* once the current transaction commits (at once outside a transaction)."""
    transaction.on_commit(lambda: broadcast(conversation_id, payload))


# --- State changes (sent by chat.services, after commit) ---------------------------------------------------


def message_changed(message: Message, *, queue_position: int | None = None, waiting: str = "") -> None:
    """Tell the conversation's sockets that *message* was created or changed state."""
    payload = message_payload(message, queue_position=queue_position, waiting=waiting)
    broadcast_on_commit(message.conversation_id, {"type": "message", "message": payload})


def branch_changed(conversation_id: int) -> None:
    """Tell the conversation's sockets that the branch on screen changed (edit, regenerate, switch): each
    sends its browser the new thread, so every tab and device shows the same branch."""
    broadcast_on_commit(conversation_id, {"type": "branch"})


def title_changed(conversation_id: int, title: str) -> None:
    broadcast_on_commit(conversation_id, {"type": "title", "title": title})


def reply_finished(message: Message) -> None:
    """Send the final stored state of a reply (done, cancelled, failed or interrupted)."""

    def send() -> None:
        broadcast(message.conversation_id, {"type": "done", "message": message_payload(message)})
        with contextlib.suppress(redis.RedisError):
            _redis_client().expire(stream_key(message.pk), STREAM_TTL_AFTER_DONE_S)
        owner = (
            Conversation.objects.filter(pk=message.conversation_id, ephemeral=False)
            .values_list("owner_id", flat=True)
            .first()
        )
        if owner is not None:  # the sidebar moves it to the top of Today, marked until opened
            _sidebar_send(owner, message.conversation_id, "reply")

    transaction.on_commit(send)


def sidebar_changed(user_id: int, conversation_id: int | None, change: SidebarChange) -> None:
    """Tell every socket of *user_id*, once the transaction commits, that their sidebar changed: *change*
    happened to *conversation_id* (None for the project list). Only the owner's sockets are in that group."""
    transaction.on_commit(lambda: _sidebar_send(user_id, conversation_id, change))


def _sidebar_send(user_id: int, conversation_id: int | None, change: SidebarChange) -> bool:
    message: SidebarEventMessage = {
        "type": "chat.sidebar",
        "payload": {"type": "sidebar", "change": change, "conversation": conversation_id},
    }
    return _send_now(user_group(user_id), message)


def reply_started(message: Message) -> None:
    broadcast_on_commit(message.conversation_id, {"type": "started", "message": message.pk})


def queue_positions(positions: Iterable[tuple[int, int, int]]) -> None:
    """Tell each queued reply its place in its model's queue: (conversation_id, message_id, position)."""
    items = list(positions)

    def send() -> None:
        broadcast_many([(c, {"type": "queued", "message": m, "position": p}) for c, m, p in items])

    if items:
        transaction.on_commit(send)


def queue_waiting(items: Iterable[tuple[int, int, int, str]]) -> None:
    """Tell queued replies their place and why they wait: (conversation_id, message_id, position, waiting).

    `waiting` is "" once a GPU worker serves the model again, which clears the note in the browser.
    """
    frames: list[tuple[int, BroadcastFrame]] = [
        (c, {"type": "queued", "message": m, "position": p, "waiting": w}) for c, m, p, w in items
    ]

    def send() -> None:
        broadcast_many(frames)

    if frames:
        transaction.on_commit(send)


def cancel_signal(message_id: int) -> None:
    """Ask the GPU worker generating *message_id* to stop it now (workers also notice at their next write)."""

    def send() -> None:
        try:
            _redis_client().publish(cancel_channel(), str(message_id))
        except redis.RedisError as error:
            logger.warning("stop signal for reply %s not sent: %s", message_id, error)

    transaction.on_commit(send)


def sessions_changed(user_id: int) -> None:
    """Ask every socket of *user_id* to check its session now, once the transaction commits: one of their
    sessions ended (logout, a password change rotating it), or their account changed (a password changed
    elsewhere, a deactivation). A socket whose session ended closes before it forwards another event.
    """
    transaction.on_commit(lambda: _send_now(user_group(user_id), {"type": "chat.recheck"}))


def session_deleted(sender: type, instance: Any, **_: Any) -> None:
    """Receive post_delete of a stored session (logout, cycle_key, admin, clearsessions)."""
    if instance.expire_date <= timezone.now():
        return  # expired: its sockets were closed at the watcher's round (clearsessions removes thousands)
    user_id = instance.get_decoded().get(SESSION_KEY)
    if user_id is not None:
        sessions_changed(int(user_id))


def user_saved(
    sender: type, instance: Any, created: bool, update_fields: frozenset[str] | None = None, **_: Any
) -> None:
    """Receive post_save of a user: a changed password or a deactivation ends their other sessions."""
    if created or (update_fields is not None and set(update_fields) <= {"last_login"}):
        return  # a new user has no sessions yet; every login saves last_login alone
    sessions_changed(instance.pk)


def cancel_channel() -> str:
    """Return the Redis pub/sub channel the GPU workers listen on for Stop."""
    return f"{settings.GPTOSS_REDIS_PREFIX}:cancel"


# --- Stream events (sent by the GPU worker's task) ---------------------------------------------------------


def stream_key(message_id: int) -> str:
    return f"{settings.GPTOSS_REDIS_PREFIX}:stream:{message_id}"


def stream_publish(conversation_id: int, message_id: int, event: StreamEvent) -> bool:
    """Append a seq-numbered stream event to the reply's list and send it; return False on a Redis failure.

    The order matters for reconnects: an event is in the list before any socket can receive it. Both go in the
    calling thread (a worker's task thread, on the way to the first visible text), in two round trips.
    """
    log = LogEntry(stream_key(message_id), json.dumps(event), STREAM_TTL_S)
    return _send_now(conversation_group(conversation_id), {"type": "chat.event", "payload": event}, log)


def stream_events_after(message_id: int, seq: int) -> list[StreamEvent] | None:
    """Return the reply's stream events numbered above *seq*, oldest first; None if Redis cannot answer."""
    try:
        raw = _redis_client().lrange(stream_key(message_id), 0, -1)
    except redis.RedisError as error:
        logger.warning("stream of reply %s not readable: %s", message_id, error)
        return None
    events = [cast(StreamEvent, json.loads(item)) for item in raw]
    return [e for e in events if e["seq"] > seq]


def apply_stream_event(text: StreamedText, event: StreamEvent) -> None:
    """Fold a stream event into a reply's text, as the browser does (docs/protocol.md).

    The one fold on the server: the GPU worker's task builds the text it stores with it, and a socket's
    first state and the reaper's `interrupted` reply catch up with it on what the Redis list holds.
    """
    if event["type"] == "delta":
        text["reasoning"] += event["reasoning"]
        text["content"] += event["content"]
    elif event["type"] == "tool":
        index, call, calls = event["index"], event["call"], text["tool_calls"]
        if index < len(calls):
            calls[index] = call
        else:
            calls.append(call)
    elif event["type"] == "notice":
        text["notice"] = event["notice"]
    text["seq"] = event["seq"]
