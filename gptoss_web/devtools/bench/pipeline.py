"""The pipeline part of `make bench`: what a browser sees, compared with what the engine produces.

``python -m gptoss_web.devtools.bench pipeline [--quick]`` starts a real stack (Daphne, a Celery GPU worker
on the tiny model, the reaper and a private Redis) on a throw-away PostgreSQL database, and measures with
WebSocket clients, side by side with the engine's own figures for the very same replies:

- ``pipeline.ws_tps / pipeline.raw_tps``: tokens per second a client sees for one conversation, over the
  engine's decode speed for that answer (target at least 0.9);
- ``pipeline.ttft_overhead_ms_p50``: time from sending a message to its first visible text, less the
  engine's own time to first token (target at most 50 ms, median);
- ``ws50.*``: 50 clients at once, each streaming an answer: all must complete with contiguous sequence
  numbers and text equal to the stored text; the 95th percentile of delivery lag (worker publish → client).

The database is created and dropped by the run; every Redis key it writes lives in the private server.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import statistics
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import django
import psycopg
from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connections
from django.test import Client
from websockets.asyncio.client import connect

from gptoss_web.devtools.bench.table import Results, Row, Table, Target
from gptoss_web.devtools.stack import Stack

ADMIN_URL = os.environ.get("GPTOSS_BENCH_DATABASE_ADMIN_URL", "postgres://postgres@127.0.0.1:5432/postgres")


@dataclass
class Answer:
    """One answer as a WebSocket client received it."""

    sent_at: float = 0.0
    first_text_at: float | None = None
    last_text_at: float | None = None
    text: str = ""
    last_seq: int = 0
    gaps: int = 0  # deltas whose seq was not the next one: a browser would have had to resync
    lags_ms: list[float] = field(default_factory=list)
    final: dict[str, Any] = field(default_factory=dict)


@contextmanager
def bench_database() -> Iterator[str]:
    """Create a throw-away database, yield its URL, drop it afterwards."""
    name = f"gptoss_bench_{secrets.token_hex(4)}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    base = ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def use_bench_database(database_url: str, redis_url: str, prefix: str) -> None:
    """Point this process's Django at the bench database (set up on first use; a later part of the same run
    moves the one connection to its own throw-away database)."""
    os.environ.update(DATABASE_URL=database_url, REDIS_URL=redis_url, GPTOSS_REDIS_PREFIX=prefix)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gptoss_web.settings_test")
    if not apps.ready:
        django.setup()
        return
    connections.close_all()
    name = database_url.rsplit("/", 1)[1]
    settings.DATABASES["default"]["NAME"] = name
    connections["default"].settings_dict["NAME"] = name


def _setup_django(database_url: str, redis_url: str, prefix: str) -> tuple[str, list[int]]:
    """Point Django at the bench database, migrate, and return a session cookie and 60 conversations."""
    use_bench_database(database_url, redis_url, prefix)
    conversation = apps.get_model("chat", "Conversation")  # the apps are ready only now
    call_command("migrate", verbosity=0)
    user = get_user_model().objects.create_user("bench", password=secrets.token_urlsafe(16))
    client = Client()
    client.force_login(user)
    cookie = f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"
    conversations = [
        conversation.objects.create(owner=user, model_name=settings.GPTOSS_MODEL_NAME).pk for _ in range(70)
    ]
    connections.close_all()
    return cookie, conversations


async def _answer(port: int, cookie: str, conversation_id: int, text: str) -> Answer:
    """Send *text* in a conversation and follow its reply to `done`, as a browser would."""
    answer = Answer()
    async with connect(
        f"ws://127.0.0.1:{port}/ws/conversations/{conversation_id}/",
        origin=f"http://127.0.0.1:{port}",  # type: ignore[arg-type]
        additional_headers={"Cookie": cookie},
        max_size=None,
    ) as socket:
        state = json.loads(await socket.recv())
        assert state["type"] == "state"
        answer.sent_at = time.perf_counter()
        await socket.send(json.dumps({"action": "send", "text": text}))
        async for raw in socket:
            now = time.perf_counter()
            frame = json.loads(raw)
            if frame["type"] == "delta":
                answer.gaps += frame["seq"] != answer.last_seq + 1
                answer.last_seq = frame["seq"]
                answer.lags_ms.append((time.time() - frame["at"]) * 1000)
                if frame["content"]:
                    answer.first_text_at = answer.first_text_at or now
                    answer.last_text_at = now
                    answer.text += frame["content"]
            elif frame["type"] == "state" and frame["messages"]:
                # The server resent the stored state (its watchdog): continue from it, as the browser does.
                reply = frame["messages"][-1]
                answer.text, answer.last_seq = reply["content"], reply["seq"]
            elif frame["type"] == "done":
                answer.final = frame["message"]
                return answer
            elif frame["type"] == "error":
                raise RuntimeError(frame["message"])
    raise RuntimeError("the socket closed before the answer was done")


def _contiguous(answer: Answer) -> bool:
    return answer.gaps == 0


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def _measure(port: int, cookie: str, conversations: list[int], quick: bool) -> dict[str, Any]:
    pool = iter(conversations)
    await _answer(port, cookie, next(pool), "Hello")  # warm up: connections, prompt cache
    ratios, raw, seen, overheads, queue_waits = [], [], [], [], []
    reference = ""
    for _ in range(3 if quick else 5):
        a = await _answer(port, cookie, next(pool), "Tell me an endless story")
        reference = reference or a.final["content"]
        stats = a.final["stats"]
        assert a.first_text_at is not None and a.last_text_at is not None
        ws_tps = (stats["answer_tokens"] - 1) / (a.last_text_at - a.first_text_at)
        raw.append(stats["tokens_per_second"])
        seen.append(ws_tps)
        ratios.append(ws_tps / stats["tokens_per_second"])
    for _ in range(5 if quick else 10):
        a = await _answer(port, cookie, next(pool), "Hello")
        assert a.first_text_at is not None
        visible_ms = (a.first_text_at - a.sent_at) * 1000
        overheads.append(visible_ms - a.final["stats"]["ttft_ms"])
        queue_waits.append(a.final["stats"]["queue_wait_ms"])
    clients = 50
    started = time.perf_counter()
    many = await asyncio.gather(
        *(_answer(port, cookie, next(pool), "Tell me an endless story") for _ in range(clients)),
        return_exceptions=True,
    )
    elapsed = time.perf_counter() - started
    done = [a for a in many if isinstance(a, Answer)]
    complete = [a for a in done if a.final.get("status") == "done" and _contiguous(a)]
    equal = [a for a in complete if a.text == a.final["content"]]
    # The scripted model writes the same story every time: an answer that differs was computed on a broken
    # context (as a reused cache whose sliding-window cells were pruned once did).
    right = [a for a in equal if a.final["content"] == reference]
    lags = [lag for a in done for lag in a.lags_ms]
    return {
        "pipeline": {
            "raw_tps": round(statistics.median(raw), 1),
            "ws_tps": round(statistics.median(seen), 1),
            "ratio": round(statistics.median(ratios), 3),
            "ratios": [round(r, 3) for r in ratios],
            "ttft_overhead_ms_p50": round(statistics.median(overheads), 1),
            "ttft_overhead_ms": [round(o, 1) for o in overheads],
            # Of which: from the reply's creation to its claim by a worker (Celery), plus any slot wait.
            "queue_wait_ms": queue_waits,
        },
        "ws50": {
            "clients": clients,
            "completed": len(complete),
            "text_equal_to_stored": len(equal),
            "same_answer_as_alone": len(right),
            "errors": [repr(a) for a in many if not isinstance(a, Answer)][:5],
            "p95_lag_ms": round(_percentile(lags, 95), 1) if lags else None,
            "p50_lag_ms": round(_percentile(lags, 50), 1) if lags else None,
            "seconds": round(elapsed, 1),
            "tokens_per_answer": done[0].final["stats"]["answer_tokens"] if done else None,
        },
    }


def run_pipeline(quick: bool) -> dict[str, Any]:
    """Start the stack, measure, stop; return the results keyed as in latest.json."""
    prefix = f"gptoss-bench-{secrets.token_hex(4)}"
    with bench_database() as database_url:
        stack = Stack(
            database_url=database_url,
            redis_prefix=prefix,
            GPTOSS_SLOTS="8",
            GPTOSS_CONTEXT="2048",
            GPTOSS_MAX_ANSWER_TOKENS="256" if quick else "512",
            GPTOSS_MAX_IN_FLIGHT_PER_USER="100",
        )
        cookie, conversations = _setup_django(database_url, stack.env["REDIS_URL"], prefix)
        # Django's own connection is closed; the stack's processes migrate nothing and share the database.
        stack.start()
        try:
            results = asyncio.run(_measure(stack.web_port, cookie, conversations, quick))
        finally:
            stack.stop()
            problems = [
                f"{p.label}: {line}"
                for p in stack.processes.values()
                for line in p.lines
                if "WARNING" in line or "ERROR" in line
            ]
            problems = [p for p in problems if "llama.cpp" not in p and "overcommit" not in p]
            connections.close_all()
    results["pipeline"]["quick"] = quick
    results["ws50"]["server_warnings"] = problems[:20]
    results["pipeline_targets"] = PIPELINE_TABLE.target_summary(results)
    return results


def _spread(values: list[float]) -> str:
    return f"{min(values):.3f}–{max(values):.3f}"


def _clients(results: Results, key: str) -> str:
    return f"{results['ws50'][key]} / {results['ws50']['clients']}"


PIPELINE_TABLE = Table(
    heading="## Pipeline: what a browser sees",
    rows=(
        Row(
            "`pipeline.raw_tps`: engine decode, one conversation",
            lambda r: f"{r['pipeline']['raw_tps']:.1f} tok/s",
        ),
        Row(
            "`pipeline.ws_tps`: seen by a WebSocket client", lambda r: f"{r['pipeline']['ws_tps']:.1f} tok/s"
        ),
        Row(
            "`pipeline.ratio` (median of per-answer ratios)",
            lambda r: f"{r['pipeline']['ratio']:.3f} ({_spread(r['pipeline']['ratios'])})",
            Target("pipeline.ratio", ">=", 0.9),
        ),
        Row(
            "`pipeline.ttft_overhead_ms_p50`: first visible text over the engine's own first token",
            lambda r: f"{r['pipeline']['ttft_overhead_ms_p50']:.1f} ms",
            Target("pipeline.ttft_overhead_ms_p50", "<=", 50),
        ),
        Row(
            "`ws50.completed` of `ws50.clients` (contiguous seqs, `done`)",
            lambda r: _clients(r, "completed"),
            Target("ws50.completed", "all", total="clients"),
        ),
        Row(
            "`ws50.text_equal_to_stored`: text equal to the stored text",
            lambda r: _clients(r, "text_equal_to_stored"),
            Target("ws50.text_equal_to_stored", "all", total="clients"),
        ),
        Row(
            "`ws50.same_answer_as_alone`: equal to the answer given alone",
            lambda r: _clients(r, "same_answer_as_alone"),
            Target("ws50.same_answer_as_alone", "all", total="clients"),
        ),
        Row(
            "`ws50.p95_lag_ms` (p50), over every stream frame",
            lambda r: f"{r['ws50']['p95_lag_ms']} ms ({r['ws50']['p50_lag_ms']} ms)",
        ),
        Row("`ws50.seconds`: wall time for the answers, 8 at a time", lambda r: f"{r['ws50']['seconds']} s"),
    ),
)


def print_pipeline(results: Results) -> None:
    """Print the figures as docs/benchmarks.md's table, with the targets they must meet."""
    print("Pipeline benchmark (tiny model, Daphne + Celery worker with 8 slots + Redis + PostgreSQL)")
    print(PIPELINE_TABLE.markdown(results))
