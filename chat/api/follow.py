"""A reply's events as they come, for an API request waiting on it: its stream events in order, then its end.

The same events the chat page's sockets get (chat.events sends them to the conversation's group): this joins
the group first, then reads what was published before it joined (the reply's Redis list) or its stored end,
so nothing is missed and nothing comes twice.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from chat import events
from chat.frames import DoneFrame, MessagePayload, StreamEvent
from chat.models import Message

# How often *alive* is asked while a reply streams: a revoked key ends a stream at its next event after this.
CHECK_EVERY_S = 1.0
TERMINAL = {Message.Status.DONE, Message.Status.CANCELLED, Message.Status.FAILED, Message.Status.INTERRUPTED}


def _catch_up(reply_id: int, seq: int = 0) -> tuple[list[StreamEvent], MessagePayload | None]:
    """Return the reply's stream events after *seq* and, once it has ended, its stored state."""
    reply = Message.objects.get(pk=reply_id)
    missed = events.stream_events_after(reply_id, seq) or []
    if reply.status in TERMINAL:
        return missed, events.message_payload(reply)
    return missed, None


async def follow(
    reply: Message, alive: Callable[[], object] | None = None
) -> AsyncIterator[StreamEvent | DoneFrame]:
    """Yield *reply*'s stream events in seq order, then its `done` frame (the stored end), then stop.

    *alive* (sync, run in a thread at most once a second, at the next event or after a second without one)
    raises to end the stream early, e.g. when the request's key was revoked.
    """
    layer = get_channel_layer()
    assert layer is not None, "CHANNEL_LAYERS is not configured"
    channel = await layer.new_channel()
    group = events.conversation_group(reply.conversation_id)
    await layer.group_add(group, channel)
    try:
        backlog, ended = await database_sync_to_async(_catch_up)(reply.pk)
        seq = 0
        for event in backlog:
            seq = event["seq"]
            yield event
        if ended is not None:
            yield {"type": "done", "message": ended}
            return
        checked = heard = time.monotonic()
        while True:
            try:
                message = await asyncio.wait_for(layer.receive(channel), CHECK_EVERY_S)
            except TimeoutError:
                message = {}
            if time.monotonic() - checked >= CHECK_EVERY_S:
                if alive is not None:
                    await database_sync_to_async(alive)()
                checked = time.monotonic()
                if checked - heard >= CHECK_EVERY_S:  # a second without news: its end may have been dropped
                    heard = checked
                    missed, ended = await database_sync_to_async(_catch_up)(reply.pk, seq)
                    if ended is not None:
                        for event in missed:
                            yield event
                        yield {"type": "done", "message": ended}
                        return
            frame = message.get("payload", {})
            kind = frame.get("type")
            if kind in ("delta", "tool", "notice") and frame["message"] == reply.pk and frame["seq"] > seq:
                heard = time.monotonic()
                if frame["seq"] > seq + 1:
                    # Events dropped on the way (the channel layer drops what a busy reader's channel cannot
                    # hold): read them from the reply's Redis list, in order, before this one.
                    missed = await database_sync_to_async(events.stream_events_after)(reply.pk, seq) or []
                    for event in missed:
                        if event["seq"] < frame["seq"]:
                            yield event
                seq = frame["seq"]
                yield frame
            elif kind == "done" and frame["message"]["id"] == reply.pk:
                if frame["message"]["seq"] > seq:  # its last events were dropped on the way
                    missed = await database_sync_to_async(events.stream_events_after)(reply.pk, seq) or []
                    for event in missed:
                        yield event
                yield frame
                return
    finally:
        await layer.group_discard(group, channel)
