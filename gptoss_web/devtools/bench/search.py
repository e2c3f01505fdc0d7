"""Full-text search at scale: ``python -m gptoss_web.devtools.bench search [--quick]``.

Generates, in a throw-away PostgreSQL database and in SQL alone (generate_series; nothing crosses the wire
but the vocabulary), 10,000 conversations with 1,000,000 messages for the searcher and as many again for
another user, then runs a set of realistic queries through the app's own `chat.search.search()` and, in the
same run on the same data, through a plain `ILIKE` scan of the searcher's messages (no ranking, no snippets:
the cheapest thing that answers the same question without an index):

- ``search.p95_ms``: the 95th percentile over every timed search (target at most 100 ms);
- ``search.ilike_ratio``: the ILIKE scan's median time over the search's median time.

The text is English-like: a vocabulary of stop words, technical words and made-up words, drawn with a
Zipf-like skew, so a query's words match anything from a handful to tens of thousands of messages.
"""

from __future__ import annotations

import os
import statistics
import threading
import time
from typing import Any

import django
import psycopg
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection, connections

from chat.search import prefix_query, search
from gptoss_web.devtools.bench.pipeline import bench_database
from gptoss_web.devtools.bench.table import Results, Row, Table, Target

TARGET_P95_MS = 100.0
REPEAT = 10

# Ordered from most to least frequent: a word's rank sets how many messages hold it.
STOP_WORDS = (  # words, space-separated
    "the to and a of is in it you that for this with on be can as are or if your not have an at by from "
    "will use but so what all when do there which one more also how should then some just than"
)
TECH_WORDS = (
    "model python error file server data memory function request install docker config token "
    "database query user gpu cache version build test network container queue worker image deploy "
    "prompt stream thread kernel index update script package linux nginx postgres redis socket "
    "latency throughput batch context llama quantization tokenizer embedding attention transformer "
    "kubernetes compose migration schema async await timeout retry certificate proxy firewall "
    "benchmark profiler allocator mutex deadlock segfault backtrace checksum compression parquet "
    "gradient optimizer scheduler checkpoint shard tensor matrix vector sparse dense mxfp4 gguf "
    "harmony reasoning sandbox bubblewrap celery daphne websocket channels django template"
)
SYLLABLES = ("ka", "lo", "mi", "ne", "ru", "ta", "vo", "zi", "pe", "sa", "do", "fu", "ge", "hi", "ju", "ba")
SENTENCES = 30_000
QUERIES = [
    "llam",
    "llama",
    "docker compose",
    "postgres index",
    "kubernetes deploy",
    "python async",
    "error",
    "memory leak",
    "gpu",
    "quantiz",
    "tokenizer embedding",
    "nginx config",
    "deadlock mutex",
    "websocket timeout",
    "segfault backtrace",
    "kamilo",
]


def _vocabulary() -> list[str]:
    """Return the words from most to least frequent: stop words, technical words among made-up ones."""
    made_up = [
        "".join(SYLLABLES[(n >> shift) % len(SYLLABLES)] for shift in (0, 4, 8)[: 2 + n % 2])
        for n in range(20_000)
    ]
    made_up = list(dict.fromkeys(made_up))
    words = STOP_WORDS.split()
    tech = TECH_WORDS.split()
    for i, word in enumerate(tech):  # spread over ranks 40 to about 1,300
        words += [*made_up[i * 12 : (i + 1) * 12], word]
    words += made_up[len(tech) * 12 :]
    return words


# Random picks are drawn in an inner query (OFFSET 0 keeps it apart) and looked up by primary key outside it:
# the planner uses no index for a comparison with random() itself, and an array subscript would read the
# whole array from TOAST every time.
VOCABULARY_SQL = """
CREATE UNLOGGED TABLE bench_vocabulary AS
    SELECT rank::int, word FROM unnest(%(words)s::text[]) WITH ORDINALITY AS v(word, rank)
"""

