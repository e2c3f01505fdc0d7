"""Per-user limits under concurrent sends: the in-flight limit and the daily token quota hold however many
sends arrive at once, over HTTP and WebSocket alike (issue 11, item 5)."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis
from asgiref.sync import ThreadSensitiveContext, sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.db import connections
from django.test import Client
from django.urls import reverse

from chat.models import Conversation, Message
from gptoss_web.asgi import application
from inference.dispatch import queue_for_model
from tests.factories import make_conversation

pytestmark = pytest.mark.django_db(transaction=True)

SENDERS = 20
IN_FLIGHT_REFUSAL = "You already have 2 answers being generated"


@pytest.fixture(autouse=True)
def _empty_queue() -> None:
    redis.Redis.from_url(settings.REDIS_URL).delete(
        f"{settings.GPTOSS_REDIS_PREFIX}:celery:{queue_for_model('tiny')}"
    )


@pytest.fixture(autouse=True)
async def _close_thread_connections() -> AsyncIterator[None]:
    """Close the database connection of sync_to_async's thread, so the test database can be dropped."""
    yield
    await sync_to_async(connections.close_all)()


def _queued_task_message_ids() -> list[int]:
    """Return the message ids of the generation tasks waiting in the tiny model's real Redis queue."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    key = f"{settings.GPTOSS_REDIS_PREFIX}:celery:{queue_for_model('tiny')}"
    return [
        int(json.loads(raw)["headers"]["argsrepr"].strip("[]()").rstrip(","))
        for raw in client.lrange(key, 0, -1)
    ]


def _all_at_once(actions: list[Callable[[], Any]]) -> list[Any]:
    """Run each action in its own thread (its own database connection), released together by a barrier."""
    barrier = threading.Barrier(len(actions))
    results: list[Any] = [None] * len(actions)

    def run(index: int) -> None:
        try:
            barrier.wait(timeout=60)
            results[index] = actions[index]()
        except BaseException as error:  # reported by the assertions below
            results[index] = error
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(actions))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    return results


def _http_senders(user: object, count: int) -> tuple[list[Conversation], list[Callable[[], Any]]]:
    """Return *count* conversations of *user*, and one logged-in browser posting a draft to each."""
    conversations = [make_conversation(user) for _ in range(count)]
    actions = []
    for index, conversation in enumerate(conversations):
        client = Client()
        client.force_login(user)  # type: ignore[arg-type]
        url = reverse("chat:message_create", args=[conversation.pk])

        def post(client: Client = client, url: str = url, index: int = index) -> tuple[int, str]:
            response = client.post(url, {"text": f"Tell me an endless story, draft {index}"})
            return response.status_code, response.content.decode()

        actions.append(post)
    return conversations, actions


# --- The in-flight limit ------------------------------------------------------------------------------------


def test_twenty_simultaneous_http_sends_queue_exactly_the_in_flight_limit(
    alice: object, settings: Any
) -> None:
    settings.GPTOSS_MAX_IN_FLIGHT_PER_USER = 2
    conversations, actions = _http_senders(alice, SENDERS)

    results = _all_at_once(actions)

    assert all(isinstance(r, tuple) for r in results), results
    accepted = [i for i, (code, _) in enumerate(results) if code == 302]
    refused = [i for i, (code, _) in enumerate(results) if code == 409]
    assert len(accepted) == 2 and len(refused) == SENDERS - 2, [code for code, _ in results]
    for index in refused:
        page = results[index][1]
        assert IN_FLIGHT_REFUSAL in page
        assert f"Tell me an endless story, draft {index}</textarea>" in page  # the typed text is kept
    in_flight = Message.objects.filter(role="assistant", status__in=Message.IN_FLIGHT)
    assert in_flight.count() == 2
    assert {m.conversation_id for m in in_flight} == {conversations[i].pk for i in accepted}
    assert Message.objects.filter(role="user").count() == 2
    assert sorted(_queued_task_message_ids()) == sorted(m.pk for m in in_flight)


def _cookie_header(user: object) -> tuple[bytes, bytes]:
    client = Client()
    client.force_login(user)  # type: ignore[arg-type]
    return (
        b"cookie",
        f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}".encode(),
    )


async def _socket_in_its_own_process(scope: dict, receive: Callable, send: Callable) -> None:
    """Serve one socket with its database work on a thread of its own, as each of several Daphne processes
    behind nginx does (within one process, Channels runs every socket's database work on one thread)."""
    async with ThreadSensitiveContext():
        try:
            await application(scope, receive, send)
        finally:
            await sync_to_async(connections.close_all)()  # that thread's connection


async def _socket_send(conversation_id: int, cookie: tuple[bytes, bytes], go: asyncio.Event) -> dict:
    """Open the conversation's socket, wait for *go*, send one message and return the server's answer."""
    communicator = WebsocketCommunicator(
        _socket_in_its_own_process,
        f"/ws/conversations/{conversation_id}/",
        headers=[(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1"), cookie],
    )
    connected, _ = await communicator.connect(timeout=30)
    assert connected
    try:
        assert (await communicator.receive_json_from(timeout=30))["type"] == "state"
        await go.wait()
        await communicator.send_json_to({"action": "send", "text": "Tell me a story", "client_id": "c1"})
        while True:
            frame = await communicator.receive_json_from(timeout=60)
            if frame["type"] in ("ack", "error"):
                return frame
    finally:
        await communicator.disconnect()


async def test_twenty_simultaneous_websocket_sends_queue_exactly_the_in_flight_limit(
    alice: object, settings: Any
) -> None:
    settings.GPTOSS_MAX_IN_FLIGHT_PER_USER = 2
    conversations = [await sync_to_async(make_conversation)(alice) for _ in range(SENDERS)]
    cookie = await sync_to_async(_cookie_header)(alice)
    go = asyncio.Event()
    sends = [asyncio.create_task(_socket_send(c.pk, cookie, go)) for c in conversations]
    await asyncio.sleep(0)
    go.set()
    frames = await asyncio.gather(*sends)

    kinds = [f["type"] for f in frames]
    assert kinds.count("ack") == 2, frames
    errors = [f["message"] for f in frames if f["type"] == "error"]
    assert len(errors) == SENDERS - 2 and all(IN_FLIGHT_REFUSAL in e for e in errors), errors
    in_flight = Message.objects.filter(role="assistant", status__in=Message.IN_FLIGHT)
    assert await sync_to_async(in_flight.count)() == 2
    assert await sync_to_async(Message.objects.filter(role="user").count)() == 2
