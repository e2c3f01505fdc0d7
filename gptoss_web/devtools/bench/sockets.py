"""What idle sockets cost: ``python -m gptoss_web.devtools.bench sockets [--sockets 1000] [--seconds 60]``.

Starts Daphne and a private Redis (no GPU worker, no reaper: nothing else touches the database) on a
throw-away PostgreSQL database, opens the sockets (one conversation each, ten per signed-in user) and leaves
them idle. After they settle it measures, over *seconds*:

- ``sockets.daphne_cpu_pct``: Daphne's CPU time (user + system, from psutil) over wall time, in % of one core
  (target under 5 % for 1,000 sockets);
- ``sockets.xact_per_s``: committed PostgreSQL transactions per second in the bench database
  (``pg_stat_database.xact_commit``);
- the frames the idle clients received (none expected) and the sockets still open at the end.

The machine's load average is printed alongside: CPU time is counted per process, but a busy machine still
makes every figure noisier.
"""

from __future__ import annotations

import asyncio
import os
import resource
import secrets
import time
from typing import Any

import psutil
import psycopg
from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connections
from django.test import Client
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from gptoss_web.devtools.bench.pipeline import ADMIN_URL, bench_database, use_bench_database
from gptoss_web.devtools.stack import Stack

TARGET_CPU_PCT = 5.0
PER_USER = 10


def _raise_open_files(needed: int) -> int:
    """Raise this process's soft limit on open files (Daphne, started from here, inherits it)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
    limit = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    if limit != resource.RLIM_INFINITY and limit < needed:
        raise SystemExit(
            f"Open files are limited to {limit} here; raise the hard limit (ulimit -Hn {needed})."
        )
    return limit


def _setup(database_url: str, redis_url: str, prefix: str, sockets: int) -> list[tuple[str, int]]:
    """Migrate the bench database and return (session cookie, conversation id) for each socket."""
    use_bench_database(database_url, redis_url, prefix)
    conversation, message = apps.get_model("chat", "Conversation"), apps.get_model("chat", "Message")
    call_command("migrate", verbosity=0)
    targets = []
    for n in range((sockets + PER_USER - 1) // PER_USER):
        user = get_user_model().objects.create_user(f"idle{n}", password=secrets.token_urlsafe(16))
        client = Client()
        client.force_login(user)
        cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
        conversations = conversation.objects.bulk_create(
            conversation(owner=user, model_name="tiny", title=f"idle {i}") for i in range(PER_USER)
        )
        questions = message.objects.bulk_create(
            message(conversation=c, role="user", status="done", content="Hello") for c in conversations
        )
        message.objects.bulk_create(
            message(conversation=q.conversation, role="assistant", status="done", reply_to=q, content="Hi!")
            for q in questions
        )
        targets += [(cookie, c.pk) for c in conversations]
    connections.close_all()
    return targets[:sockets]


def _xact_commit(database: str) -> int:
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        row = admin.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = %s", [database]
        ).fetchone()
    assert row is not None
    return int(row[0])


async def _hold(port: int, targets: list[tuple[str, int]], seconds: float, measure: Any) -> dict[str, Any]:
    received = 0
    opened: list[ClientConnection] = []

    refused = 0

    async def open_one(cookie: str, conversation_id: int) -> None:
        nonlocal refused
        for _ in range(3):  # a server that cannot keep up refuses handshakes: try again, then count it
            try:
                socket = await connect(
                    f"ws://127.0.0.1:{port}/ws/conversations/{conversation_id}/",
                    origin=f"http://127.0.0.1:{port}",  # type: ignore[arg-type]
                    additional_headers={"Cookie": cookie},
                    open_timeout=60,
                    max_size=None,
                )
                await asyncio.wait_for(socket.recv(), 60)  # the stored state
            except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed):
                continue
            opened.append(socket)
            return
        refused += 1

    async def drain(socket: ClientConnection) -> None:
        nonlocal received
        async for _ in socket:
            received += 1

    for start in range(0, len(targets), 50):  # in batches, as browsers arrive
        await asyncio.gather(*(open_one(c, i) for c, i in targets[start : start + 50]))
    readers = [asyncio.create_task(drain(s)) for s in opened]
    await asyncio.sleep(15)  # let the connection burst and the watcher's first rounds pass
    received = 0
    before = measure()
    await asyncio.sleep(seconds)
    after = measure()
    still_open = sum(1 for s in opened if s.close_code is None)
    for socket in opened:
        await socket.close()
    for reader in readers:
        reader.cancel()
    return {
        "before": before,
        "after": after,
        "frames_received": received,
        "opened": len(opened),
        "still_open": still_open,
        "refused": refused,
    }


def run_sockets(sockets: int, seconds: float) -> dict[str, Any]:
    """Start Daphne, hold *sockets* idle sockets, measure for *seconds*; return the results."""
    _raise_open_files(sockets + 1024)
    prefix = f"gptoss-bench-{secrets.token_hex(4)}"
    with bench_database() as database_url:
        database = database_url.rsplit("/", 1)[1]
        stack = Stack(database_url=database_url, redis_prefix=prefix)
        targets = _setup(database_url, stack.env["REDIS_URL"], prefix, sockets)
        try:
            stack.start_process("redis")
            stack.start_process("web")
            daphne = psutil.Process(stack.processes["web"].popen.pid)

            def measure() -> tuple[float, float, int, tuple[float, float, float]]:
                cpu = daphne.cpu_times()
                return time.monotonic(), cpu.user + cpu.system, _xact_commit(database), os.getloadavg()

            held = asyncio.run(_hold(stack.web_port, targets, seconds, measure))
        except BaseException:
            print(stack.logs())
            raise
        finally:
            stack.stop()
            warnings = [
                line for line in stack.output("web").splitlines() if "WARNING" in line or "ERROR" in line
            ]
            connections.close_all()
    (t0, cpu0, x0, load0), (t1, cpu1, x1, load1) = held["before"], held["after"]
    return {
        "sockets": {
            "sockets": sockets,
            "seconds": round(t1 - t0, 1),
            "daphne_cpu_pct": round(100 * (cpu1 - cpu0) / (t1 - t0), 2),
            "xact_per_s": round((x1 - x0) / (t1 - t0), 2),
            "frames_received": held["frames_received"],
            "opened": held["opened"],
            "refused_handshakes": held["refused"],
            "still_open": held["still_open"],
            "load_average": [round(v, 2) for v in (*load0, *load1)],
            "server_warnings": warnings[:10],
        }
    }


def print_sockets(results: dict[str, Any]) -> None:
    s = results["sockets"]
    met = "met" if s["daphne_cpu_pct"] < TARGET_CPU_PCT else "NOT met"
    print(f"Idle sockets ({s['opened']} of {s['sockets']} opened, one Daphne process, over {s['seconds']} s)")
    cpu = s["daphne_cpu_pct"]
    print(f"  Daphne CPU               {cpu:>8.2f} % of a core   target < {TARGET_CPU_PCT} ({met})")
    print(f"  PostgreSQL transactions  {s['xact_per_s']:>8.2f} /s")
    print(f"  frames to idle clients   {s['frames_received']:>8}")
    print(f"  sockets still open       {s['still_open']:>8}")
    print(f"  handshakes refused       {s['refused_handshakes']:>8}")
    load = s["load_average"]
    print(f"  load average (1/5/15 min) before {load[0:3]}, after {load[3:6]}")
