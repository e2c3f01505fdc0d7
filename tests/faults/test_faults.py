"""Faults with real processes: a GPU worker killed mid-answer, Redis restarted mid-stream, a dropped socket.

Postgres is the truth: whatever fails, the user finds their messages, the partial answer and a way on.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from chat.models import Message
from gptoss_web.devtools.stack import Stack
from tests.faults.sockets import (
    latest_reply,
    new_conversation,
    open_socket,
    receive,
    session_cookie,
    until,
    until_finished,
)
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


async def test_a_worker_killed_mid_answer_leaves_an_interrupted_reply_with_its_text(
    stack: Stack, alice: object
) -> None:
    conversation = await new_conversation(alice)
    cookie = await sync_to_async(session_cookie)(alice)
    socket = await open_socket(stack, cookie, conversation.pk)
    try:
        await receive(socket)  # state
        await socket.send(json.dumps({"action": "send", "text": "Tell me an endless story"}))
        await until(socket, "delta")
        await asyncio.sleep(1.5)  # let the worker store some text
        stack.processes["worker"].kill()
        killed_at = time.monotonic()
        frames = await until(socket, "done", timeout=40)
        elapsed = time.monotonic() - killed_at
        final = frames[-1]["message"]
        assert final["status"] == "interrupted" and "press Retry" in final["error"]
        assert elapsed < 30, f"interrupted after {elapsed:.1f} s"
        reply = await latest_reply(conversation)
        assert reply.status == "interrupted" and reply.content and reply.content == final["content"]
    finally:
        await socket.close()
    # Retry (regenerate) on a new worker answers it, once.
    stack.start_process("worker")
    socket = await open_socket(stack, cookie, conversation.pk)
    try:
        await receive(socket)
        await socket.send(json.dumps({"action": "regenerate", "message": reply.pk}))
        frames = await until(socket, "done", timeout=60)
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
    streaming = await new_conversation(alice)
    cookie = await sync_to_async(session_cookie)(alice)
    socket = await open_socket(stack, cookie, streaming.pk)
    await receive(socket)
    await socket.send(json.dumps({"action": "send", "text": "Tell me an endless story"}))
    await until(socket, "delta")
    stack.restart_redis()
    restarted_at = time.monotonic()

    # A new message is answered within 10 s of the restart (the worker's second slot is free).
    fresh = await new_conversation(alice)
    answered_after = None
    while answered_after is None and time.monotonic() - restarted_at < 10:
        try:
            probe = await open_socket(stack, cookie, fresh.pk)
        except OSError:
            await asyncio.sleep(0.3)
            continue
        try:
            await receive(probe, timeout=2)
            await probe.send(json.dumps({"action": "send", "text": "Hello", "client_id": "p"}))
            frames = await until(probe, "done", timeout=max(0.5, 10 - (time.monotonic() - restarted_at)))
            assert frames[-1]["message"]["status"] == "done"
            answered_after = time.monotonic() - restarted_at
        except (OSError, TimeoutError, AssertionError, KeyError):
            await asyncio.sleep(0.3)
        finally:
            await probe.close()
    assert answered_after is not None, "no answer within 10 s of the restart\n" + stack.logs()

    # The answer in flight went on into PostgreSQL; its socket catches up and ends equal to the stored text.
    final = await until_finished(socket)
    await socket.close()
    stored = await latest_reply(streaming)
    assert final["content"] == stored.content and stored.status == "done"


async def test_a_reply_queued_in_redis_when_redis_restarts_empty_is_sent_again(
    stack: Stack, alice: object
) -> None:
    stack.processes["worker"].stop()  # no worker: the reply's task waits in Redis
    conversation = await new_conversation(alice)
    cookie = await sync_to_async(session_cookie)(alice)
    socket = await open_socket(stack, cookie, conversation.pk)
    try:
        await receive(socket)
        await socket.send(json.dumps({"action": "send", "text": "Hello", "client_id": "q"}))
        await until(socket, "ack")
        stack.restart_redis()  # the task is gone with Redis's memory
        stack.start_process("worker")
        assert (await until_finished(socket))["status"] == "done"
        assert "sent to their workers again" in stack.processes["reaper"].output()
    finally:
        await socket.close()


async def test_a_dropped_socket_reconnects_with_no_gap_and_no_duplicate(stack: Stack, alice: object) -> None:
    conversation = await new_conversation(alice)
    cookie = await sync_to_async(session_cookie)(alice)
    socket = await open_socket(stack, cookie, conversation.pk)
    await receive(socket)
    await socket.send(json.dumps({"action": "send", "text": "Please think about it, then tell a story"}))
    frames = await until(socket, "delta")
    await socket.close()  # the laptop lid closes
    await asyncio.sleep(1.2)
    socket = await open_socket(stack, cookie, conversation.pk)
    try:
        state = await receive(socket)
        reply = state["messages"][-1]
        text, reasoning, last = reply["content"], reply["reasoning"], reply["seq"]
        if reply["status"] == "streaming":
            for frame in await until(socket, "done"):
                if frame["type"] == "delta":
                    assert frame["seq"] == last + 1, "a gap or a duplicate"
                    text, reasoning, last = (
                        text + frame["content"],
                        reasoning + frame["reasoning"],
                        frame["seq"],
                    )
        stored = await latest_reply(conversation)
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
    conversation = await new_conversation(alice)
    socket = await open_socket(web, await sync_to_async(session_cookie)(alice), conversation.pk)
    try:
        await receive(socket)  # state
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
    conversation = await new_conversation(alice)
    socket = await open_socket(web, await sync_to_async(session_cookie)(alice), conversation.pk)
    try:
        await receive(socket)  # state
        for raw in ('{"action": "send", "text": "a\\u0000b"}', '{"action": "send", "text": "a\\ud800b"}'):
            await socket.send(raw)
            error = await receive(socket)
            assert error["type"] == "error" and "Remove it and send again." in error["message"]
        await socket.send(json.dumps({"action": "sync"}))
        assert (await receive(socket))["type"] == "state"  # still open
    finally:
        await socket.close()
    assert await sync_to_async(Message.objects.count)() == 0
    assert "Traceback" not in web.output("web")


async def test_signing_out_over_http_closes_the_open_socket_with_4401(web: Stack, alice: object) -> None:
    conversation = await new_conversation(alice)
    cookie = await sync_to_async(session_cookie)(alice)
    socket = await open_socket(web, cookie, conversation.pk)
    try:
        await receive(socket)  # state
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


async def test_replies_queued_before_redis_restarts_empty_are_answered_before_a_newer_one(
    alice: object, bob: object
) -> None:
    """Re-sent replies keep their place ahead of a message sent just after the restart, each answered once."""
    stack = Stack(
        database_url=test_database_url(),
        redis_prefix=settings.GPTOSS_REDIS_PREFIX,
        worker_env={"GPTOSS_SLOTS": "1"},  # one reply at a time: the order is the order of the answers
    )
    await sync_to_async(stack.start)()
    sockets: list[ClientConnection] = []
    try:
        stack.processes["worker"].stop()  # no worker: the replies wait in Redis
        older = [await new_conversation(alice), await new_conversation(alice)]
        newer = await new_conversation(bob)
        for conversation, owner in ((older[0], alice), (older[1], alice), (newer, bob)):
            cookie = await sync_to_async(session_cookie)(owner)
            sockets.append(await open_socket(stack, cookie, conversation.pk))
            await receive(sockets[-1])
        for socket in sockets[:2]:
            await socket.send(json.dumps({"action": "send", "text": "Hello"}))
            await until(socket, "ack")
        reaper = stack.processes["reaper"].popen.pid
        os.killpg(reaper, signal.SIGSTOP)  # the reaper notices the restart only after the next message
        stack.restart_redis()
        await sockets[2].send(json.dumps({"action": "send", "text": "Hello"}))
        await until(sockets[2], "ack")
        os.killpg(reaper, signal.SIGCONT)
        await sync_to_async(stack.start_process)("worker")
        finals = [await until_finished(socket) for socket in sockets]
        assert [f["status"] for f in finals] == ["done", "done", "done"]
        replies = [await latest_reply(c) for c in (*older, newer)]
        started = sorted(replies, key=lambda r: r.started_at or r.created_at)
        assert [r.pk for r in started] == [r.pk for r in replies], "a newer reply was answered first"
        assert "2 queued replies sent to their workers again" in stack.output("reaper")
    except BaseException:
        print(stack.logs())
        raise
    finally:
        for socket in sockets:
            await socket.close()
        await sync_to_async(stack.stop)()