SENTENCES_SQL = """
CREATE UNLOGGED TABLE bench_sentences AS
    SELECT s AS id, initcap(string_agg(v.word, ' ' ORDER BY g.n)) || '.' AS sentence
    FROM (SELECT s, n, 1 + floor(power(random(), 3) * %(words)s)::int AS pick
          FROM generate_series(1, %(sentences)s) s, generate_series(1, 6 + s %% 10) n OFFSET 0) g
    JOIN bench_vocabulary v ON v.rank = g.pick
    GROUP BY s
"""

CONVERSATIONS_SQL = """
INSERT INTO chat_conversation (owner_id, title, model_name, reasoning_effort, enabled_tools, instructions,
                               ephemeral, from_api, created_at, updated_at)
SELECT %(owner)s, left(sentence, 60), 'gpt-oss-20b', 'medium', '{}', '', false, false,
       now() - make_interval(mins => c), now() - make_interval(mins => c)
FROM generate_series(1, %(conversations)s) c JOIN bench_sentences ON id = 1 + (c * 7919) %% %(sentences)s
"""

MESSAGES_SQL = """
INSERT INTO chat_message (conversation_id, role, status, content, reasoning, tool_calls, model_name,
    reasoning_effort, prompt_tokens, reasoning_tokens, answer_tokens, reserved_tokens, error, retryable,
    notice, task_id, worker, stream_seq, on_branch, created_at)
SELECT conv.first + i %% %(conversations)s,
       CASE WHEN i %% 2 = 0 THEN 'user' ELSE 'assistant' END, 'done',
       CASE WHEN i %% 2 = 0 THEN s1.sentence
            ELSE s1.sentence || ' ' || s2.sentence || ' ' || s3.sentence || ' ' || s4.sentence END,
       CASE WHEN i %% 2 = 0 THEN '' ELSE s5.sentence || ' ' || s6.sentence END,
       '[]', 'gpt-oss-20b', '', 0, 0, 0, 0, '', true, '', '', '', 0, true,
       now() - make_interval(secs => %(messages)s - i)
FROM (SELECT i,
             1 + floor(random() * %(sentences)s)::int AS p1, 1 + floor(random() * %(sentences)s)::int AS p2,
             1 + floor(random() * %(sentences)s)::int AS p3, 1 + floor(random() * %(sentences)s)::int AS p4,
             1 + floor(random() * %(sentences)s)::int AS p5, 1 + floor(random() * %(sentences)s)::int AS p6
      FROM generate_series(1, %(messages)s) i OFFSET 0) r
CROSS JOIN (SELECT min(id) AS first FROM chat_conversation WHERE owner_id = %(owner)s) conv
JOIN bench_sentences s1 ON s1.id = r.p1 JOIN bench_sentences s2 ON s2.id = r.p2
JOIN bench_sentences s3 ON s3.id = r.p3 JOIN bench_sentences s4 ON s4.id = r.p4
JOIN bench_sentences s5 ON s5.id = r.p5 JOIN bench_sentences s6 ON s6.id = r.p6
"""

ILIKE_SQL = """
SELECT m.id, m.conversation_id FROM chat_message m
WHERE m.conversation_id IN (SELECT id FROM chat_conversation WHERE owner_id = %s AND NOT ephemeral)
  AND m.on_branch AND {match}
ORDER BY m.created_at DESC LIMIT 20
"""


