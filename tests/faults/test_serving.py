"""Who serves a model, with real processes: the worker's threads follow its slots, a reply for a model nobody
serves says so and fails in time, and a model served from a path carries its own name.
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
from asgiref.sync import sync_to_async
from django.conf import settings
from websockets.asyncio.client import ClientConnection

from chat.models import Conversation, Message
from gptoss_web.devtools.stack import Process, Stack, wait_until
from inference.models import ServedModel
from inference.status import worker_key
from tests.faults.sockets import (
    latest_reply,
    new_conversation,
    open_socket,
    receive,
    session_cookie,
    until,
)
from tests.live import test_database_url as database_url

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@contextmanager
def running(
    *, without: tuple[str, ...] = (), worker_env: dict[str, str] | None = None, **env: str
) -> Iterator[Stack]:
    """Run a stack (its own Redis) without the processes named in *without*; print its logs on failure."""
    live = Stack(
        database_url=database_url(),
        redis_prefix=settings.GPTOSS_REDIS_PREFIX,
        worker_env=worker_env,
        GPTOSS_VAR_DIR=str(settings.GPTOSS_VAR_DIR),
        **env,
    )
    try:
        for name in ("redis", "web", "worker", "reaper"):
            if name not in without:
                live.start_process(name)
        yield live
    except BaseException:
        print(live.logs())
        raise
    finally:
        live.stop()


# --- Issue 12.5: the worker's task threads follow the engine's slots ---------------------------------------


def test_with_gptoss_slots_auto_the_worker_runs_one_task_thread_per_slot_its_engine_sized() -> None:
    """GPTOSS_SLOTS=auto: the engine sizes the slots once the model has loaded, logs how, and the Celery pool
    gets as many threads (the heartbeat says the same)."""
    with running(without=("web", "reaper"), GPTOSS_SLOTS="auto") as stack:
        output = stack.output("worker")
        said = re.search(r"GPTOSS_SLOTS=auto: .* of RAM free after loading the model.*: (\d+) slots", output)
        assert said, output
        slots = int(said.group(1))
        assert slots > 1
        assert f"concurrency: {slots} (thread)" in output
        client = redis.Redis.from_url(stack.env["REDIS_URL"])
        wait_until(lambda: _heartbeat_slots(client) == [slots], 10, "a heartbeat with the sized slots")


def _heartbeat_slots(client: redis.Redis) -> list[int]:
    """Return the slots each live worker's heartbeat reports."""
    return [
        json.loads(client.get(key) or "{}").get("slots_total") for key in client.scan_iter(worker_key("*"))
    ]


async def test_a_registry_row_of_one_slot_keeps_the_second_reply_in_line_not_answering(
    alice: object,
) -> None:

    await sync_to_async(ServedModel.objects.create)(name="tiny", source="tiny", slots=1, context=4096)
    # GPTOSS_SLOTS says 2 (and the stack used to pass --concurrency 2): the registry row's 1 slot must win.
    with running(GPTOSS_SLOTS="2") as stack:
        assert "concurrency: 1 (thread)" in stack.output("worker")
        first, second = await new_conversation(alice), await new_conversation(alice)
        cookie = await sync_to_async(session_cookie)(alice)
        socket_a = await open_socket(stack, cookie, first.pk)
        socket_b = await open_socket(stack, cookie, second.pk)
        try:
            await receive(socket_a)
            await receive(socket_b)
            await socket_a.send(json.dumps({"action": "send", "text": "Tell me an endless story"}))
            await until(socket_a, "delta")
            await socket_b.send(json.dumps({"action": "send", "text": "Hello", "client_id": "b"}))
            frames_b = await until(socket_b, "ack")
            while not [f for f in frames_b if f["type"] == "message" and f["message"]["role"] == "assistant"]:
                frames_b.append(await receive(socket_b))
            # The first answer keeps streaming for a while; meanwhile the second waits in line.
            deltas = 0
            while deltas < 30:
                deltas += (await receive(socket_a))["type"] == "delta"
            waiting = await latest_reply(second)
            assert waiting.status == "queued", "the second reply was taken while the only slot was busy"
            shown = [f for f in frames_b if f["type"] == "message" and f["message"]["role"] == "assistant"]
            assert shown and shown[-1]["message"]["queue_position"] == 1
            await socket_a.send(json.dumps({"action": "stop"}))
            frames_b = await until(socket_b, "done", timeout=90)
            assert frames_b[-1]["message"]["status"] == "done"
            assert "started" in [f["type"] for f in frames_b]
        finally:
            await socket_a.close()
            await socket_b.close()
    stopped, answered = await latest_reply(first), await latest_reply(second)
    assert stopped.status == "cancelled"
    assert stopped.finished_at is not None and answered.started_at is not None
    assert answered.started_at >= stopped.finished_at


