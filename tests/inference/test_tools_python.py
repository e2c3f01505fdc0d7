"""The Python sandbox: code that tries to escape, starve or flood the worker fails; the worker lives on."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from inference.tools import python as sandbox
from inference.tools.python import SandboxLimits, SandboxUnavailable, python_run

ROOT = Path(__file__).resolve().parents[2]
LIMITS = SandboxLimits(wall_seconds=5, cpu_seconds=2, memory_bytes=256 * 1024 * 1024, processes=16)
CANARY = "canary-secret-5f1d2c"


@pytest.fixture
def canary_env(monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("GPTOSS_TEST_CANARY", CANARY)
    return CANARY


@pytest.fixture
def listener() -> Iterator[tuple[int, list[object]]]:
    """A TCP listener on the worker's 127.0.0.1 that counts the connections it accepts."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.2)
    accepted: list[object] = []
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            accepted.append(conn)
            conn.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield server.getsockname()[1], accepted
    stop.set()
    thread.join()
    server.close()


def test_code_runs_and_its_output_comes_back() -> None:
    run = python_run("print(6*7)\nimport sys; print('oops', file=sys.stderr)", limits=LIMITS)
    assert (run.output, run.exit_code, run.timed_out, run.truncated) == ("42\noops\n", 0, False, False)


def test_the_network_is_unreachable_even_the_workers_loopback(listener: tuple[int, list[object]]) -> None:
    port, accepted = listener
    code = f"""
import os
import socket
for attempt in (lambda: socket.create_connection(("127.0.0.1", {port}), timeout=2),
                lambda: socket.getaddrinfo("example.com", 80),
                lambda: socket.getaddrinfo("localhost.localdomain", 80)):
    try:
        attempt(); print("REACHED")
    except OSError as error:
        print("refused", type(error).__name__)
"""
    run = python_run(code, limits=LIMITS)
    assert "REACHED" not in run.output and run.output.count("refused") == 3, run.output
    assert accepted == []


