"""Two GPU workers on one model: routing by conversation (part ``routing`` of `make bench`) and the load test
of 200 WebSocket clients (part ``load``, run on its own).

``python -m gptoss_web.devtools.bench routing [--quick]`` starts a real stack with two Celery GPU workers of
two slots each on the tiny model, and puts 2,000-token conversations through it: four with cache-affine
routing (inference/dispatch.py), four with every reply sent to the shared queue (GPTOSS_ROUTING off in the
sending process: this one, which sends as the web process does, through chat.services), in alternating blocks
of three rounds, each round a next turn in all four conversations of one routing at once:

- ``routing.next_turn_ttft_ratio``: mean time to first token of a next turn (the reply's stored queue wait,
  creation to claim, plus the engine's time to first token) with shared-queue routing over cache-affine
  routing (target at least 3);
- ``routing.throughput_ratio``: answer tokens per second of wall time over the timed rounds, cache-affine over
  shared (target at least 1: routing must not cost throughput).

``python -m gptoss_web.devtools.bench load [--clients 200]`` starts the same two workers with eight slots each
and sends one message from each of 200 WebSocket clients at once: every answer must end `done` with
contiguous seqs and text equal to the stored text. It counts PostgreSQL's committed transactions and written
rows (pg_stat_database, pg_stat_user_tables) and Redis's commands (INFO) over the run, per answer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
import statistics
import time
from pathlib import Path
from typing import Any

import psutil
import psycopg
import redis
from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connections
from django.test import Client
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidMessage, InvalidStatus

from gptoss_web.devtools.bench.pipeline import Answer, bench_database, use_bench_database
from gptoss_web.devtools.bench.table import Results, Row, Table, Target
from gptoss_web.devtools.stack import Stack

# About 1,950 tokens of text without a trigger word of the tiny model, then one: the first question.
FILLER = "The quick brown fox jumps over the lazy dog near the quiet river bank. " * 130
QUESTION = "Tell me an endless story"
SLOTS = 2
WORKERS = 2


def _stack(database_url: str, prefix: str, *, slots: int, answer_tokens: int) -> Stack:
    return Stack(
        database_url=database_url,
        redis_prefix=prefix,
        workers=WORKERS,
        GPTOSS_SLOTS=str(slots),
        GPTOSS_CONTEXT="4096",
        GPTOSS_MAX_ANSWER_TOKENS=str(answer_tokens),
        GPTOSS_MAX_IN_FLIGHT_PER_USER="100",
    )


def _wait_done(message_ids: list[int], timeout: float = 300) -> list[Any]:
    """Poll PostgreSQL until every reply in *message_ids* ended; return them."""
    message = apps.get_model("chat", "Message")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        replies = list(message.objects.filter(pk__in=message_ids))
        if all(r.status not in ("queued", "streaming") for r in replies):
            return replies
        time.sleep(0.02)
    raise RuntimeError(f"replies {message_ids} not finished within {timeout} s")


def _round(conversations: list[Any], turn: int, *, first: bool, routed: bool) -> tuple[list[Any], float]:
    """Send a message in every conversation at once, as the web process does; return the replies and the time.

    Each conversation's first message starts with its own words, so that no two conversations share more than
    the system message: a slot holding another conversation's cache must not serve as this one's.
    """
    from chat.services.messages import message_send  # noqa: PLC0415  (needs the apps loaded first)

    settings.GPTOSS_ROUTING = routed
    started = time.perf_counter()
    sent = [
        message_send(
            conversation=c,
            text=f"Conversation {c.pk} of {secrets.token_hex(8)}. {FILLER}{QUESTION}"
            if first
            else f"Again {turn}: {QUESTION}",
        )[1].pk
        for c in conversations
    ]
    replies = _wait_done(sent)
    for reply in replies:
        if reply.status != "done":
            raise RuntimeError(f"reply {reply.pk} ended {reply.status}: {reply.error}")
    return replies, time.perf_counter() - started


def _measure(owner: Any, *, blocks: int, rounds: int) -> dict[str, dict[str, Any]]:
    """Give each routing its own conversations, one per slot of the two workers, and alternate blocks of
    *rounds* timed next turns (all of a routing's conversations at once), affine then shared, *blocks* times.

    A block starts with an untimed round: the other routing's block took the slots meanwhile, so the caches
    are warmed again first.
    """
    from chat.services.conversations import conversation_create  # noqa: PLC0415  (needs the apps loaded first)

    modes = {"affine": True, "shared": False}
    conversations = {m: [conversation_create(owner=owner) for _ in range(WORKERS * SLOTS)] for m in modes}
    figures: dict[str, dict[str, Any]] = {
        m: {
            "ttft": [],
            "engine": [],
            "same_worker": 0,
            "tokens": 0,
            "seconds": 0.0,
            "prompt": [],
            "replies": [],
            "queue": [],
        }
        for m in modes
    }
    holders: dict[int, str] = {}
    started: set[str] = set()
    turn = 0
    for _ in range(blocks):
        for mode, routed in modes.items():
            for timed in [False] + [True] * rounds:
                turn += 1
                first = mode not in started
                started.add(mode)
                replies, took = _round(conversations[mode], turn, first=first, routed=routed)
                figure = figures[mode]
                for reply in replies:
                    if timed:
                        figure["replies"].append(reply.pk)
                        figure["ttft"].append(reply.queue_wait_ms + reply.ttft_ms)
                        figure["engine"].append(reply.ttft_ms)
                        figure["queue"].append(reply.queue_wait_ms)
                        figure["same_worker"] += holders[reply.conversation_id] == reply.worker
                        figure["tokens"] += reply.answer_tokens
                        figure["prompt"].append(reply.prompt_tokens)
                    holders[reply.conversation_id] = reply.worker
                if timed:
                    figure["seconds"] += took
    return {
        mode: {
            "prompt_tokens_p50": statistics.median(f["prompt"]),
            "ttft_ms_mean": round(statistics.mean(f["ttft"]), 1),
            "ttft_ms_p50": round(statistics.median(f["ttft"]), 1),
            "engine_ttft_ms_mean": round(statistics.mean(f["engine"]), 1),
            "queue_wait_ms_mean": round(statistics.mean(f["queue"]), 1),
            "same_worker": f["same_worker"],
            "turns": len(f["ttft"]),
            "tps": round(f["tokens"] / f["seconds"], 1),
            "ttft_ms": f["ttft"],
            "replies": f["replies"],
        }
        for mode, f in figures.items()
    }


def run_routing(quick: bool) -> Results:
    """Start two workers, measure cache-affine against shared-queue routing; return the results."""
    prefix = f"gptoss-bench-{secrets.token_hex(4)}"
    load_before = _loadavg()
    with bench_database() as database_url:
        stack = _stack(database_url, prefix, slots=SLOTS, answer_tokens=64)
        owner = _setup(database_url, stack.env["REDIS_URL"], prefix, users=1)[0][0]
        stack.start()
        try:
            measured = _measure(owner, blocks=1 if quick else 2, rounds=3)
        finally:
            settings.GPTOSS_ROUTING = True
            stack.stop()
            connections.close_all()
    reused = _reused_tokens("\n".join(stack.output(name) for name in stack.workers))
    for phase in measured.values():
        counts = [reused[r] for r in phase.pop("replies") if r in reused]
        phase["cache_share"] = round(sum(c for c, _ in counts) / max(1, sum(p for _, p in counts)), 3)
    affine, shared = measured["affine"], measured["shared"]
    return {
        "routing": {
            "workers": WORKERS,
            "slots": SLOTS,
            "quick": quick,
            "affine": affine,
            "shared": shared,
            "next_turn_ttft_ratio": round(shared["ttft_ms_mean"] / affine["ttft_ms_mean"], 2),
            "throughput_ratio": round(affine["tps"] / shared["tps"], 2),
            "loadavg": [load_before, _loadavg()],
        }
    }


def _reused_tokens(log: str) -> dict[int, tuple[int, int]]:
    """Return, per reply the workers logged as finished, its prompt tokens from the cache and in all."""
    found = re.findall(r"reply (\d+) finished: \w+ \((\d+) of (\d+) prompt tokens from the cache\)", log)
    return {int(reply): (int(reused), int(prompt)) for reply, reused, prompt in found}


def _loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _setup(database_url: str, redis_url: str, prefix: str, *, users: int) -> tuple[list[Any], list[str]]:
    """Point Django at the bench database, migrate, and return *users* users and a session cookie each."""
    use_bench_database(database_url, redis_url, prefix)
    settings.GPTOSS_MAX_IN_FLIGHT_PER_USER = 100  # this process sends as the web process does
    logging.getLogger("inference.dispatch").setLevel(logging.WARNING)  # a line per reply sent
    call_command("migrate", verbosity=0)
    made, cookies = [], []
    for n in range(users):
        user = get_user_model().objects.create_user(f"bench{n}", password=secrets.token_urlsafe(16))
        client = Client()
        client.force_login(user)
        made.append(user)
        cookies.append(f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}")
    return made, cookies


def _pg_counters(database_url: str) -> tuple[int, int]:
    """Return the bench database's committed transactions and rows inserted, updated or deleted so far."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        time.sleep(1.5)  # backends report their statistics at most once a second
        commits = conn.execute(
            "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()"
        ).fetchone()
        rows = conn.execute(
            "SELECT coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) FROM pg_stat_user_tables"
        ).fetchone()
    assert commits is not None and rows is not None
    return int(commits[0]), int(rows[0])


def _cpu_s(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)


def _redis_commands(redis_url: str) -> int:
    return int(redis.Redis.from_url(redis_url).info("stats")["total_commands_processed"])


def run_load(clients: int) -> Results:
    """Start two workers of eight slots, send one message from each of *clients* sockets at once."""
    prefix = f"gptoss-bench-{secrets.token_hex(4)}"
    users = max(1, clients // 10)
    load_before = _loadavg()
    with bench_database() as database_url:
        stack = _stack(database_url, prefix, slots=8, answer_tokens=128)
        owners, cookies = _setup(database_url, stack.env["REDIS_URL"], prefix, users=users)
        conversation, model = apps.get_model("chat", "Conversation"), settings.GPTOSS_MODEL_NAME
        pairs = [
            (cookies[n % users], conversation.objects.create(owner=owners[n % users], model_name=model).pk)
            for n in range(clients)
        ]
        connections.close_all()
        stack.start()
        try:
            daphne = psutil.Process(stack.processes["web"].popen.pid)
            commits0, rows0 = _pg_counters(database_url)
            redis0 = _redis_commands(stack.env["REDIS_URL"])
            cpu0 = _cpu_s(daphne)
            started = time.perf_counter()
            refused: list[str] = []
            resynced: list[int] = []
            many = asyncio.run(_many(stack.web_port, pairs, refused, resynced))
            elapsed = time.perf_counter() - started
            cpu1 = _cpu_s(daphne)
            commits1, rows1 = _pg_counters(database_url)
            redis1 = _redis_commands(stack.env["REDIS_URL"])
            load_after = _loadavg()
        finally:
            stack.stop()
            connections.close_all()
    server_errors = sorted(
        {
            line[-300:]
            for p in stack.processes.values()
            for line in p.lines
            if "Error" in line or "ERROR" in line
        }
    )
    done = [a for a in many if isinstance(a, Answer)]
    complete = [a for a in done if a.final.get("status") == "done" and a.gaps == 0]
    equal = [a for a in complete if a.text == a.final["content"]]
    answers = max(1, len(done))
    events = sum(a.last_seq for a in done)
    return {
        "load": {
            "clients": clients,
            "users": users,
            "workers": WORKERS,
            "slots": 8,
            "completed": len(complete),
            "text_equal_to_stored": len(equal),
            "errors": [repr(a) for a in many if not isinstance(a, Answer)][:5],
            "handshakes_refused": len(refused),
            "ended_by_resent_state": len(resynced),
            "refused_statuses": sorted(set(refused)),
            "server_errors": server_errors[:10],
            "seconds": round(elapsed, 1),
            "answer_tokens": sum(a.final.get("stats", {}).get("answer_tokens", 0) for a in done),
            "pg_commits_per_answer": round((commits1 - commits0) / answers, 1),
            "pg_rows_written_per_answer": round((rows1 - rows0) / answers, 1),
            "redis_commands_per_answer": round((redis1 - redis0) / answers, 1),
            "stream_events_per_answer": round(events / answers, 1),
            "daphne_cpu_ms_per_answer": round((cpu1 - cpu0) * 1000 / answers, 1),
            "daphne_cpu_pct": round((cpu1 - cpu0) * 100 / elapsed, 1),
            "answers_per_s": round(len(done) / elapsed, 2),
            "loadavg": [load_before, load_after],
        }
    }


async def _many(
    port: int, pairs: list[tuple[str, int]], refused: list[str], resynced: list[int]
) -> list[Answer | BaseException]:
    return await asyncio.gather(
        *(
            _answer_retrying(port, cookie, conversation_id, refused, resynced)
            for cookie, conversation_id in pairs
        ),
        return_exceptions=True,
    )


async def _follow(port: int, cookie: str, conversation_id: int, resynced: list[int]) -> Answer:
    """Send the question and follow the reply to its end, as the browser does (pipeline.py's `_answer`, and
    a resent `state` whose reply has ended ends it too: the socket's watcher resends the stored state when an
    event was lost, static/js/chat/socket.js)."""
    answer = Answer()
    async with connect(
        f"ws://127.0.0.1:{port}/ws/conversations/{conversation_id}/",
        origin=f"http://127.0.0.1:{port}",  # type: ignore[arg-type]
        additional_headers={"Cookie": cookie},
        max_size=None,
        open_timeout=30,
    ) as socket:
        state = json.loads(await socket.recv())
        assert state["type"] == "state"
        answer.sent_at = time.perf_counter()
        await socket.send(json.dumps({"action": "send", "text": QUESTION}))
        async for raw in socket:
            frame = json.loads(raw)
            if frame["type"] == "delta":
                answer.gaps += frame["seq"] != answer.last_seq + 1
                answer.last_seq = frame["seq"]
                answer.text += frame["content"]
            elif frame["type"] == "state" and frame["messages"]:
                reply = frame["messages"][-1]
                answer.text, answer.last_seq = reply["content"], reply["seq"]
                if reply.get("role") == "assistant" and reply["status"] not in ("queued", "streaming"):
                    resynced.append(conversation_id)
                    answer.final = reply
                    return answer
            elif frame["type"] == "done":
                answer.final = frame["message"]
                return answer
            elif frame["type"] == "error":
                raise RuntimeError(frame["message"])
    raise RuntimeError("the socket closed before the answer was done")


async def _answer_retrying(
    port: int, cookie: str, conversation_id: int, refused: list[str], resynced: list[int]
) -> Answer:
    """Send the question once the socket is open, connecting again with backoff as the browser does
    (static/js/chat/socket.js: 0.5 s, doubling up to 5 s) while the handshake is refused."""
    backoff = 0.5
    for _ in range(8):
        try:
            return await asyncio.wait_for(_follow(port, cookie, conversation_id, resynced), timeout=600)
        except (InvalidStatus, InvalidMessage, OSError) as error:
            status = error.response.status_code if isinstance(error, InvalidStatus) else type(error).__name__
            refused.append(str(status))
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)
    raise RuntimeError(f"conversation {conversation_id}: the socket was refused 8 times")


def _ttft(results: Results, mode: str) -> str:
    phase = results["routing"][mode]
    return f"{phase['ttft_ms_mean']:.1f} / {phase['ttft_ms_p50']:.1f} ms"


ROUTING_TABLE = Table(
    heading="## Routing: two workers",
    rows=(
        Row(
            "Next-turn time to first token, cache-affine routing (mean / median)",
            lambda r: _ttft(r, "affine"),
        ),
        Row(
            "Same, every reply through the shared queue",
            lambda r: _ttft(r, "shared"),
        ),
        Row(
            "Prompt tokens taken from the engine's cache (affine / shared)",
            lambda r: (
                f"{r['routing']['affine']['cache_share']:.0%} / {r['routing']['shared']['cache_share']:.0%}"
            ),
        ),
        Row(
            "Next turns answered by the worker of the turn before (affine / shared)",
            lambda r: (
                f"{r['routing']['affine']['same_worker']} / {r['routing']['shared']['same_worker']} "
                f"of {r['routing']['affine']['turns']}"
            ),
        ),
        Row(
            "`routing.next_turn_ttft_ratio` (shared over cache-affine, means)",
            lambda r: f"{r['routing']['next_turn_ttft_ratio']:.2f}",
            Target("routing.next_turn_ttft_ratio", ">=", 3),
        ),
        Row(
            "`routing.throughput_ratio` (answer tokens/s, cache-affine over shared)",
            lambda r: f"{r['routing']['throughput_ratio']:.2f}",
            Target("routing.throughput_ratio", ">=", 1),
        ),
    ),
)


def print_routing(results: Results) -> None:
    print("Routing benchmark (tiny model, 2 Celery workers with 2 slots each, 2,000-token conversations)")
    print(ROUTING_TABLE.markdown(results))


def print_load(results: Results) -> None:
    load = results["load"]
    print(
        f"Load test: {load['clients']} WebSocket clients over {load['workers']} workers of {load['slots']} "
        f"slots: {load['completed']} complete ({load['handshakes_refused']} handshakes refused and retried, "
        f"{load['ended_by_resent_state']} ended by a resent state), "
        f"{load['text_equal_to_stored']} equal to the stored text, in "
        f"{load['seconds']} s; per answer: {load['pg_commits_per_answer']} PostgreSQL commits, "
        f"{load['pg_rows_written_per_answer']} rows written, {load['redis_commands_per_answer']} Redis "
        f"commands, {load['stream_events_per_answer']} stream events, {load['daphne_cpu_ms_per_answer']} ms "
        f"of Daphne's CPU ({load['daphne_cpu_pct']} % of a core; load average {load['loadavg']})"
    )


def load_missed(results: Results) -> list[str]:
    load = results["load"]
    return [
        f"load.{key} {load[key]} (all {load['clients']})"
        for key in ("completed", "text_equal_to_stored")
        if load[key] != load["clients"]
    ]
