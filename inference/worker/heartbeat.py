"""This worker's heartbeat: its status written to Redis every few seconds (inference/status.py reads it)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict

import redis

from inference.status import (
    HEARTBEAT_EVERY_S,
    HEARTBEAT_TTL_S,
    WorkerStatus,
    redis_client,
    seen_key,
    worker_key,
)

logger = logging.getLogger(__name__)


def host_memory() -> tuple[int, int]:
    """Return (used, total) bytes of host RAM."""
    page = os.sysconf("SC_PAGE_SIZE")
    total = os.sysconf("SC_PHYS_PAGES") * page
    available = os.sysconf("SC_AVPHYS_PAGES") * page
    return total - available, total


class TokenMeter:
    """Count generated tokens; report tokens per second over a sliding window."""

    def __init__(self, window_s: float = 60.0) -> None:
        self.window_s = window_s
        self._samples: deque[tuple[float, int]] = deque()
        self._lock = threading.Lock()

    def add(self, tokens: int) -> None:
        with self._lock:
            self._samples.append((time.monotonic(), tokens))

    def rate(self) -> float:
        with self._lock:
            cutoff = time.monotonic() - self.window_s
            while self._samples and self._samples[0][0] < cutoff:
                self._samples.popleft()
            return sum(n for _, n in self._samples) / self.window_s


class Heartbeat:
    """A daemon thread that writes this worker's status to Redis every HEARTBEAT_EVERY_S seconds."""

    def __init__(self, status: WorkerStatus, sample: Callable[[WorkerStatus], None]) -> None:
        self.status = status
        self._sample = sample  # fills in the live figures before each beat
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="heartbeat", daemon=True)

    def start(self) -> Heartbeat:
        self.beat()
        self._thread.start()
        return self

    def beat(self) -> None:
        """Write the status now; a Redis outage is logged and retried at the next beat."""
        try:
            self._sample(self.status)
            self.status.updated_at = time.time()
            payload = json.dumps(asdict(self.status))
            pipe = redis_client().pipeline()
            pipe.set(worker_key(self.status.name), payload, ex=HEARTBEAT_TTL_S)
            pipe.hset(seen_key(), self.status.name, payload)
            pipe.execute()
        except redis.RedisError as error:
            logger.warning("heartbeat of %s not sent: %s", self.status.name, error)
        except Exception:
            logger.exception("heartbeat of %s failed", self.status.name)

    def stop(self) -> None:
        """Stop beating and remove the key: the worker left on purpose."""
        self._stop.set()
        with contextlib.suppress(redis.RedisError):
            redis_client().delete(worker_key(self.status.name))

    def _run(self) -> None:
        while not self._stop.wait(HEARTBEAT_EVERY_S):
            self.beat()