def test_no_secret_of_the_worker_is_visible(canary_env: str, tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text(CANARY)
    code = f"""
import glob, os
print(dict(os.environ))
for path in glob.glob("/proc/*/environ") + glob.glob("/proc/*/cmdline"):
    try: print(path, open(path, "rb").read())
    except OSError as error: print(path, error)
for path in ({str(tmp_path / "secret.txt")!r}, {str(ROOT / "gptoss_web" / "settings.py")!r}, "/etc/passwd"):
    try: print(open(path).read())
    except OSError as error: print("cannot read", path, type(error).__name__)
print(sorted(os.listdir("/")))
"""
    run = python_run(code, limits=LIMITS)
    assert run.exit_code == 0, run.output
    assert CANARY not in run.output
    assert "/proc/1/environ b''" in run.output  # bubblewrap's init was started with an empty environment
    assert "SECRET_KEY" not in run.output and "DATABASE_URL" not in run.output
    assert run.output.count("cannot read") == 3
    assert "['bin', 'code', 'dev', 'lib', 'lib64', 'proc', 'sbin', 'tmp', 'usr']" in run.output


def test_writing_outside_the_private_tmp_fails() -> None:
    code = """
for path in ("/x", "/usr/x", "/usr/lib/x", "/dev/x", "/code/main.py", "/proc/x"):
    try:
        open(path, "w").write("x"); print("WROTE", path)
    except OSError as error:
        print("refused", path)
open("here.txt", "w").write("fine"); print(open("/tmp/work/here.txt").read())
"""
    run = python_run(code, limits=LIMITS)
    assert "WROTE" not in run.output and run.output.count("refused") == 6, run.output
    assert run.output.endswith("fine\n")


def test_one_run_never_sees_another_runs_files() -> None:
    first = python_run(
        "open('/tmp/work/mine.txt', 'w').write('x'); import os; print(os.listdir('.'))", limits=LIMITS
    )
    assert first.output == "['mine.txt']\n"
    second = python_run("import os; print(os.listdir('/tmp'), os.listdir('.'))", limits=LIMITS)
    assert second.output == "['work'] []\n"


def test_a_fork_bomb_hits_the_process_limit_and_the_worker_survives() -> None:
    code = """
import os, time
children = 0
try:
    while True:
        if os.fork() == 0:
            time.sleep(30); os._exit(0)
        children += 1
except OSError as error:
    print("stopped after", children, "children:", error.strerror)
"""
    started = time.monotonic()
    run = python_run(code, limits=LIMITS)
    assert "stopped after" in run.output, run.output
    assert int(run.output.split()[2]) < LIMITS.processes
    assert time.monotonic() - started < LIMITS.wall_seconds + 3
    assert python_run("print('still here')", limits=LIMITS).output == "still here\n"


def test_allocating_past_the_memory_limit_fails() -> None:
    run = python_run("x = bytearray(1024 * 1024 * 1024)\nprint('ALLOCATED')", limits=LIMITS)
    assert "MemoryError" in run.output and "ALLOCATED" not in run.output
    assert run.exit_code != 0


def test_a_busy_loop_is_stopped_by_the_cpu_limit() -> None:
    started = time.monotonic()
    run = python_run("while True: pass", limits=LIMITS)
    assert run.exit_code is not None and run.exit_code < 0  # SIGXCPU/SIGKILL at LIMITS.cpu_seconds
    assert time.monotonic() - started < LIMITS.wall_seconds


def test_sleeping_past_the_wall_clock_limit_is_stopped() -> None:
    started = time.monotonic()
    run = python_run("import time\nprint('start', flush=True)\ntime.sleep(60)", limits=LIMITS)
    assert run.timed_out and run.exit_code is None and run.output == "start\n"
    assert LIMITS.wall_seconds <= time.monotonic() - started < LIMITS.wall_seconds + 3


def test_printing_100_mb_is_cut_at_the_output_limit() -> None:
    started = time.monotonic()
    run = python_run("import sys\nfor _ in range(100): sys.stdout.write('x' * 1024 * 1024)", limits=LIMITS)
    assert run.truncated
    assert run.output.startswith("x" * 1000)
    assert run.output.endswith(f"[output truncated: the code printed more than {LIMITS.output_bytes} bytes]")
    assert len(run.output) < LIMITS.output_bytes + 200
    assert time.monotonic() - started < 5


def test_without_bubblewrap_the_code_is_not_run(monkeypatch: pytest.MonkeyPatch) -> None:
    real_which = sandbox.shutil.which
    monkeypatch.setattr(
        sandbox.shutil,
        "which",
        lambda name, path=None: None if name == "bwrap" else real_which(name, path=path),
    )
    with pytest.raises(SandboxUnavailable, match="bubblewrap"):
        python_run("print(1)", limits=LIMITS)


def test_a_sandbox_that_fails_to_start_runs_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    real_which = sandbox.shutil.which
    # A bubblewrap that cannot set up its namespaces exits before starting anything.
    monkeypatch.setattr(
        sandbox.shutil,
        "which",
        lambda name, path=None: "/bin/false" if name == "bwrap" else real_which(name, path=path),
    )
    with pytest.raises(SandboxUnavailable, match="could not start"):
        python_run(f"open({str(marker)!r}, 'w')", limits=LIMITS)
    assert not marker.exists()


def test_the_sandbox_dies_with_the_worker(tmp_path: Path) -> None:
    """A worker killed mid-run leaves no sandboxed process behind."""
    import subprocess
    import sys

    import psutil

    code = "import time\nprint('started', flush=True)\ntime.sleep(60)"
    script = (
        "from inference.tools.python import SandboxLimits, python_run\n"
        f"python_run({code!r}, limits=SandboxLimits(wall_seconds=60))\n"
    )
    worker = subprocess.Popen(
        [sys.executable, "-c", script], cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": os.environ["PATH"]}
    )

    def sandboxed() -> list[psutil.Process]:
        found = []
        for process in psutil.process_iter(["cmdline"]):
            if "/code/main.py" in (process.info["cmdline"] or []):
                found.append(process)
        return found

    deadline = time.monotonic() + 10
    while not sandboxed() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sandboxed(), "the sandbox never started"
    worker.kill()
    worker.wait()
    deadline = time.monotonic() + 5
    while sandboxed() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert sandboxed() == []
