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
from chat.services.messages import message_send
from chat.services.replies import reply_cancel, reply_start
from gptoss_web.asgi import application
from gptoss_web.devtools.tinymodel import SCRIPTS
from inference.models import Quota, UsageDay
from inference.runtime.catalog import queue_for_model
from inference.selectors import tokens_used_today
from inference.worker.tasks import generate_reply_task
from tests.factories import make_conversation
from tests.sockets import cookie_header

pytestmark = pytest.mark.django_db(transaction=True)

SENDERS = 20
IN_FLIGHT_REFUSAL = "You already have 2 replies being written"


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
    """Return the message ids of the tasks waiting in the tiny model's real Redis queue."""
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
    frame = {"action": "send", "text": "Tell me an endless story", "client_id": "c1"}
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
        await communicator.send_json_to(frame)
        while True:
            frame = await communicator.receive_json_from(timeout=60)
            if frame["type"] in ("ack", "error"):
                return frame
    finally:
        await communicator.disconnect()


async def _sockets_send_at_once(user: object, count: int) -> list[dict]:
    """Open *count* sockets of *user*, one per new conversation; send on all at once; return their answers."""
    conversations = [await sync_to_async(make_conversation)(user) for _ in range(count)]
    cookie = await sync_to_async(cookie_header)(user)
    go = asyncio.Event()
    sends = [asyncio.create_task(_socket_send(c.pk, cookie, go)) for c in conversations]
    await asyncio.sleep(0)
    go.set()
    return list(await asyncio.gather(*sends))


async def test_twenty_simultaneous_websocket_sends_queue_exactly_the_in_flight_limit(
    alice: object, settings: Any
) -> None:
    settings.GPTOSS_MAX_IN_FLIGHT_PER_USER = 2
    frames = await _sockets_send_at_once(alice, SENDERS)

    kinds = [f["type"] for f in frames]
    assert kinds.count("ack") == 2, frames
    errors = [f["message"] for f in frames if f["type"] == "error"]
    assert len(errors) == SENDERS - 2 and all(IN_FLIGHT_REFUSAL in e for e in errors), errors
    in_flight = Message.objects.filter(role="assistant", status__in=Message.IN_FLIGHT)
    assert await sync_to_async(in_flight.count)() == 2
    assert await sync_to_async(Message.objects.filter(role="user").count)() == 2


# --- The daily token quota ----------------------------------------------------------------------------------


def _generate_queued_replies() -> list[Message]:
    """Run the GPU worker's task on every queued reply (real llama.cpp, the tiny model), as a worker would."""
    replies = list(Message.objects.filter(role="assistant", status="queued").order_by("pk"))
    for reply in replies:
        generate_reply_task.run(reply.pk)
        reply.refresh_from_db()
    return replies


def _assert_generated_within_the_quota(user: Any, limit: int) -> None:
    """Generate every queued reply; check that together they stayed within *limit* and were told why."""
    replies = _generate_queued_replies()
    assert replies and all(r.status == "done" for r in replies), [(r.status, r.error) for r in replies]
    generated = sum(r.reasoning_tokens + r.answer_tokens for r in replies)
    assert 0 < generated <= limit
    assert tokens_used_today(user=user) == generated
    cut = [r for r in replies if r.notice]
    assert cut and all("daily token quota" in r.notice for r in cut)
    assert all(r.content.startswith(SCRIPTS["endless"].first.final[:10]) for r in replies)


def test_twenty_simultaneous_http_sends_never_generate_more_than_the_daily_quota(alice: Any) -> None:
    Quota.objects.create(user=alice, daily_tokens=20, max_in_flight=20)
    _, actions = _http_senders(alice, SENDERS)

    results = _all_at_once(actions)

    assert all(isinstance(r, tuple) for r in results), results
    refused = [page for code, page in results if code == 409]
    assert refused and all("your 20 tokens for today" in page for page in refused)
    _assert_generated_within_the_quota(alice, 20)


async def test_twenty_simultaneous_websocket_sends_never_generate_more_than_the_daily_quota(
    alice: Any,
) -> None:
    await sync_to_async(Quota.objects.create)(user=alice, daily_tokens=20, max_in_flight=20)

    frames = await _sockets_send_at_once(alice, SENDERS)

    errors = [f["message"] for f in frames if f["type"] == "error"]
    assert errors and all("your 20 tokens for today" in e for e in errors), frames
    await sync_to_async(_assert_generated_within_the_quota)(alice, 20)


def test_a_quota_below_a_full_answer_budget_still_answers_then_refuses_with_nothing_left(alice: Any) -> None:
    Quota.objects.create(user=alice, daily_tokens=30)
    conversation = make_conversation(alice)
    _, reply = message_send(conversation=conversation, text="Tell me an endless story")
    generate_reply_task.run(reply.pk)
    reply.refresh_from_db()
    assert reply.status == "done" and reply.content.startswith(SCRIPTS["endless"].first.final[:10])
    assert reply.notice == "The answer stopped at what was left of your daily token quota."
    assert 0 < reply.reasoning_tokens + reply.answer_tokens <= 30
    assert tokens_used_today(user=alice) == reply.reasoning_tokens + reply.answer_tokens
    client = Client()
    client.force_login(alice)
    response = client.post(reverse("chat:message_create", args=[conversation.pk]), {"text": "one more?"})
    assert response.status_code == 409
    page = response.content.decode()
    assert "You have used your 30 tokens for today" in page and "too few for an answer" in page
    assert conversation.messages.count() == 2


def test_replies_in_flight_hold_their_budget_and_give_back_what_they_did_not_use(alice: Any) -> None:
    Quota.objects.create(user=alice, daily_tokens=1000)
    first, second = make_conversation(alice), make_conversation(alice)
    _, reply = message_send(conversation=first, text="Hello there")  # holds all 1,000 tokens while queued
    with pytest.raises(Exception, match="held by replies still being written"):
        message_send(conversation=second, text="Hello again")
    generate_reply_task.run(reply.pk)  # a short answer: it uses a few tokens and gives the rest back
    reply.refresh_from_db()
    assert reply.status == "done" and 0 < reply.reasoning_tokens + reply.answer_tokens < 100
    _, again = message_send(conversation=second, text="Hello again")
    assert again.status == "queued"


def test_a_stopped_answer_holds_its_budget_until_its_worker_has_counted_what_it_generated(
    alice: Any,
) -> None:
    Quota.objects.create(user=alice, daily_tokens=1000)
    first, second = make_conversation(alice), make_conversation(alice)
    _, reply = message_send(conversation=first, text="Tell me an endless story")
    assert reply_start(message_id=reply.pk, task_id="t", worker="w") is not None
    reply_cancel(conversation=first)  # Stop: the worker has not yet stored what it generated
    with pytest.raises(Exception, match="held by replies still being written"):
        message_send(conversation=second, text="Hello again")


def test_a_stopped_queued_answer_gives_its_budget_back_at_once(alice: Any) -> None:
    Quota.objects.create(user=alice, daily_tokens=1000)
    first, second = make_conversation(alice), make_conversation(alice)
    message_send(conversation=first, text="Hello there")
    reply_cancel(conversation=first)
    _, reply = message_send(conversation=second, text="Hello again")
    assert reply.status == "queued"
    assert not UsageDay.objects.exists()
