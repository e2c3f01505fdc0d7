"""A real gptoss-web stack for fault tests and the pipeline benchmark: Daphne, a GPU worker and the reaper.

Each process runs from this checkout against the database in *database_url*. By default the stack starts a
Redis server of its own, so a test may kill and restart it without touching anything else on the machine.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gptoss_web.run import free_port

ROOT = Path(__file__).resolve().parent.parent


class Process:
    """A child process whose output is kept for assertions and failure messages."""

    def __init__(self, label: str, argv: list[str], env: dict[str, str]) -> None:
        self.label = label
        self.lines: list[str] = []
        self.popen = subprocess.Popen(
            argv, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            start_new_session=True,
        )  # fmt: skip
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, text: str, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while not any(text in line for line in self.lines):
            if self.popen.poll() is not None:
                raise AssertionError(f"{self.label} exited:\n" + "\n".join(self.lines[-40:]))
            if time.monotonic() > deadline:
                raise AssertionError(f"{self.label} never said {text!r}:\n" + "\n".join(self.lines[-40:]))
            time.sleep(0.1)

    def kill(self, sig: int = signal.SIGKILL) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, sig)
        self.popen.wait(timeout=30)

    def stop(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.kill()

    def output(self) -> str:
        return "\n".join(self.lines)


class Stack:
    """Start with `start()`; `stop()` ends every process; `restart_redis()` makes a fault."""

    def __init__(self, *, database_url: str, redis_prefix: str, **env: str) -> None:
        self.redis_port = free_port()
        self.web_port = free_port()
        self.env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
            "DJANGO_SETTINGS_MODULE": "gptoss_web.settings_test",
            "DATABASE_URL": database_url,
            "REDIS_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "GPTOSS_REDIS_PREFIX": redis_prefix,
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "GPTOSS_MODEL": "tiny",
            "GPTOSS_SLOTS": "2",
            "GPTOSS_CONTEXT": "8192",
            **env,
        }
        self.processes: dict[str, Process] = {}

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def start(self) -> Stack:
        """Start every process and wait until each is ready; on any failure stop them all and raise."""
        try:
            return self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> Stack:
        self.start_redis()
        self.processes["web"] = Process(
            "web",
            [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(self.web_port),
             "gptoss_web.asgi:application"],
            self.env,
        )  # fmt: skip
        self.start_worker()
        self.processes["reaper"] = Process("reaper", [sys.executable, "manage.py", "reaper"], self.env)
        self.processes["web"].wait_for("Listening on TCP address")
        self.processes["worker"].wait_for("ready.")
        self.processes["reaper"].wait_for("reaper watching")
        return self

    def start_redis(self) -> None:
        self.processes["redis"] = Process(
            "redis",
            ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no"],
            self.env,
        )  # fmt: skip
        self.processes["redis"].wait_for("Ready to accept connections")

    def start_worker(self) -> None:
        from inference.dispatch import queue_for_model

        self.processes["worker"] = Process(
            "worker",
            [sys.executable, "-m", "celery", "-A", "gptoss_web", "worker", "--pool", "threads",
             "--concurrency", self.env["GPTOSS_SLOTS"], "--queues", queue_for_model(self.env["GPTOSS_MODEL"]),
             "--without-gossip", "--without-mingle", "--loglevel", "INFO"],
            self.env,
        )  # fmt: skip

    def restart_redis(self) -> None:
        self.processes["redis"].kill(signal.SIGTERM)
        self.start_redis()

    def stop(self) -> None:
        for process in reversed(list(self.processes.values())):
            process.stop()

    def logs(self) -> str:
        return "\n".join(f"--- {p.label}\n{p.output()[-12000:]}" for p in self.processes.values())


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s: {what}")
