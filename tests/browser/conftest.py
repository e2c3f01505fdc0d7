"""Browser tests: Debian's chromium through Playwright against real Daphne, a GPU worker and the reaper."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from gptoss_web.devtools.stack import Stack
from inference.status import WorkerStatus
from inference.worker.heartbeat import Heartbeat
from tests.browser.worker_play import WORKER
from tests.factories import PASSWORD, UserFactory
from tests.live import collect_static, live_stack, settle_replies

# Playwright's sync API keeps an event loop in this thread; the ORM calls the tests make are still plain
# blocking calls between browser steps.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")

CHROMIUM = os.environ.get("GPTOSS_CHROMIUM", "/usr/bin/chromium")

# Every XSS payload, if it ever ran, would bump this counter or open a dialog.
SENTINEL = """
window.__xss = 0;
window.__dialogs = 0;
(function () {
  var bump = function () { window.__xss++; };
  window.alert = bump; window.confirm = bump; window.prompt = bump;
})();
"""


@pytest.fixture(scope="session")
def static_root() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="gptoss-static-"))
    try:
        yield collect_static(path)
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="package")
def live(django_db_setup: None, static_root: Path) -> Iterator[Stack]:
    """Daphne, a tiny-model GPU worker (2 slots) and the reaper, for the whole session."""
    # Room for an "endless" answer to stream for a few seconds before its length limit.
    worker_env = {"GPTOSS_CONTEXT": "4096", "GPTOSS_MAX_ANSWER_TOKENS": "2000"}
    with live_stack(static_root=static_root, worker_env=worker_env) as stack:
        yield stack


@pytest.fixture(scope="package")  # closed after the browser tests: its event loop would block async tests
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        pytest.skip(f"no chromium at {CHROMIUM} (set GPTOSS_CHROMIUM)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-dev-shm-usage"]
        )
        yield chromium
        chromium.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    report = yield
    if report.when == "call" and report.failed and "live" in getattr(item, "fixturenames", ()):
        stack = item.funcargs.get("live")  # type: ignore[attr-defined]
        if isinstance(stack, Stack):
            for name, process in stack.processes.items():
                report.sections.append((f"live {name} (last 40 lines)", "\n".join(process.lines[-40:])))
    return report


@pytest.fixture
def user_page(live: Stack, browser: Any) -> Iterator[Callable[..., Any]]:
    """Return `open(user, **context_options)`: a new signed-in page with the XSS sentinel installed."""
    contexts: list[Any] = []

    def open_page(user: Any, **options: Any) -> Any:
        context = browser.new_context(base_url=live.base_url, **options)
        contexts.append(context)
        page = context.new_page()
        page.dialogs = []  # type: ignore[attr-defined]
        page.on("dialog", lambda dialog: (page.dialogs.append(dialog.message), dialog.dismiss()))  # type: ignore[attr-defined]
        page.add_init_script(SENTINEL)
        sign_in(page, user.username)
        return page

    yield open_page
    for context in contexts:
        context.close()


def sign_in(page: Any, username: str, password: str = PASSWORD) -> None:
    """Sign in through the real login form."""
    page.goto("/accounts/login/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url("**/")


@pytest.fixture(autouse=True)
def _settle_replies(request: pytest.FixtureRequest) -> Iterator[None]:
    """Stop what a test left generating, so the next test starts with free GPU slots."""
    yield
    if "live" in request.fixturenames:
        settle_replies()


@pytest.fixture
def alice_user(transactional_db: None) -> Any:
    return UserFactory(username="alice")


@pytest.fixture
def bob_user(transactional_db: None) -> Any:
    return UserFactory(username="bob")


@pytest.fixture
def worker_heartbeat(live: Stack) -> Iterator[Heartbeat]:
    """A worker the reaper sees alive and that lists no replies, so it leaves the test's replies streaming."""
    beat = Heartbeat(WorkerStatus(name=WORKER, model="render-test", state="ready"), lambda _: None).start()
    yield beat
    beat.stop()