# --- Issue 12.6: a model served from a path has its own name ------------------------------------------------


def test_a_model_served_from_a_path_goes_by_the_files_name_in_the_chip_the_queue_and_the_heartbeat(
    alice: object, tmp_path: Path
) -> None:
    from inference.runtime.catalog import model_path

    served = tmp_path / "house-oss-v2.gguf"
    shutil.copy(model_path("tiny", settings.GPTOSS_VAR_DIR), served)
    # GPTOSS_MODEL is left at its default (gpt-oss-20b): the path overrides it, and so does its name.
    with running(GPTOSS_MODEL="", GPTOSS_MODEL_PATH=str(served)) as stack:
        opener = _browser(stack, alice)
        page = opener.open(_post(stack, "/c/new/", text="Hello"), timeout=10)
        conversation = Conversation.objects.get(pk=int(page.geturl().rstrip("/").rsplit("/", 1)[1]))
        assert conversation.model_name == "house-oss-v2"
        replies = Message.objects.filter(conversation=conversation, role="assistant")
        wait_until(
            lambda: replies.filter(status="done").exists(), 90, "the file's worker answers from its queue"
        )
        html = opener.open(page.geturl(), timeout=10).read().decode()
        assert 'title="Model">house-oss-v2<' in html and "gpt-oss-20b" not in html
        beats = redis.Redis.from_url(stack.env["REDIS_URL"])
        models = {json.loads(beats.get(key))["model"] for key in beats.scan_iter("*:worker:*")}
        assert models == {"house-oss-v2"}
        assert "gpu.house-oss-v2" in stack.output("worker")


def test_a_worker_launched_on_another_models_queue_still_answers_the_replies_of_the_model_it_serves(
    alice: object, tmp_path: Path
) -> None:
    from inference.runtime.catalog import model_path

    served = tmp_path / "house-oss-v2.gguf"
    shutil.copy(model_path("tiny", settings.GPTOSS_VAR_DIR), served)
    with running(without=("worker",), GPTOSS_MODEL="", GPTOSS_MODEL_PATH=str(served)) as stack:
        # As the systemd unit and the GPU image launch it without GPTOSS_MODEL_NAME: gpu.$GPTOSS_MODEL, while
        # the worker serves (and its heartbeat names) house-oss-v2.
        argv = [sys.executable, "-m", "celery", "-A", "gptoss_web", "worker", "--pool", "threads",
                "--queues", "gpu.gpt-oss-20b", "--hostname", f"gpu-{stack.web_port}@%h", "--without-gossip",
                "--without-mingle", "--loglevel", "INFO"]  # fmt: skip
        stack.processes["worker"] = Process("worker", argv, stack.worker_env)
        stack.processes["worker"].wait_for("ready.", timeout=180)
        opener = _browser(stack, alice)
        page = opener.open(_post(stack, "/c/new/", text="Hello"), timeout=10)
        conversation = Conversation.objects.get(pk=int(page.geturl().rstrip("/").rsplit("/", 1)[1]))
        assert conversation.model_name == "house-oss-v2"
        replies = Message.objects.filter(conversation=conversation, role="assistant")
        wait_until(
            lambda: replies.filter(status="done").exists(), 90, "the worker answers its model's replies"
        )


CSRF = "a" * 32


def _browser(stack: Stack, user: object) -> urllib.request.OpenerDirector:
    """Return an HTTP client signed in as *user* on the stack's web process (sessions are in the database)."""
    opener = urllib.request.build_opener()
    opener.addheaders = [("Cookie", f"{session_cookie(user)}; {settings.CSRF_COOKIE_NAME}={CSRF}")]
    return opener


