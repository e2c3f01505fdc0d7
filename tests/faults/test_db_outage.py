"""PostgreSQL faults with real processes: a restart mid-answer, a worker with a wrong DATABASE_URL, a worker
that loses its database later.

Each test runs on a private PostgreSQL server (gptoss_web.devtools.stack.Postgres) that it stops and
starts; the machine's server is never touched.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from django.conf import settings
from django.test import Client
from websockets.asyncio.client import ClientConnection

from gptoss_web.celery import app
from gptoss_web.devtools.stack import ROOT, Postgres, Stack, wait_until
from gptoss_web.run import free_port
from inference.dispatch import GENERATE_TASK
from inference.models import ServedModel
from inference.runtime.catalog import model_path, queue_for_model
from inference.status import redis_client
from tests.factories import UserFactory
from tests.faults.sockets import open_socket, receive, until

pytestmark = [pytest.mark.slow]

TEMPLATE = "gptoss_template"


class PrivateDatabases:
    """A private PostgreSQL server with one migrated template; each test gets a fresh copy of it."""

    def __init__(self, server: Postgres) -> None:
        self.server = server

    def create(self) -> str:
        """Return the URL of a new database copied from the migrated template."""
        name = f"gptoss_{uuid.uuid4().hex[:8]}"
        with psycopg.connect(self.server.url(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{name}" TEMPLATE "{TEMPLATE}"')
        return self.server.url(name)


@pytest.fixture(scope="module")
def private_pg() -> Iterator[PrivateDatabases]:
    server = Postgres().start()
    try:
        with psycopg.connect(server.url(), autocommit=True) as connection:
            connection.execute(f'CREATE DATABASE "{TEMPLATE}"')
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "--verbosity", "0"],
            cwd=ROOT, env=_env(server.url(TEMPLATE)), check=True, timeout=300,
        )  # fmt: skip
        yield PrivateDatabases(server)
    finally:
        server.close()


def _env(database_url: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "DJANGO_SETTINGS_MODULE": "gptoss_web.settings_test",
        "DATABASE_URL": database_url,
    }


def _in_database(database_url: str, code: str) -> Any:
    """Run *code* in a Django shell on *database_url*; return the JSON it printed last."""
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code],
        cwd=ROOT, env=_env(database_url), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


USER_AND_CONVERSATIONS = """
import json
from django.conf import settings
from django.test import Client
from tests.factories import UserFactory, make_conversation
user = UserFactory(username="alice")
client = Client()
client.force_login(user)
print(json.dumps({
    "cookie": f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}",
    "conversations": [make_conversation(user).pk for _ in range(4)],
}))
"""


def _stored_replies(database_url: str) -> dict[int, tuple[str, str]]:
    """Return {conversation id: (status, content)} of the assistant replies in *database_url*."""
    with psycopg.connect(database_url) as connection:
        rows = connection.execute(
            "SELECT conversation_id, status, content FROM chat_message WHERE role = 'assistant'"
        ).fetchall()
    return {conversation: (status, content) for conversation, status, content in rows}


async def _follow(socket: ClientConnection, seen: str = "") -> tuple[dict[str, Any], str, float]:
    """Read *socket* until its last reply ends; return the final reply, the text the user had seen before
    it ended (*seen* plus what streamed since), and when it ended."""
    while True:
        frame = await receive(socket, timeout=300)
        if frame["type"] == "delta":
            seen += frame["content"]
        elif frame["type"] == "state":
            last = frame["messages"][-1]
            if last["role"] == "assistant" and last["status"] not in ("queued", "streaming"):
                return last, seen, time.monotonic()
            seen = last["content"] if last["role"] == "assistant" else seen
        elif frame["type"] == "done":
            return frame["message"], seen, time.monotonic()


@pytest.mark.parametrize(("outage_s", "mode"), [(5, "fast"), (60, "immediate")])
async def test_every_reply_in_flight_ends_with_its_full_text_after_a_postgres_outage(
    private_pg: PrivateDatabases, outage_s: int, mode: str
) -> None:
    """One reply streams and two wait in the queue while PostgreSQL is down: all three end `done` soon
    after it is back, the streamed one with every word the user saw, and the user can send again."""
    database_url = await asyncio.to_thread(private_pg.create)
    data = await asyncio.to_thread(_in_database, database_url, USER_AND_CONVERSATIONS)
    story, first, second, later = data["conversations"]
    stack = Stack(
        database_url=database_url,
        redis_prefix=f"gptoss-outage-{uuid.uuid4().hex[:8]}",
        # One slot: the second and third reply wait in the queue. The story (1,800 tokens: 9 s on an idle
        # machine, 18 s on a busy one) usually still streams when a short outage ends, and ends during a long
        # one; what it has left to generate after the outage counts in the 30 s.
        worker_env={"GPTOSS_SLOTS": "1", "GPTOSS_MAX_ANSWER_TOKENS": "1800"},
        GPTOSS_MAX_IN_FLIGHT_PER_USER="3",
    )
    await asyncio.to_thread(stack.start)
    sockets: list[ClientConnection] = []
    try:
        for conversation in (story, first, second):
            sockets.append(await open_socket(stack, data["cookie"], conversation))
            await receive(sockets[-1])  # state
        await sockets[0].send(json.dumps({"action": "send", "text": "Tell me an endless story"}))
        seen = "".join(f["content"] for f in await until(sockets[0], "delta") if f["type"] == "delta")
        for socket, text in zip(sockets[1:], ("Hello", "Hello there"), strict=True):
            await socket.send(json.dumps({"action": "send", "text": text}))
            await until(socket, "ack")
        following = asyncio.gather(_follow(sockets[0], seen), _follow(sockets[1]), _follow(sockets[2]))
        await asyncio.sleep(1.5)  # the answer streams and is stored
        await asyncio.to_thread(private_pg.server.stop, mode)
        await asyncio.sleep(outage_s)
        await asyncio.to_thread(private_pg.server.start)
        back = time.monotonic()
        ended = await asyncio.wait_for(following, timeout=120)
        after = max(at for _, _, at in ended) - back
        each = ", ".join(f"{at - back:.1f}" for _, _, at in ended)
        print(f"PostgreSQL stopped ({mode}) for {outage_s} s: every reply ended {after:.1f} s after it was "
              f"back (story, queued, queued: {each} s)")  # fmt: skip

        stored = _stored_replies(database_url)
        (final, streamed, _), *queued = ended
        assert final["status"] == "done", final["error"]
        assert final["content"].startswith(streamed) and len(streamed) > 0  # every word the user saw
        assert stored[story] == ("done", final["content"])
        assert [q["status"] for q, _, _ in queued] == ["done", "done"]
        assert stored[first][0] == stored[second][0] == "done"
        assert after <= 30, f"replies ended {after:.1f} s after PostgreSQL returned\n" + stack.logs()

        # Nothing counts against the user's limit any more: a new conversation is answered.
        socket = await open_socket(stack, data["cookie"], later)
        sockets.append(socket)
        await receive(socket)
        await socket.send(json.dumps({"action": "send", "text": "Hello"}))
        assert (await _follow(socket))[0]["status"] == "done"
    except BaseException:
        print(stack.logs())
        raise
    finally:
        for socket in sockets:
            await socket.close()
        await asyncio.to_thread(stack.stop)


@pytest.fixture
def tiny_model() -> str:
    return str(model_path("tiny", settings.GPTOSS_VAR_DIR))


def _tasks_waiting(queue: str) -> int:
    prefix = settings.CELERY_BROKER_TRANSPORT_OPTIONS["global_keyprefix"]
    return int(redis_client().llen(f"{prefix}{queue}"))


@pytest.mark.parametrize("problem", ["closed port", "unknown database"])
def test_a_worker_with_a_wrong_database_url_stops_before_taking_a_task_and_says_what_to_fix(
    problem: str, tiny_model: str
) -> None:
    model = f"wrongdb-{uuid.uuid4().hex[:6]}"
    queue = queue_for_model(model)
    app.send_task(GENERATE_TASK, args=[1], queue=queue)  # a user's reply waits for this model's worker
    url = (
        f"postgres://postgres:secret@127.0.0.1:{free_port()}/gptoss"
        if problem == "closed port"
        else f"postgres://postgres:secret@127.0.0.1:5432/gptoss_missing_{uuid.uuid4().hex[:8]}"
    )
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "gptoss_web", "worker", "--pool", "threads", "--concurrency",
         "1", "--queues", queue, "--without-gossip", "--without-mingle", "--loglevel", "INFO"],
        cwd=ROOT, env={**_env(url), "GPTOSS_REDIS_PREFIX": settings.GPTOSS_REDIS_PREFIX,
                       "GPTOSS_MODEL": model, "GPTOSS_MODEL_PATH": tiny_model},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        wait_until(lambda: worker.poll() is not None or not _tasks_waiting(queue), 120, "the worker to stop")
        output = worker.communicate(timeout=30)[0] if worker.poll() is not None else ""
        assert _tasks_waiting(queue) == 1, "the worker took the task"
        assert worker.returncode not in (None, 0)
        assert f"DATABASE_URL={url.replace(':secret@', ':***@')} cannot be used" in output, output
        assert "Set DATABASE_URL to the database the web app uses" in output
        assert "secret" not in output
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.communicate(timeout=30)
        redis_client().delete(f"{settings.CELERY_BROKER_TRANSPORT_OPTIONS['global_keyprefix']}{queue}")


@pytest.mark.django_db(transaction=True)
def test_a_worker_that_loses_postgres_takes_no_task_until_it_is_back_and_says_so(
    private_pg: PrivateDatabases, tiny_model: str
) -> None:
    staff = Client()
    staff.force_login(UserFactory(username="ops", is_staff=True))  # type: ignore[arg-type]
    model = f"outage-{uuid.uuid4().hex[:6]}"
    queue = queue_for_model(model)
    ServedModel.objects.create(name=model, source="tiny", context=2048, slots=1)  # what /healthz checks
    stack = Stack(
        database_url=private_pg.create(),  # the worker's own database, lost below
        redis_prefix=settings.GPTOSS_REDIS_PREFIX,
        redis_url=settings.REDIS_URL,
        worker_env={
            "GPTOSS_MODEL_NAME": model,  # a file served by path goes by its own name unless given one
            "GPTOSS_MODEL_PATH": tiny_model,
            "GPTOSS_SLOTS": "1",
        },
    )

    def state() -> dict[str, Any]:
        workers = staff.get("/ops/workers.json").json()["workers"]
        return next((w for w in workers if w["model"] == model and w["up"]), {})

    try:
        stack.start_process("worker")
        wait_until(lambda: state().get("state") == "ready", 60, "the worker's ready heartbeat")
        private_pg.server.stop("fast")
        wait_until(lambda: state().get("state") == "waiting", 30, "the worker to say it is waiting")
        assert "DATABASE_URL=" in state()["error"] and "cannot be used" in state()["error"]
        health = staff.get("/healthz")
        assert health.status_code == 503
        assert "waiting: " in health.json()["checks"][f"model:{model}"]
        assert "waiting for PostgreSQL or Redis" in staff.get("/ops/workers/").content.decode()

        app.send_task(GENERATE_TASK, args=[1], queue=queue)  # a reply queued meanwhile by a web process
        time.sleep(2 * 2.0 + 1)  # two heartbeats: a worker that takes tasks would have taken it
        assert _tasks_waiting(queue) == 1, "the worker took a task while it had no database"

        private_pg.server.start()
        wait_until(lambda: state().get("state") == "ready", 30, "the worker to be ready again")
        wait_until(lambda: _tasks_waiting(queue) == 0, 30, "the worker to take the waiting task")
        assert "stopped taking tasks" in stack.output("worker")
    except BaseException:
        print(stack.logs())
        raise
    finally:
        stack.stop()
        if not (private_pg.server.data / "postmaster.pid").exists():
            private_pg.server.start()  # for the next test
        redis_client().delete(f"{settings.CELERY_BROKER_TRANSPORT_OPTIONS['global_keyprefix']}{queue}")
