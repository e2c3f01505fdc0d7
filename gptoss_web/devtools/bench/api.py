"""The API part of `make bench`: what an OpenAI client sees of `/v1/responses`, against the engine's figures.

``python -m gptoss_web.devtools.bench api [--quick]`` starts a real stack (Daphne, a Celery GPU worker on the
tiny model, the reaper and a private Redis) on a throw-away PostgreSQL database, makes a user and an API key,
and streams responses over HTTP, side by side with the engine's own figures for the very same replies (stored:
`store` is on, so each reply's engine figures are read back from PostgreSQL):

- ``api.ttft_overhead_ms_p50``: from sending the request to the first `response.output_text.delta` at the
  client, less the engine's own time to first token (target at most 50 ms, median);
- ``api.tps_ratio``: answer tokens per second at the client over the engine's decode speed for that answer
  (target at least 0.95);
- ``api50.*``: 50 streams at once: all must complete, with the text the client received equal to the stored
  text.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import statistics
import time
from dataclasses import dataclass
from typing import Any

import httpx
from django.apps import apps
from django.core.management import call_command
from django.db import connections

from gptoss_web.devtools.bench.pipeline import bench_database, use_bench_database
from gptoss_web.devtools.bench.table import Results, Row, Table, Target
from gptoss_web.devtools.stack import Stack

ENDLESS = "Tell me an endless story"


@dataclass
class Streamed:
    response_id: str = ""
    sent_at: float = 0.0
    first_text_at: float | None = None
    last_text_at: float | None = None
    text: str = ""
    status: str = ""


def _setup_django(database_url: str, redis_url: str, prefix: str) -> str:
    """Point Django at the bench database, migrate, and return an API key of a new user."""
    use_bench_database(database_url, redis_url, prefix)
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request otherwise
    call_command("migrate", verbosity=0)
    from chat.services.api_keys import api_key_create  # noqa: PLC0415  (needs the apps loaded first)

    user = apps.get_model("auth", "User").objects.create_user("bench", password=secrets.token_urlsafe(16))
    _, key = api_key_create(owner=user, name="bench")
    connections.close_all()
    return key


async def _stream(client: httpx.AsyncClient, text: str) -> Streamed:
    """POST a streamed response and read its events to the end, as an OpenAI client would."""
    streamed = Streamed(sent_at=time.perf_counter())
    body = {"model": "tiny", "input": text, "stream": True}
    async with client.stream("POST", "/v1/responses", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: "):
                continue
            event = json.loads(line[6:])
            kind = event["type"]
            if kind == "response.created":
                streamed.response_id = event["response"]["id"]
            elif kind == "response.output_text.delta":
                now = time.perf_counter()
                streamed.first_text_at = streamed.first_text_at or now
                streamed.last_text_at = now
                streamed.text += event["delta"]
            elif kind in ("response.completed", "response.incomplete", "response.failed"):
                streamed.status = event["response"]["status"]
    return streamed


def _stored(response_ids: list[str]) -> dict[str, Any]:
    """Return each response's stored reply (its text and the engine's figures), by response id."""
    rows = (
        apps.get_model("chat", "ApiRequest")
        .objects.filter(response_id__in=response_ids)
        .select_related("reply")
    )
    stored = {str(row.response_id): row.reply for row in rows}
    connections.close_all()
    return stored


async def _measure(port: int, key: str, quick: bool) -> Results:
    headers = {"Authorization": f"Bearer {key}"}
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=300) as client:
        await _stream(client, "Hello")  # warm up: connections, prompt cache
        long = [await _stream(client, ENDLESS) for _ in range(3 if quick else 5)]
        short = [await _stream(client, "Hello") for _ in range(5 if quick else 10)]
        started = time.perf_counter()
        many = await asyncio.gather(*(_stream(client, ENDLESS) for _ in range(50)), return_exceptions=True)
        elapsed = time.perf_counter() - started
    done = [s for s in many if isinstance(s, Streamed)]
    stored = await asyncio.to_thread(_stored, [s.response_id for s in [*long, *short, *done]])
    ratios, client_tps, engine_tps = [], [], []
    for s in long:
        reply = stored[s.response_id]
        assert s.first_text_at is not None and s.last_text_at is not None
        seen = (reply.answer_tokens - 1) / (s.last_text_at - s.first_text_at)
        client_tps.append(seen)
        engine_tps.append(reply.tokens_per_second)
        ratios.append(seen / reply.tokens_per_second)
    overheads = []
    for s in short:
        assert s.first_text_at is not None
        overheads.append((s.first_text_at - s.sent_at) * 1000 - stored[s.response_id].ttft_ms)
    complete = [s for s in done if s.status in ("completed", "incomplete")]
    equal = [s for s in complete if s.text == stored[s.response_id].content]
    return {
        "api": {
            "engine_tps": round(statistics.median(engine_tps), 1),
            "client_tps": round(statistics.median(client_tps), 1),
            "tps_ratio": round(statistics.median(ratios), 3),
            "tps_ratios": [round(r, 3) for r in ratios],
            "ttft_overhead_ms_p50": round(statistics.median(overheads), 1),
            "ttft_overhead_ms": [round(o, 1) for o in overheads],
            "quick": quick,
        },
        "api50": {
            "streams": 50,
            "completed": len(complete),
            "text_equal_to_stored": len(equal),
            "errors": [repr(s) for s in many if not isinstance(s, Streamed)][:5],
            "seconds": round(elapsed, 1),
        },
    }


def run_api(quick: bool) -> Results:
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
        key = _setup_django(database_url, stack.env["REDIS_URL"], prefix)
        stack.start()
        try:
            results = asyncio.run(_measure(stack.web_port, key, quick))
        finally:
            stack.stop()
            connections.close_all()
    results["api_targets"] = API_TABLE.target_summary(results)
    return results


def _streams(results: Results, key: str) -> str:
    return f"{results['api50'][key]} / {results['api50']['streams']}"


API_TABLE = Table(
    heading="## API: what an OpenAI client sees",
    rows=(
        Row("`api.engine_tps`: engine decode, one response", lambda r: f"{r['api']['engine_tps']:.1f} tok/s"),
        Row("`api.client_tps`: seen by an API client (SSE)", lambda r: f"{r['api']['client_tps']:.1f} tok/s"),
        Row(
            "`api.tps_ratio` (median of per-response ratios)",
            lambda r: f"{r['api']['tps_ratio']:.3f}",
            Target("api.tps_ratio", ">=", 0.95),
        ),
        Row(
            "`api.ttft_overhead_ms_p50`: first SSE text over the engine's own first token",
            lambda r: f"{r['api']['ttft_overhead_ms_p50']:.1f} ms",
            Target("api.ttft_overhead_ms_p50", "<=", 50),
        ),
        Row(
            "`api50.completed` of `api50.streams` (ended `completed`)",
            lambda r: _streams(r, "completed"),
            Target("api50.completed", "all", total="streams"),
        ),
        Row(
            "`api50.text_equal_to_stored`: text equal to the stored text",
            lambda r: _streams(r, "text_equal_to_stored"),
            Target("api50.text_equal_to_stored", "all", total="streams"),
        ),
        Row(
            "`api50.seconds`: wall time for the 50 streams, 8 at a time",
            lambda r: f"{r['api50']['seconds']} s",
        ),
    ),
)


def print_api(results: Results) -> None:
    """Print the figures as docs/benchmarks.md's table, with the targets they must meet."""
    print(
        "API benchmark (/v1/responses; tiny model, Daphne + Celery worker with 8 slots + Redis + PostgreSQL)"
    )
    print(API_TABLE.markdown(results))
