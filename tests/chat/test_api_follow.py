"""An API request follows its reply through the channel layer, which drops what a busy reader's channel cannot
hold: what was dropped is read back from the reply's Redis list, so the client gets every event, in order."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from django.db import connections
from django.utils import timezone

from chat import events
from chat.api.follow import follow
from chat.frames import DeltaEvent
from chat.models import Conversation, Message
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)


def _reply() -> Message:
    conversation = Conversation.objects.create(owner=UserFactory(), model_name="tiny")
    question = Message.objects.create(conversation=conversation, role="user", content="Hi")
    return Message.objects.create(
        conversation=conversation, role="assistant", reply_to=question, status=Message.Status.STREAMING
    )


def _delta(reply: Message, seq: int, text: str) -> DeltaEvent:
    return {"type": "delta", "message": reply.pk, "seq": seq, "at": 0.0, "reasoning": "", "content": text}


async def _collect(reply: Message, into: list[Any]) -> None:
    async for event in follow(reply):
        into.append(event)


@pytest.fixture(autouse=True)
async def _close_thread_connections() -> Any:
    yield
    await sync_to_async(connections.close_all)()  # the worker thread's, so the test database can be dropped


async def test_events_the_channel_layer_dropped_are_read_back_in_order() -> None:
    reply = await sync_to_async(_reply)()
    got: list[Any] = []
    task = asyncio.create_task(_collect(reply, got))
    await asyncio.sleep(0.3)  # it has joined the conversation's group
    layer = get_channel_layer()
    group = events.conversation_group(reply.conversation_id)
    deltas = [_delta(reply, seq, text) for seq, text in enumerate(["One ", "two ", "three."], start=1)]
    for delta in deltas:  # in the reply's Redis list, as the worker's publisher writes them first
        await sync_to_async(events._redis_client().rpush)(events.stream_key(reply.pk), json.dumps(delta))
    for delta in (deltas[0], deltas[2]):  # the second is dropped on the way
        await layer.group_send(group, {"type": "chat.event", "payload": delta})
    reply.status, reply.content, reply.stream_seq = Message.Status.DONE, "One two three.", 3
    await sync_to_async(reply.save)()
    payload = await sync_to_async(events.message_payload)(reply)
    await layer.group_send(group, {"type": "chat.event", "payload": {"type": "done", "message": payload}})
    await asyncio.wait_for(task, 10)
    assert [e["seq"] for e in got[:-1]] == [1, 2, 3]
    assert "".join(e["content"] for e in got[:-1]) == "One two three."
    assert got[-1]["type"] == "done"


async def test_a_dropped_end_is_read_from_the_database_within_a_second_or_two() -> None:
    reply = await sync_to_async(_reply)()
    got: list[Any] = []
    task = asyncio.create_task(_collect(reply, got))
    await asyncio.sleep(0.3)
    reply.status, reply.content, reply.finished_at = Message.Status.DONE, "Done.", timezone.now()
    await sync_to_async(reply.save)()  # and no `done` frame ever arrives
    await asyncio.wait_for(task, 5)
    assert got[-1]["type"] == "done" and got[-1]["message"]["content"] == "Done."
