"""`make run`'s runner, for real: embedded PostgreSQL and Redis, Daphne, a login over HTTP, a clean stop."""

from __future__ import annotations

import http.cookiejar
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest

from gptoss_web.run import free_port

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


@pytest.fixture
def run_dir() -> Iterator[Path]:
    """A scratch folder outside /tmp/pytest-of-*, which pytest keeps private (0700) while pgserver's own
    PostgreSQL user must be able to reach its data directory."""
    path = Path(tempfile.mkdtemp(prefix="make-run-", dir=ROOT / "var"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _start(tmp_path: Path, port: int, **extra: str) -> tuple[subprocess.Popen[str], list[str]]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "GPTOSS_", "DATABASE_", "REDIS_"))
    }
    env.update(
        GPTOSS_VAR_DIR=str(tmp_path / "var"),
        GPTOSS_PORT=str(port),
        DJANGO_SUPERUSER_USERNAME="admin",
        DJANGO_SUPERUSER_PASSWORD="first admin password 42",
        HF_ENDPOINT="http://127.0.0.1:9",  # nothing listens there: the hub is "unreachable", fast
        **extra,
    )
    process = subprocess.Popen(
        [sys.executable, "-m", "gptoss_web.run"], cwd=ROOT, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )  # fmt: skip
    lines: list[str] = []

    def pump() -> None:
        assert process.stdout is not None
        for line in process.stdout:
            lines.append(line)

    threading.Thread(target=pump, daemon=True).start()
    return process, lines


def _wait_for(lines: list[str], pattern: str, process: subprocess.Popen[str], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(re.search(pattern, line) for line in lines):
            return
        if process.poll() is not None:
            break
        time.sleep(0.2)
    raise AssertionError(f"never saw {pattern!r}; output:\n{''.join(lines)}")


def _csrf(page: str) -> str:
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)
    assert token, page
    return token.group(1)


def _login(port: int) -> tuple[urllib.request.OpenerDirector, str]:
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
    base = f"http://127.0.0.1:{port}"
    page = opener.open(f"{base}/accounts/login/", timeout=10).read().decode()
    form = urllib.parse.urlencode(
        {"csrfmiddlewaretoken": _csrf(page), "username": "admin", "password": "first admin password 42"}
    ).encode()
    request = urllib.request.Request(f"{base}/accounts/login/", data=form, headers={"Referer": f"{base}/"})
    return opener, opener.open(request, timeout=10).read().decode()


def _login_when_up(port: int) -> tuple[urllib.request.OpenerDirector, str]:
    for _ in range(50):  # Daphne needs a moment after the banner before it accepts connections.
        try:
            return _login(port)
        except OSError:
            time.sleep(0.2)
    return _login(port)


def _descendants_and_servers(var: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if str(var) in cmdline:
            found.append(proc)
    return found


@contextmanager
def _make_run(run_dir: Path, **extra: str) -> Iterator[tuple[int, list[str], subprocess.Popen[str]]]:
    """Run `make run`'s runner; on leaving, press Ctrl-C and check that everything it started is gone."""
    port = free_port()
    process, lines = _start(run_dir, port, **extra)
    try:
        yield port, lines, process
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(timeout=60)
    assert process.returncode == 0, "".join(lines)
    time.sleep(1)
    assert _descendants_and_servers(run_dir / "var") == [], "processes left behind after Ctrl-C"


def test_make_run_serves_a_login_and_stops_everything_on_ctrl_c(run_dir: Path) -> None:
    with _make_run(run_dir, GPTOSS_MODEL="gpt-oss-20b") as (port, lines, process):
        _wait_for(lines, r"gptoss-web is serving at", process, timeout=240)
        _, body = _login_when_up(port)
        assert "How can I help?" in body
        output = "".join(lines)
        assert "gpt-oss-20b is not downloaded" in output and "GPTOSS_MODEL=tiny make run" in output
        assert _descendants_and_servers(run_dir / "var"), "embedded servers should be running"


def test_make_run_with_the_tiny_model_answers_a_message_sent_over_http(run_dir: Path) -> None:
    from gptoss_web.devtools.tinymodel import SCRIPTS, tiny_model_path

    tiny_model_path(ROOT / "var")  # build it once, outside the timed start-up
    model = str(tiny_model_path(ROOT / "var"))
    with _make_run(run_dir, GPTOSS_MODEL="tiny", GPTOSS_MODEL_PATH=model) as (port, lines, process):
        # A file served by path goes by its own name, in the worker and on the page alike.
        _wait_for(lines, r"model tiny-gpt-oss-v1 ready", process, timeout=240)
        opener, body = _login_when_up(port)
        base = f"http://127.0.0.1:{port}"
        form = urllib.parse.urlencode(
            {"csrfmiddlewaretoken": _csrf(body), "text": "Hello tiny model"}
        ).encode()
        request = urllib.request.Request(f"{base}/c/new/", data=form, headers={"Referer": f"{base}/"})
        page = opener.open(request, timeout=10)
        conversation_url = page.geturl()
        assert re.search(r"/c/\d+/$", conversation_url), conversation_url
        expected = SCRIPTS["plain"].first.final.split("!")[0]
        deadline = time.monotonic() + 60
        while "tok/s" not in (html := opener.open(conversation_url, timeout=10).read().decode()):
            assert time.monotonic() < deadline, "".join(lines)
            time.sleep(0.5)
        assert "Hello tiny model" in html and expected in html
        assert 'title="Model">tiny-gpt-oss-v1<' in html


def test_make_run_with_a_bad_gptoss_variable_stops_before_starting_anything_with_one_line(
    run_dir: Path,
) -> None:
    process, lines = _start(run_dir, free_port(), GPTOSS_SLOTS="abc")
    assert process.wait(timeout=60) == 2
    time.sleep(0.5)  # the output pump's last lines
    output = "".join(lines)
    assert (
        output.strip()
        == "Configuration error: GPTOSS_SLOTS='abc' is not an integer, for example GPTOSS_SLOTS=4"
    )
    assert not (run_dir / "var" / "pgdata").exists(), (
        "PostgreSQL was started for a configuration that cannot run"
    )
