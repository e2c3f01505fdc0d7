"""The browser part of `make bench`: what a person sees in a real browser, against the engine's own figures.

``python -m gptoss_web.devtools.bench browser [--quick]`` starts a real stack (Daphne, a Celery GPU worker on
the tiny model, the reaper and a private Redis) on a throw-away PostgreSQL database and drives Debian's
chromium with Playwright, interleaving the two ways a message is sent:

- ``browser.first_message_overhead_ms``: on the start page, from pressing Enter to the first visible answer
  text, less the engine's own time to first token for that reply (target at most 50 ms, median);
- ``browser.next_message_overhead_ms``: the same for the next message in the open conversation.

The times are taken in the page (`performance.now()` at the key press, a MutationObserver for the first text
in the reply), so they include the browser's own work, as a person would see it.
"""

from __future__ import annotations

import os
import secrets
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from django.apps import apps
from django.conf import settings
from django.core.management import call_command
from django.db import connections
from django.test import Client
from playwright.sync_api import sync_playwright

from gptoss_web.devtools.bench.pipeline import bench_database, use_bench_database
from gptoss_web.devtools.bench.table import Results, Row, Table, Target
from gptoss_web.devtools.stack import ROOT, Stack

CHROMIUM = os.environ.get("GPTOSS_CHROMIUM", "/usr/bin/chromium")

# Press Enter in the composer; resolve with the milliseconds until the newest reply shows text.
SEND_AND_WATCH = """(text) => new Promise((resolve, reject) => {
    const thread = document.getElementById("thread");
    const before = new Set(Array.from(thread.querySelectorAll("article.message")).map((n) => n.id));
    const box = document.querySelector("textarea[name=text]");
    box.value = text;
    const started = performance.now();
    const seen = () => {
        const fresh = Array.from(thread.querySelectorAll("article.message")).filter((n) => !before.has(n.id));
        return fresh.some((n) => {
            const content = n.querySelector("[data-role=content]");
            const shown = content && content.textContent.trim().length > 0;
            return n.classList.contains("message-assistant") && shown;
        });
    };
    const observer = new MutationObserver(() => {
        if (seen()) { observer.disconnect(); resolve(performance.now() - started); }
    });
    observer.observe(thread, {subtree: true, childList: true, characterData: true});
    box.dispatchEvent(new KeyboardEvent("keydown", {key: "Enter", bubbles: true}));
    setTimeout(() => { observer.disconnect(); reject(new Error("no answer text within 30 s")); }, 30000);
})"""


def _setup_django(database_url: str, redis_url: str, prefix: str) -> str:
    """Point Django at the bench database, migrate, and return a signed-in session cookie's value."""
    use_bench_database(database_url, redis_url, prefix)
    call_command("migrate", verbosity=0)
    user = apps.get_model("auth", "User").objects.create_user("bench", password=secrets.token_urlsafe(16))
    client = Client()
    client.force_login(user)
    cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
    connections.close_all()
    return cookie


def _engine_ttft_ms() -> float:
    """Return the engine's own time to first token of the newest reply, once it is stored (read in a thread
    of its own: Playwright's sync API runs an event loop in this one, where Django refuses to query)."""
    with ThreadPoolExecutor(1) as pool:
        return pool.submit(_stored_ttft_ms).result()


def _stored_ttft_ms() -> float:
    message = apps.get_model("chat", "Message")
    reply = message.objects.filter(role="assistant").order_by("-id").first()
    assert reply is not None and reply.ttft_ms is not None, "the reply has no engine figures yet"
    connections.close_all()
    return float(reply.ttft_ms)


def _wait_done(page: Any) -> None:
    page.wait_for_function(
        "() => window.gptossChat && window.gptossChat.messages().every((m) => m.role !== 'assistant' || "
        "['done', 'cancelled', 'failed', 'interrupted'].includes(m.status))",
        timeout=30_000,
    )


def _measure(base_url: str, cookie: str, quick: bool) -> Results:
    first: list[float] = []
    following: list[float] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = browser.new_context(base_url=base_url)
        context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": cookie, "url": base_url}])
        page = context.new_page()
        for run in range(4 if quick else 8):
            page.goto("/")
            page.wait_for_function("() => window.gptossChat && window.gptossChat.connected()")
            visible = page.evaluate(SEND_AND_WATCH, "Hello")
            _wait_done(page)
            if run:  # the first run warms the connections and the prompt cache
                first.append(visible - _engine_ttft_ms())
            visible = page.evaluate(SEND_AND_WATCH, "Hello again")
            _wait_done(page)
            if run:
                following.append(visible - _engine_ttft_ms())
        browser.close()
    return {
        "browser": {
            "first_message_overhead_ms": round(statistics.median(first), 1),
            "next_message_overhead_ms": round(statistics.median(following), 1),
            "first_message_overheads_ms": [round(v, 1) for v in first],
            "next_message_overheads_ms": [round(v, 1) for v in following],
            "quick": quick,
        }
    }


def run_browser(quick: bool) -> Results:
    """Start the stack, measure, stop; return the results keyed as in latest.json."""
    prefix = f"gptoss-bench-{secrets.token_hex(4)}"
    with bench_database() as database_url, tempfile.TemporaryDirectory(prefix="gptoss-static-") as static:
        stack = Stack(
            database_url=database_url,
            redis_prefix=prefix,
            GPTOSS_SLOTS="2",
            GPTOSS_CONTEXT="2048",
            DJANGO_STATIC_ROOT=static,  # the page's scripts and styles, served by Daphne's whitenoise
        )
        subprocess.run(
            [sys.executable, "manage.py", "collectstatic", "--noinput", "--verbosity", "0"],
            cwd=ROOT, env=stack.env, check=True,
        )  # fmt: skip
        cookie = _setup_django(database_url, stack.env["REDIS_URL"], prefix)
        stack.start()
        try:
            results = _measure(stack.base_url, cookie, quick)
        finally:
            stack.stop()
            connections.close_all()
    results["browser_targets"] = BROWSER_TABLE.target_summary(results)
    return results


BROWSER_TABLE = Table(
    heading="## Browser: what a person sees",
    rows=(
        Row(
            "`browser.first_message_overhead_ms`: start page, Enter to the first answer text, less the "
            "engine's TTFT",
            lambda r: f"{r['browser']['first_message_overhead_ms']:.1f} ms",
            Target("browser.first_message_overhead_ms", "<=", 50),
        ),
        Row(
            "`browser.next_message_overhead_ms`: the same for the next message of the conversation",
            lambda r: f"{r['browser']['next_message_overhead_ms']:.1f} ms",
            Target("browser.next_message_overhead_ms", "<=", 50),
        ),
    ),
)


def print_browser(results: Results) -> None:
    """Print the figures as docs/benchmarks.md's table, with the targets they must meet."""
    print("Browser benchmark (Debian's chromium via Playwright; tiny model, Daphne + Celery worker + Redis)")
    print(BROWSER_TABLE.markdown(results))