def _run_parallel(url: str, jobs: list[tuple[str, dict[str, Any]]]) -> None:
    """Run each (sql, params) on a connection of its own, all at once (the machine's cores share the work)."""
    errors: list[BaseException] = []

    def run(sql: str, params: dict[str, Any]) -> None:
        try:
            with psycopg.connect(url, autocommit=True) as db:
                db.execute("SET maintenance_work_mem = '512MB'")
                db.execute(sql, params)
        except BaseException as error:  # reported by the caller
            errors.append(error)

    threads = [threading.Thread(target=run, args=job) for job in jobs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def _generate(url: str, conversations: int, messages: int) -> tuple[list[int], dict[str, float]]:
    """Fill the bench database; return the two users' ids and how long each step took, in seconds."""
    timings = {}
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as db:
        owners = []
        for name in ("searcher", "stranger"):
            row = db.execute(
                "INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email, "
                "is_staff, is_active, date_joined) VALUES ('!', false, %s, '', '', '', false, true, now()) "
                "RETURNING id",
                [name],
            ).fetchone()
            assert row is not None
            owners.append(int(row[0]))
        words = _vocabulary()
        db.execute(VOCABULARY_SQL, {"words": words})
        db.execute("ALTER TABLE bench_vocabulary ADD PRIMARY KEY (rank)")
        db.execute(SENTENCES_SQL, {"sentences": SENTENCES, "words": len(words)})
        db.execute("ALTER TABLE bench_sentences ADD PRIMARY KEY (id)")
        for owner in owners:
            db.execute(
                CONVERSATIONS_SQL,
                {"owner": owner, "conversations": conversations, "sentences": SENTENCES},
            )
        # The indexes are built once the rows are in (as a restore would): faster than growing them by row.
        indexes = db.execute(
            "SELECT indexname, indexdef FROM pg_indexes WHERE indexname IN "
            "('chat_message_content_tsv', 'chat_message_reasoning_tsv', 'chat_conversation_title_tsv')"
        ).fetchall()
        for name, _ in indexes:
            db.execute(f'DROP INDEX "{name}"')
    timings["vocabulary_and_conversations_s"] = time.perf_counter() - started
    started = time.perf_counter()
    _run_parallel(
        url,
        [
            (
                MESSAGES_SQL,
                {"owner": o, "conversations": conversations, "messages": messages, "sentences": SENTENCES},
            )
            for o in owners
        ],
    )
    timings["messages_s"] = time.perf_counter() - started
    started = time.perf_counter()
    _run_parallel(url, [(definition, {}) for _, definition in indexes])
    timings["indexes_s"] = time.perf_counter() - started
    started = time.perf_counter()
    with psycopg.connect(url, autocommit=True) as db:
        db.execute("DROP TABLE bench_vocabulary, bench_sentences")
        db.execute("VACUUM ANALYZE chat_conversation, chat_message")
    timings["analyze_s"] = time.perf_counter() - started
    return owners, timings


def _percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


def _ilike(owner: int, text: str) -> float:
    """Time the plain ILIKE scan for *text*: every word somewhere in the message text, newest first."""
    words = text.split()
    sql = ILIKE_SQL.format(match=" AND ".join(["m.content ILIKE %s"] * len(words)))
    started = time.perf_counter()
    with connection.cursor() as cursor:
        cursor.execute(sql, [owner, *(f"%{w}%" for w in words)])
        cursor.fetchall()
    return (time.perf_counter() - started) * 1000


def _measure(owner_id: int, repeat: int, ilike_repeat: int) -> dict[str, Any]:
    owner = get_user_model().objects.get(pk=owner_id)
    per_query: dict[str, Any] = {}
    samples: list[float] = []
    ilike_samples: list[float] = []
    for text in QUERIES:
        hits = search(user=owner, text=text)  # warm: plans, pages
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            search(user=owner, text=text)
            times.append((time.perf_counter() - started) * 1000)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT count(*) FROM chat_message m JOIN chat_conversation c ON c.id = m.conversation_id "
                "WHERE c.owner_id = %s AND m.content_tsv @@ to_tsquery('english', %s)",
                [owner_id, prefix_query(text)],
            )
            row = cursor.fetchone()
        ilike = [_ilike(owner_id, text) for _ in range(ilike_repeat)]
        samples += times
        ilike_samples += ilike
        per_query[text] = {
            "matches": int(row[0]) if row else 0,
            "hits": len(hits),
            "p50_ms": round(statistics.median(times), 1),
            "max_ms": round(max(times), 1),
            "ilike_ms": round(statistics.median(ilike), 1),
        }
    p50, ilike_p50 = statistics.median(samples), statistics.median(ilike_samples)
    return {
        "p50_ms": round(p50, 1),
        "p95_ms": round(_percentile(samples, 95), 1),
        "max_ms": round(max(samples), 1),
        "ilike_p50_ms": round(ilike_p50, 1),
        "ilike_p95_ms": round(_percentile(ilike_samples, 95), 1),
        "ilike_ratio": round(ilike_p50 / p50, 1),
        "samples": len(samples),
        "queries": per_query,
    }


