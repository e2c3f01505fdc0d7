"""Faults with real processes: a GPU worker killed mid-answer, Redis restarted mid-stream, a dropped socket.

Postgres is the truth: whatever fails, the user finds their messages, the partial answer and a way on.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connections
from django.test import Client
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from chat.models import Conversation, Message
from gptoss_web.stack import Stack
from tests.factories import make_conversation
from tests.live import test_database_url

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    live = Stack(database_url=test_database_url(), redis_prefix=settings.GPTOSS_REDIS_PREFIX).start()
    try:
        yield live
    finally:
        live.stop()
        failed = getattr(request.node, "rep_call", None)
        if failed is None or failed.failed:
            print(live.logs())


@pytest.fixture(autouse=True)
async def _close_thread_connections() -> AsyncIterator[None]:
    yield
    await sync_to_async(connections.close_all)()


def _session_cookie(user: object) -> str:
    client = Client()
    client.force_login(user)  # type: ignore[arg-type]
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


async def _socket(stack: Stack, cookie: str, conversation_id: int) -> ClientConnection:
    return await connect(
        f"ws://127.0.0.1:{stack.web_port}/ws/conversations/{conversation_id}/",
        origin=stack.base_url,  # type: ignore[arg-type]
        additional_headers={"Cookie": cookie},
        open_timeout=10,
    )


async def _receive(socket: ClientConnection, timeout: float = 30) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(socket.recv(), timeout))


async def _until(socket: ClientConnection, kind: str, timeout: float = 60) -> list[dict[str, Any]]:
    """Return the frames received up to and including the first of type *kind*."""
    frames: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while not frames or frames[-1]["type"] != kind:
        frames.append(await _receive(socket, max(0.1, deadline - time.monotonic())))
    return frames


async def _until_finished(socket: ClientConnection, timeout: float = 90) -> dict[str, Any]:
    """Return the last reply once the socket says it ended: by `done`, or by a resent `state`."""
    deadline = time.monotonic() + timeout
    while True:
        frame = await _receive(socket, max(0.1, deadline - time.monotonic()))
        if frame["type"] == "done":
            return frame["message"]
        if frame["type"] == "state" and frame["messages"][-1]["status"] not in ("queued", "streaming"):
            return frame["messages"][-1]


async def _conversation(user: object) -> Conversation:
    return await sync_to_async(make_conversation)(user)


async def _reply(conversation: Conversation) -> Message:
    return await sync_to_async(
        lambda: Message.objects.filter(conversation=conversation, role="assistant").latest("created_at")
    )()


async def test_a_worker_killed_mid_answer_leaves_an_interrupted_reply_with_its_text(
    stack: Stack, alice: object
) -> None:
    conversation = await _conversation(alice)
    cookie = await sync_to_async(_session_cookie)(alice)
    socket = await _socket(stack, cookie, conversation.pk)
    try:
        await _receive(socket)  # state
        await socket.send(json.dumps({"action": "send", "text": "Tell me an endless story"}))
        await _until(socket, "delta")
        await asyncio.sleep(1.5)  # let the worker store some text
        stack.processes["worker"].kill()
        killed_at = time.monotonic()
        frames = await _until(socket, "done", timeout=40)
        elapsed = time.monotonic() - killed_at
        final = frames[-1]["message"]
        assert final["status"] == "interrupted" and "press Retry" in final["error"]
        assert elapsed < 30, f"interrupted after {elapsed:.1f} s"
        reply = await _reply(conversation)
        assert reply.status == "interrupted" and reply.content and reply.content == final["content"]
    finally:
        await socket.close()
    # Retry (regenerate) on a new worker answers it, once.
    stack.start_process("worker")
    socket = await _socket(stack, cookie, conversation.pk)
    try:
        await _receive(socket)
        await socket.send(json.dumps({"action": "regenerate", "message": reply.pk}))
        frames = await _until(socket, "done", timeout=60)
        assert frames[-1]["message"]["status"] == "done"
    finally:
        await socket.close()
    statuses = await sync_to_async(
        lambda: sorted(Message.objects.filter(conversation=conversation).values_list("status", flat=True))
    )()
    assert statuses == ["done", "done", "interrupted"]


async def test_after_a_redis_restart_mid_stream_new_messages_work_within_10_seconds(
    stack: Stack, alice: object
) -> None:
    streaming = await _conversation(alice)
    cookie = await sync_to_async(_session_cookie)(alice)
    socket = await _socket(stack, cookie, streaming.pk)
    await _receive(socket)
    await socket.send(json.dumps({"action": "send", "text": "Tell me an endless story"}))
    await _until(socket, "delta")
    stack.restart_redis()
    restarted_at = time.monotonic()

    # A new message is answered within 10 s of the restart (the worker's second slot is free).
    fresh = await _conversation(alice)
    answered_after = None
    while answered_after is None and time.monotonic() - restarted_at < 10:
        try:
            probe = await _socket(stack, cookie, fresh.pk)
        except OSError:
            await asyncio.sleep(0.3)
            continue
        try:
            await _receive(probe, timeout=2)
            await probe.send(json.dumps({"action": "send", "text": "Hello", "client_id": "p"}))
            frames = await _until(probe, "done", timeout=max(0.5, 10 - (time.monotonic() - restarted_at)))
            assert frames[-1]["message"]["status"] == "done"
            answered_after = time.monotonic() - restarted_at
        except (OSError, TimeoutError, AssertionError, KeyError):
            await asyncio.sleep(0.3)
        finally:
            await probe.close()
    assert answered_after is not None, "no answer within 10 s of the restart\n" + stack.logs()

    # The answer in flight went on into PostgreSQL; its socket catches up and ends equal to the stored text.
    final = await _until_finished(socket)
    await socket.close()
    stored = await _reply(streaming)
    assert final["content"] == stored.content and stored.status == "done"


async def test_a_reply_queued_in_redis_when_redis_restarts_empty_is_sent_again(
    stack: Stack, alice: object
) -> None:
    stack.processes["worker"].stop()  # no worker: the reply's task waits in Redis
    conversation = await _conversation(alice)
    cookie = await sync_to_async(_session_cookie)(alice)
    socket = await _socket(stack, cookie, conversation.pk)
    try:
        await _receive(socket)
        await socket.send(json.dumps({"action": "send", "text": "Hello", "client_id": "q"}))
        await _until(socket, "ack")
        stack.restart_redis()  # the task is gone with Redis's memory
        stack.start_process("worker")
        assert (await _until_finished(socket))["status"] == "done"
        assert "sent to their workers again" in stack.processes["reaper"].output()
    finally:
        await socket.close()


async def test_a_dropped_socket_reconnects_with_no_gap_and_no_duplicate(stack: Stack, alice: object) -> None:
    conversation = await _conversation(alice)
    cookie = await sync_to_async(_session_cookie)(alice)
    socket = await _socket(stack, cookie, conversation.pk)
    await _receive(socket)
    await socket.send(json.dumps({"action": "send", "text": "Please think about it, then tell a story"}))
    frames = await _until(socket, "delta")
    await socket.close()  # the laptop lid closes
    await asyncio.sleep(1.2)
    socket = await _socket(stack, cookie, conversation.pk)
    try:
        state = await _receive(socket)
        reply = state["messages"][-1]
        text, reasoning, last = reply["content"], reply["reasoning"], reply["seq"]
        if reply["status"] == "streaming":
            for frame in await _until(socket, "done"):
                if frame["type"] == "delta":
                    assert frame["seq"] == last + 1, "a gap or a duplicate"
                    text, reasoning, last = (
                        text + frame["content"],
                        reasoning + frame["reasoning"],
                        frame["seq"],
                    )
        stored = await _reply(conversation)
        assert frames and (text, reasoning) == (stored.content, stored.reasoning)
        assert stored.status == "done"
    finally:
        await socket.close()


# --- Hostile frames and ended sessions, on a real Daphne ---------------------------------------------------


@pytest.fixture
def web() -> Iterator[Stack]:
    """Daphne and a Redis of its own: no GPU worker (nothing here is answered)."""
    live = Stack(database_url=test_database_url(), redis_prefix=settings.GPTOSS_REDIS_PREFIX)
    try:
        live.start_process("redis")
        live.start_process("web")
        yield live
    finally:
        live.stop()


async def test_a_2_mb_frame_gets_a_close_frame_with_1009_and_a_reason(web: Stack, alice: object) -> None:
    conversation = await _conversation(alice)
    socket = await _socket(web, await sync_to_async(_session_cookie)(alice), conversation.pk)
    try:
        await _receive(socket)  # state
        await socket.send(json.dumps({"action": "send", "text": "x" * 2_000_000}))
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(socket.recv(), 30)
        assert socket.close_code == 1009, f"closed with {socket.close_code} ({socket.close_reason!r})"
        assert "exceeds payload limit of 262144 octets" in (socket.close_reason or "")
    finally:
        await socket.close()
    assert await sync_to_async(Message.objects.count)() == 0
    assert "Traceback" not in web.output("web")


async def test_raw_frames_with_a_nul_or_a_lone_surrogate_get_error_frames_and_no_traceback(
    web: Stack, alice: object
) -> None:
    conversation = await _conversation(alice)
    socket = await _socket(web, await sync_to_async(_session_cookie)(alice), conversation.pk)
    try:
        await _receive(socket)  # state
        for raw in ('{"action": "send", "text": "a\\u0000b"}', '{"action": "send", "text": "a\\ud800b"}'):
            await socket.send(raw)
            error = await _receive(socket)
            assert error["type"] == "error" and "Remove it and send again." in error["message"]
        await socket.send(json.dumps({"action": "sync"}))
        assert (await _receive(socket))["type"] == "state"  # still open
    finally:
        await socket.close()
    assert await sync_to_async(Message.objects.count)() == 0
    assert "Traceback" not in web.output("web")


async def test_signing_out_over_http_closes_the_open_socket_with_4401(web: Stack, alice: object) -> None:
    conversation = await _conversation(alice)
    cookie = await sync_to_async(_session_cookie)(alice)
    socket = await _socket(web, cookie, conversation.pk)
    try:
        await _receive(socket)  # state
        status = await asyncio.to_thread(_post, f"{web.base_url}/accounts/logout/", cookie)
        assert status == 302
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(socket.recv(), 10)
        assert socket.close_code == 4401
    finally:
        await socket.close()
    assert await sync_to_async(Message.objects.count)() == 0


def _post(url: str, cookie: str) -> int:
    """POST with the session cookie and a matching CSRF token, as the page's Sign out form does."""
    import urllib.error
    import urllib.request

    token = "a" * 32
    request = urllib.request.Request(
        url,
        data=f"csrfmiddlewaretoken={token}".encode(),
        headers={
            "Cookie": f"{cookie}; csrftoken={token}",
            "Referer": url,
            "Origin": url.split("/accounts")[0],
        },
        method="POST",
    )

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None

    try:
        return urllib.request.build_opener(NoRedirect).open(request, timeout=10).status
    except urllib.error.HTTPError as error:
        return error.code