def _post(stack: Stack, path: str, **fields: str) -> urllib.request.Request:
    data = urllib.parse.urlencode({"csrfmiddlewaretoken": CSRF, **fields}).encode()
    return urllib.request.Request(stack.base_url + path, data=data, headers={"Referer": stack.base_url + "/"})


# --- Issue 12.3: nobody serving, everybody told ------------------------------------------------------------

NOBODY = "No GPU worker is serving tiny right now"


async def _until_waiting(socket: ClientConnection, text: str, timeout: float = 30) -> list[dict[str, Any]]:
    """Return the frames up to the first that shows the queued reply's waiting note containing *text*
    (or, with text "", the first that clears it)."""
    frames: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while True:
        frame = await receive(socket, max(0.1, deadline - time.monotonic()))
        frames.append(frame)
        shown = frame.get("waiting") if frame["type"] == "queued" else None
        if frame["type"] in ("message", "state"):
            messages = frame.get("messages") or [frame["message"]]
            shown = next((m.get("waiting") for m in messages if m["status"] == "queued"), None)
        if shown is not None and (text in shown if text else shown == ""):
            return frames


async def test_with_no_worker_a_queued_reply_says_so_live_and_on_reload_and_answers_once_one_starts(
    alice: object,
) -> None:
    with running(without=("worker",), GPTOSS_UNSERVED_TIMEOUT_S="600") as stack:
        conversation = await new_conversation(alice)
        cookie = await sync_to_async(session_cookie)(alice)
        socket = await open_socket(stack, cookie, conversation.pk)
        try:
            await receive(socket)
            await socket.send(json.dumps({"action": "send", "text": "Hello", "client_id": "n"}))
            frames = await _until_waiting(socket, NOBODY)
            assert "keeps its place in line" in json.dumps(frames[-1])
            # A reload shows it too, server-rendered, before any socket speaks.
            opener = await sync_to_async(_browser)(stack, alice)
            html = opener.open(f"{stack.base_url}/c/{conversation.pk}/", timeout=10).read().decode()
            assert NOBODY in html
            # A worker starts: the note goes away and the reply is answered.
            stack.start_process("worker")
            frames = await until(socket, "done", timeout=90)
            assert frames[-1]["message"]["status"] == "done"
        finally:
            await socket.close()


async def test_with_no_worker_a_queued_reply_fails_after_the_wait_with_retry(alice: object) -> None:
    with running(without=("worker",), GPTOSS_UNSERVED_TIMEOUT_S="5") as stack:
        conversation = await new_conversation(alice)
        cookie = await sync_to_async(session_cookie)(alice)
        socket = await open_socket(stack, cookie, conversation.pk)
        try:
            await receive(socket)
            await socket.send(json.dumps({"action": "send", "text": "Hello", "client_id": "n"}))
            final = (await until(socket, "done", timeout=60))[-1]["message"]
        finally:
            await socket.close()
    assert final["status"] == "failed" and final["retryable"] is True
    assert "No GPU worker served tiny for 5 s" in final["error"] and "Press Retry" in final["error"]
    reply = await latest_reply(conversation)
    assert (reply.status, reply.retryable) == ("failed", True)


async def test_a_reply_for_a_model_only_another_models_worker_serves_waits_told_and_fails_once_disabled(
    alice: object,
) -> None:
    await sync_to_async(ServedModel.objects.create)(name="tiny", source="tiny")
    other = await sync_to_async(ServedModel.objects.create)(name="other-oss", source="tiny")
    with running(GPTOSS_UNSERVED_TIMEOUT_S="600") as stack:  # its worker serves tiny only
        conversation = await new_conversation(alice, model_name="other-oss")
        cookie = await sync_to_async(session_cookie)(alice)
        socket = await open_socket(stack, cookie, conversation.pk)
        try:
            await receive(socket)
            await socket.send(json.dumps({"action": "send", "text": "Hello", "client_id": "o"}))
            await _until_waiting(socket, "No GPU worker is serving other-oss right now")
            other.enabled = False  # taken out of service while the reply waits (the reaper is the backstop)
            await sync_to_async(other.save)()
            final = (await until(socket, "done", timeout=30))[-1]["message"]
        finally:
            await socket.close()
    assert final["status"] == "failed" and final["retryable"] is False
    assert "other-oss is no longer served on this site" in final["error"]
