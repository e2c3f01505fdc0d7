"""Real processes for end-to-end tests: Daphne, a Celery GPU worker on the tiny model, and the reaper.

`live_stack()` starts them against the pytest-django test database and the test run's Redis prefix, waits
until each is ready and stops them all on leaving (also when the test fails). The browser tests and the
fault tests use it::

    with live_stack() as stack:
        stack.url                     # http://127.0.0.1:<port>
        stack.kill("worker")          # SIGKILL one process (fault tests)
        stack.start("worker")         # and start it again
        stack.output("worker")        # everything it printed so far
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_env(**extra: str) -> dict[str, str]:
    """Return the environment a child process needs to share this test run's database and Redis keys."""
    from django.conf import settings

    db = settings.DATABASES["default"]
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        "REDIS_URL": settings.REDIS_URL,
        "DJANGO_SETTINGS_MODULE": "gptoss_web.settings_test",
        "GPTOSS_REDIS_PREFIX": settings.GPTOSS_REDIS_PREFIX,
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "PYTHONPATH": str(ROOT),
        "PYTHONUNBUFFERED": "1",
        "GPTOSS_VAR_DIR": str(settings.GPTOSS_VAR_DIR),
        "GPTOSS_MODEL": "tiny",
        "GPTOSS_SLOTS": "2",
        "GPTOSS_CONTEXT": "2048",
    }
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    env.update(extra)
    return env


def collect_static(target: Path) -> Path:
    """Copy the static files into *target*, which Daphne's whitenoise then serves as STATIC_ROOT."""
    env = test_env(DJANGO_STATIC_ROOT=str(target))
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "--verbosity", "0"],
        cwd=ROOT, env=env, check=True,
    )  # fmt: skip
    return target


@dataclass
class Child:
    name: str
    argv: list[str]
    env: dict[str, str]
    ready: Callable[[Child], bool]
    process: subprocess.Popen[str] | None = None
    lines: list[str] = field(default_factory=list)

    def start(self) -> None:
        self.process = subprocess.Popen(
            self.argv, cwd=ROOT, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True, bufsize=1, start_new_session=True,
        )  # fmt: skip
        threading.Thread(target=self._pump, args=(self.process,), daemon=True).start()

    def _pump(self, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            self.lines.append(line)

    def output(self) -> str:
        return "".join(self.lines)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"{self.name} exited while starting:\n{self.output()}")
            if self.ready(self):
                return
            time.sleep(0.2)
        raise RuntimeError(f"{self.name} was not ready after {timeout:.0f} s:\n{self.output()}")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        process = self.process
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, sig)
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
        except ProcessLookupError:
            pass


@dataclass
class LiveStack:
    url: str
    port: int
    children: dict[str, Child]

    def output(self, name: str) -> str:
        return self.children[name].output()

    def kill(self, name: str) -> None:
        """Kill *name* at once (SIGKILL), as a crash would."""
        self.children[name].stop(signal.SIGKILL)

    def stop(self, name: str) -> None:
        self.children[name].stop()

    def start(self, name: str, timeout: float = 120) -> None:
        child = self.children[name]
        child.lines.clear()
        child.start()
        child.wait_ready(timeout)


def _http_ok(url: str) -> Callable[[Child], bool]:
    def ready(child: Child) -> bool:
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return bool(response.status == 200)
        except (OSError, urllib.error.URLError):
            return False

    return ready


def _printed(text: str) -> Callable[[Child], bool]:
    return lambda child: text in child.output()


def _started(child: Child) -> bool:
    return child.alive()


def reaper_available() -> bool:
    return any(
        (ROOT / app / "management" / "commands" / "reaper.py").exists() for app in ("inference", "chat")
    )


@contextmanager
def live_stack(
    *,
    worker: bool = True,
    reaper: bool | None = None,
    static_root: Path | None = None,
    env: Mapping[str, str] | None = None,
    worker_env: Mapping[str, str] | None = None,
) -> Iterator[LiveStack]:
    """Run Daphne (+ a tiny-model GPU worker, + the reaper when it exists) until the block ends.

    *static_root*: a folder `collect_static` filled (collected into a temporary one when omitted).
    *reaper*: None starts it where `manage.py reaper` exists.
    """
    from inference.catalog import model_path
    from inference.dispatch import queue_for_model

    tmp = None
    if static_root is None:
        tmp = Path(tempfile.mkdtemp(prefix="gptoss-static-"))
        static_root = collect_static(tmp)
    port = free_port()
    base_env = test_env(DJANGO_STATIC_ROOT=str(static_root), **dict(env or {}))
    if worker:
        from django.conf import settings

        model_path("tiny", settings.GPTOSS_VAR_DIR)  # build the tiny model before the timed start
    asgi = "gptoss_web.asgi:application"
    daphne = [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), asgi]
    children: dict[str, Child] = {
        "web": Child(
            "web",
            daphne,
            base_env,
            _http_ok(f"http://127.0.0.1:{port}/accounts/login/"),
        )
    }
    if worker:
        children["worker"] = Child(
            "worker",
            [sys.executable, "-m", "celery", "-A", "gptoss_web", "worker", "--pool", "threads",
             "--concurrency", base_env.get("GPTOSS_SLOTS", "2"), "--queues", queue_for_model("tiny"),
             "--hostname", f"gpu-tiny-{port}@%h", "--without-gossip", "--without-mingle",
             "--loglevel", "INFO"],
            {**base_env, **dict(worker_env or {})},
            _printed("model tiny ready"),
        )  # fmt: skip
    if reaper if reaper is not None else reaper_available():
        children["reaper"] = Child(
            "reaper", [sys.executable, "manage.py", "reaper"], base_env, _printed("reaper watching")
        )
    stack = LiveStack(url=f"http://127.0.0.1:{port}", port=port, children=children)
    try:
        for child in children.values():
            child.start()
        for child in children.values():
            child.wait_ready(180 if child.name == "worker" else 60)
        yield stack
    finally:
        for child in reversed(list(children.values())):
            child.stop()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