def run_search(quick: bool) -> dict[str, Any]:
    """Generate the data, measure, drop the database; return the results keyed as in latest.json."""
    conversations, messages = (1_000, 100_000) if quick else (10_000, 1_000_000)
    load_before = os.getloadavg()
    with bench_database() as database_url:
        os.environ.update(DATABASE_URL=database_url)
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gptoss_web.settings_test")
        django.setup()
        call_command("migrate", verbosity=0)
        connections.close_all()
        owners, timings = _generate(database_url, conversations, messages)
        try:
            measured = _measure(owners[0], REPEAT, 1 if not quick else 3)
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_size_pretty(pg_total_relation_size('chat_message'))")
                row = cursor.fetchone()
        finally:
            connections.close_all()
    results = {
        "search": {
            **measured,
            "conversations_per_user": conversations,
            "messages_per_user": messages,
            "users": len(owners),
            "message_table_size": row[0] if row else "",
            "generation_s": {k: round(v, 1) for k, v in timings.items()},
            "load_average": [round(v, 2) for v in (*load_before, *os.getloadavg())],
            "quick": quick,
        }
    }
    results["search_targets"] = SEARCH_TABLE.target_summary(results)
    return results


def _slowest(results: Results) -> str:
    text, query = max(results["search"]["queries"].items(), key=lambda item: item[1]["p50_ms"])
    return f"{query['p50_ms']:.1f} ms (`{text}`, {query['matches']:,} matches)"


def _generation(results: Results) -> str:
    seconds = results["search"]["generation_s"]
    return f"{seconds['messages_s']:.0f} s / {seconds['indexes_s']:.0f} s"


SEARCH_TABLE = Table(
    heading="## Search",
    rows=(
        Row(
            "`search.p95_ms`: 95th percentile over every timed search",
            lambda r: f"{r['search']['p95_ms']:.1f} ms",
            Target("search.p95_ms", "<=", TARGET_P95_MS),
        ),
        Row(
            "`search.p50_ms` / slowest search",
            lambda r: f"{r['search']['p50_ms']:.1f} / {r['search']['max_ms']:.1f} ms",
        ),
        Row("the slowest query, p50", _slowest),
        Row(
            "`search.ilike_p50_ms` / `search.ilike_p95_ms`: the plain `ILIKE` scan",
            lambda r: f"{r['search']['ilike_p50_ms']:,.1f} / {r['search']['ilike_p95_ms']:,.1f} ms",
        ),
        Row(
            "`search.ilike_ratio` (ILIKE p50 over search p50)", lambda r: f"{r['search']['ilike_ratio']:.0f}×"
        ),
        Row("data generation: the messages / the three GIN indexes", _generation),
    ),
)


def print_search(results: Results) -> None:
    """Print the per-query figures, then the table of docs/benchmarks.md."""
    s = results["search"]
    print(
        f"Search benchmark ({s['users']} users × {s['conversations_per_user']:,} conversations, "
        f"{s['messages_per_user']:,} messages; chat_message {s['message_table_size']})"
    )
    print(f"  {'query':<22} {'matches':>8} {'hits':>5} {'p50 ms':>8} {'max ms':>8} {'ILIKE ms':>9}")
    for text, q in s["queries"].items():
        print(
            f"  {text:<22} {q['matches']:>8} {q['hits']:>5} {q['p50_ms']:>8.1f} {q['max_ms']:>8.1f} "
            f"{q['ilike_ms']:>9.1f}"
        )
    load = s["load_average"]
    print(f"  load average (1/5/15 min) before {load[0:3]}, after {load[3:6]}")
    print(SEARCH_TABLE.markdown(results))
