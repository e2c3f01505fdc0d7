"""A real gptoss-web stack for the browser and fault tests and the pipeline benchmark: Daphne, a GPU worker on
the tiny model and the reaper.

Each process runs from this checkout against the database in *database_url*. Without *redis_url* the stack
starts a Redis server of its own, so a test may kill and restart it without touching anything else.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gptoss_web.devtools.tinymodel import tiny_model_path
from gptoss_web.run import daphne_argv, free_port
from inference.runtime.catalog import TINY, queue_for_model, served_model_name

ROOT = Path(__file__).resolve().parents[2]


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
    """Real processes, started with `start()` and ended with `stop()`.

    Each process can be killed (`kill(name)`, as a crash would) and started again (`start_process(name)`,
    on the same port): "redis" (only when the stack runs its own), "web", "worker", "reaper"; with *workers*
    above 1, the further GPU workers "worker2", "worker3"… on the same model.
    """

    def __init__(
        self,
        *,
        database_url: str,
        redis_prefix: str,
        redis_url: str | None = None,
        worker_env: dict[str, str] | None = None,
        workers: int = 1,
        **env: str,
    ) -> None:
        self.workers = ["worker", *(f"worker{n}" for n in range(2, workers + 1))]
        self.own_redis = redis_url is None
        self.redis_port = free_port()
        self.web_port = free_port()
        self.env = {
            **os.environ,
            "PYTHONPATH": str(ROOT),
            "PYTHONUNBUFFERED": "1",
            "DJANGO_SETTINGS_MODULE": "gptoss_web.settings_test",
            "DATABASE_URL": database_url,
            "REDIS_URL": redis_url or f"redis://127.0.0.1:{self.redis_port}/0",
            "GPTOSS_REDIS_PREFIX": redis_prefix,
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "GPTOSS_MODEL": "tiny",
            "GPTOSS_SLOTS": "2",
            "GPTOSS_CONTEXT": "8192",
            **env,
        }
        self.worker_env = {**self.env, **(worker_env or {})}
        self.processes: dict[str, Process] = {}

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.web_port}"

    def start(self) -> Stack:
        """Start every process and wait until each is ready; on any failure stop them all and raise."""
        if self.worker_env["GPTOSS_MODEL"] == TINY and not self.worker_env.get("GPTOSS_MODEL_PATH"):
            tiny_model_path(ROOT / self.worker_env.get("GPTOSS_VAR_DIR", "var"))  # built once, kept
        try:
            for name in (["redis"] if self.own_redis else []) + ["web", *self.workers, "reaper"]:
                self.start_process(name)
        except BaseException:
            self.stop()
            raise
        return self

    def start_process(self, name: str) -> None:
        """Start (or start again) one process and wait until it is ready."""
        if name in self.workers:
            argv = [
                sys.executable, "-m", "celery", "-A", "gptoss_web", "worker", "--pool", "threads",
                "--queues", queue_for_model(served_model_name(self.worker_env)),
                "--hostname", f"gpu-{self.web_port}-{name}@%h", "--without-gossip", "--without-mingle",
                "--loglevel", "INFO",
            ]  # fmt: skip
            self.processes[name] = Process(name, argv, self.worker_env)
            self.processes[name].wait_for("ready.", timeout=180)
            return
        argv, env, ready = {
            "redis": (
                ["redis-server", "--port", str(self.redis_port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no"],
                self.env, "Ready to accept connections",
            ),
            "web": (
                daphne_argv("127.0.0.1", self.web_port),
                self.env, "Listening on TCP address",
            ),
            "reaper": ([sys.executable, "manage.py", "reaper"], self.env, "reaper watching"),
        }[name]  # fmt: skip
        self.processes[name] = Process(name, argv, env)
        self.processes[name].wait_for(ready, timeout=180)

    def kill(self, name: str) -> None:
        """Kill *name* at once (SIGKILL), as a crash would."""
        self.processes[name].kill()

    def output(self, name: str) -> str:
        return self.processes[name].output()

    def restart_redis(self) -> None:
        self.processes["redis"].kill(signal.SIGTERM)
        self.start_process("redis")

    def stop(self) -> None:
        for process in reversed(list(self.processes.values())):
            process.stop()

    def logs(self) -> str:
        return "\n".join(f"--- {p.label}\n{p.output()[-12000:]}" for p in self.processes.values())


class Postgres:
    """A private PostgreSQL server (initdb in a temporary folder, on a free port) that a test may stop and
    start again, as a database restart or outage would, without touching the machine's own server.

    Uses Debian's binaries (/usr/lib/postgresql/<version>/bin, package postgresql); run as root, the server
    runs as the `postgres` user (PostgreSQL refuses root). `close()` stops it and removes the folder.
    """

    def __init__(self) -> None:
        found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parts[-3]))
        if not found:
            raise RuntimeError("no PostgreSQL server binaries: install Debian's postgresql package")
        self.bin = found[-1].parent
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="gptoss-pg-"))
        self.data = self.dir / "data"
        self._as_owner: list[str] = []
        if os.geteuid() == 0:
            shutil.chown(self.dir, "postgres", "postgres")
            self._as_owner = ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups"]

    def _run(self, *argv: str) -> None:
        subprocess.run([*self._as_owner, *argv], check=True, capture_output=True, cwd=self.dir)

    def start(self) -> Postgres:
        """Start the server (creating its cluster the first time) and wait until it accepts connections."""
        if not (self.data / "PG_VERSION").exists():
            self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                      "-E", "UTF8", "--no-sync")  # fmt: skip
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.dir / "log"),
                  "-w", "start")  # fmt: skip
        return self

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: `fast` (clients disconnected) or `immediate` (as a crash would)."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def url(self, database: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def close(self) -> None:
        if (self.data / "postmaster.pid").exists():
            with contextlib.suppress(subprocess.CalledProcessError):
                self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)


def wait_until(condition: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"not within {timeout} s: {what}")
