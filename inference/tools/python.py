"""Run the model's Python code in a bubblewrap sandbox: no network, no app files, no secrets, hard limits.

Each call is a fresh run. bubblewrap gives the code new user, PID, IPC, UTS, cgroup, network (loopback
only) and mount namespaces; the system directories are bound read-only and everything else the code can
see is a private, size-capped tmpfs. The sandbox starts with an empty environment (bubblewrap itself is
started with one too, so its init process exposes nothing in ``/proc/1/environ``). Resource limits
(address space, CPU seconds, processes, file size) are set with ``prlimit`` before bubblewrap starts;
when the worker runs as root it first drops to an unprivileged user of its own (``setpriv``), because
the kernel does not enforce the process limit for root. The wall clock and the output size are enforced
here, by killing the sandbox. Code never runs unsandboxed: if any of this cannot start, the call fails.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import select
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass

logger = logging.getLogger(__name__)

TRUNCATED_MARKER = "\n[output truncated: the code printed more than {limit} bytes]"
SANDBOX_TMP = "/tmp"  # noqa: S108  (inside the sandbox: its own private tmpfs)
SANDBOX_HOME = SANDBOX_TMP + "/work"
SANDBOX_UID_BASE = 1_900_000_000
"""Unprivileged uids used for sandboxes when the worker runs as root (never in /etc/passwd)."""


class SandboxUnavailable(RuntimeError):
    """The sandbox cannot be started, so the code is not run at all."""


@dataclass(frozen=True)
class SandboxLimits:
    """What one run may use."""

    wall_seconds: float = 10.0
    cpu_seconds: int = 10
    memory_bytes: int = 512 * 1024 * 1024
    processes: int = 32
    output_bytes: int = 64 * 1024
    file_bytes: int = 16 * 1024 * 1024
    tmpfs_bytes: int = 64 * 1024 * 1024


@dataclass(frozen=True)
class SandboxRun:
    """What came out of one run: stdout and stderr interleaved, as the code wrote them."""

    output: str
    exit_code: int | None
    timed_out: bool
    truncated: bool
    seconds: float


def _which(name: str) -> str:
    path = shutil.which(name, path="/usr/bin:/bin:/usr/sbin:/sbin")
    if path is None:
        raise SandboxUnavailable(
            f"The Python sandbox needs {name!r}, which is not installed (Debian: apt-get install "
            f"{'bubblewrap' if name == 'bwrap' else 'util-linux'}); the code was not run."
        )
    return path


def _interpreter() -> str:
    for candidate in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.access(candidate, os.X_OK):
            return candidate
    raise SandboxUnavailable("The Python sandbox needs the system python3 in /usr/bin; the code was not run.")


def sandbox_command(code_fd: int, info_fd: int, limits: SandboxLimits) -> list[str]:
    """Return the argv that runs the code read from *code_fd* inside the sandbox.

    bwrap writes a line to *info_fd* once the sandbox is set up; no line means it never started.
    """
    bwrap, prlimit = _which("bwrap"), _which("prlimit")
    command: list[str] = []
    if os.geteuid() == 0:
        uid = SANDBOX_UID_BASE + secrets.randbelow(1_000_000)
        command += [
            _which("setpriv"),
            f"--reuid={uid}",
            f"--regid={uid}",
            "--clear-groups",
            "--inh-caps=-all",
            "--",
        ]
    command += [
        prlimit,
        f"--as={limits.memory_bytes}",
        f"--cpu={limits.cpu_seconds}",
        f"--nproc={limits.processes}",
        f"--fsize={limits.file_bytes}",
        "--core=0",
        "--",
        bwrap,
        "--unshare-all",
        "--die-with-parent",
        "--new-session",
        "--clearenv",
        "--cap-drop", "ALL",
        "--hostname", "sandbox",
        "--ro-bind", "/usr", "/usr",
        "--symlink", "usr/lib", "/lib",
        "--symlink", "usr/lib64", "/lib64",
        "--symlink", "usr/bin", "/bin",
        "--symlink", "usr/sbin", "/sbin",
        "--proc", "/proc",
        "--dev", "/dev",
        "--remount-ro", "/dev",
        "--size", str(limits.tmpfs_bytes), "--tmpfs", SANDBOX_TMP,
        "--dir", SANDBOX_HOME,
        "--perms", "0444", "--ro-bind-data", str(code_fd), "/code/main.py",
        "--remount-ro", "/",
        "--info-fd", str(info_fd),
        "--chdir", SANDBOX_HOME,
        "--setenv", "HOME", SANDBOX_HOME,
        "--setenv", "PATH", "/usr/bin:/bin",
        "--setenv", "LANG", "C.UTF-8",
        "--setenv", "PYTHONDONTWRITEBYTECODE", "1",
        _interpreter(), "-I", "-u", "/code/main.py",
    ]  # fmt: skip
    return command


def _kill(process: subprocess.Popen[bytes]) -> None:
    # bwrap runs in its own session (start_new_session): the whole group goes, and the PID namespace
    # takes everything inside with it when its init dies.
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)


def python_run(code: str, *, limits: SandboxLimits) -> SandboxRun:
    """Run *code* in a fresh sandbox and return its output; raise SandboxUnavailable if it cannot start."""
    started = time.monotonic()
    read_fd, write_fd = os.pipe()
    info_read, info_write = os.pipe()
    data = code.encode("utf-8", "replace")
    try:
        command = sandbox_command(read_fd, info_write, limits)
        try:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                pass_fds=(read_fd, info_write),
                env={},  # bwrap's own init process must not carry the worker's environment
                cwd="/",
                start_new_session=True,
                close_fds=True,
            )
        except OSError as error:
            os.close(write_fd)
            os.close(info_read)
            raise SandboxUnavailable(
                f"The Python sandbox could not start ({error}); the code was not run."
            ) from error
    finally:
        os.close(read_fd)
        os.close(info_write)
    try:
        _write_all(write_fd, data)
    finally:
        os.close(write_fd)
    try:
        run = _collect(process, limits, started)
        os.set_blocking(info_read, False)
        try:
            info = os.read(info_read, 4096)
        except BlockingIOError:
            info = b""
    finally:
        os.close(info_read)
    if not info:
        logger.error("the Python sandbox did not start: %s", run.output[:500])
        detail = run.output.strip()[:300] or f"exit status {run.exit_code}"
        raise SandboxUnavailable(f"The Python sandbox could not start ({detail}); the code was not run.")
    return run


def _write_all(fd: int, data: bytes) -> None:
    # bwrap reads the whole code before it starts the interpreter; a full pipe only waits for it.
    view = memoryview(data)
    try:
        while view:
            written = os.write(fd, view[: 1 << 16])
            view = view[written:]
    except BrokenPipeError:
        pass


def _collect(process: subprocess.Popen[bytes], limits: SandboxLimits, started: float) -> SandboxRun:
    assert process.stdout is not None
    chunks: list[bytes] = []
    size = 0
    truncated = timed_out = False
    deadline = started + limits.wall_seconds
    fd = process.stdout.fileno()
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                break
            ready, _, _ = select.select([fd], [], [], min(left, 0.5))
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            room = limits.output_bytes - size
            chunks.append(chunk[:room])
            size += min(len(chunk), room)
            if len(chunk) > room:
                truncated = True
                break
    finally:
        if timed_out or truncated:
            _kill(process)
        try:
            exit_code: int | None = process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            _kill(process)
            exit_code = process.wait()
        process.stdout.close()
    output = b"".join(chunks).decode("utf-8", "replace")
    if truncated:
        output += TRUNCATED_MARKER.format(limit=limits.output_bytes)
    if timed_out:
        exit_code = None
    elif exit_code is not None and exit_code > 128:
        # bwrap reports a child killed by signal N (a CPU or memory limit) as 128 + N, as shells do.
        exit_code = 128 - exit_code
    return SandboxRun(
        output=output,
        exit_code=exit_code,
        timed_out=timed_out,
        truncated=truncated,
        seconds=time.monotonic() - started,
    )
