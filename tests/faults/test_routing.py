"""Two GPU workers on one model, real processes: a conversation's next turn goes to the worker that keeps its
cache, and is still answered when that worker has died (docs/architecture.md, "Routing")."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings

from gptoss_web.devtools.stack import Stack
from tests.faults.sockets import latest_reply, new_conversation, open_socket, receive, session_cookie, until
from tests.live import test_database_url

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def stack(request: pytest.FixtureRequest) -> Iterator[Stack]:
    live = Stack(
        database_url=test_database_url(), redis_prefix=settings.GPTOSS_REDIS_PREFIX, workers=2
    ).start()
    try:
        yield live
    finally:
        live.stop()
        failed = getattr(request.node, "rep_call", None)
        if failed is None or failed.failed:
            print(live.logs())


def _process_of(stack: Stack, worker: str) -> str:
    """Return the stack's name ("worker", "worker2") of the worker process called *worker* (host:pid)."""
    pids = {f"{os.uname().nodename}:{stack.processes[n].popen.pid}": n for n in stack.workers}
    return pids[worker]


async def _turn(stack: Stack, cookie: str, conversation: object, text: str) -> tuple[str, float]:
    """Send *text* in *conversation*; return the worker that answered it and the seconds it took."""
    socket = await open_socket(stack, cookie, conversation.pk)  # type: ignore[attr-defined]
    try:
        await receive(socket)  # state
        sent = time.monotonic()
        await socket.send(json.dumps({"action": "send", "text": text}))
        frames = await until(socket, "done", timeout=90)
        assert frames[-1]["message"]["status"] == "done", frames[-1]
        took = time.monotonic() - sent
    finally:
        await socket.close()
    reply = await latest_reply(conversation)  # type: ignore[arg-type]
    return _process_of(stack, reply.worker), took


async def test_next_turns_go_to_the_worker_that_keeps_the_conversations_cache(
    stack: Stack, alice: object
) -> None:
    cookie = await sync_to_async(session_cookie)(alice)
    conversations = [await new_conversation(alice) for _ in range(2)]
    holders = [(await _turn(stack, cookie, c, "Hello"))[0] for c in conversations]
    for _ in range(3):
        for conversation, holder in zip(conversations, holders, strict=True):
            answered_by, _ = await _turn(stack, cookie, conversation, "Hello again")
            assert answered_by == holder
    assert stack.output("web").count("(its cache)") >= 6  # the dispatcher's log, in the web process


async def test_a_turn_routed_to_a_worker_that_died_is_answered_by_the_other(
    stack: Stack, alice: object
) -> None:
    cookie = await sync_to_async(session_cookie)(alice)
    conversation = await new_conversation(alice)
    holder, _ = await _turn(stack, cookie, conversation, "Hello")
    routed_before = stack.output("web").count("(its cache)")
    stack.kill(holder)  # its offer still looks fresh for a few seconds: the next turn is routed to it
    answered_by, took = await _turn(stack, cookie, conversation, "Hello again")
    assert stack.output("web").count("(its cache)") == routed_before + 1
    assert answered_by != holder
    # The reaper sends the task again, to the shared queue, once the dead worker's offer is stale.
    assert took < 60, f"answered after {took:.1f} s"
    # Once the dead worker's offer is stale, a turn goes straight to the shared queue and is answered at once.
    _, took = await _turn(stack, cookie, conversation, "Hello once more")
    assert took < 10, f"answered after {took:.1f} s"
