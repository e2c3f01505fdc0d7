"""GPU worker status records in Redis: each worker writes its own (inference/worker/heartbeat.py) every few
seconds; the reaper, the dashboard, /healthz and the queue notes read them.

A worker is alive while its key exists. The key expires HEARTBEAT_TTL_S after the last beat, so a worker that
is killed (kill -9, power loss) disappears within that time and the reaper interrupts its messages.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import redis
from django.conf import settings

logger = logging.getLogger(__name__)

HEARTBEAT_EVERY_S = 2.0
HEARTBEAT_TTL_S = 10


@dataclass
class WorkerStatus:
    """What one GPU worker last said about itself."""

    name: str
    model: str
    # loading | ready | waiting (PostgreSQL or Redis unreachable: takes no task until back; `error` says
    # which) | failed
    state: str
    slots_busy: int = 0
    slots_total: int = 0
    queue_depth: int = 0
    tokens_per_s_1m: float = 0.0
    gpu: dict[str, Any] | None = None
    ram_used: int = 0
    ram_total: int = 0
    error: str = ""
    started_at: float = field(default_factory=time.time)
    updated_at: float = field(default_factory=time.time)
    # The replies this worker has claimed and not yet stored as finished (generating, or waiting for the
    # database to store their end). None: a worker that does not say (the reaper then leaves its replies be).
    replies: list[int] | None = None


_client: redis.Redis | None = None
_client_lock = threading.Lock()


def redis_client() -> redis.Redis:
    """Return this process's Redis client (thread-safe, reconnects by itself after Redis restarts)."""
    global _client
    with _client_lock:
        if _client is None:
            _client = redis.Redis.from_url(
                settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2, health_check_interval=10
            )
        return _client


def worker_key(name: str) -> str:
    return f"{settings.GPTOSS_REDIS_PREFIX}:worker:{name}"


def seen_key() -> str:
    # Every worker's last status, kept after its heartbeat expires, so the dashboard can show it as down.
    return f"{settings.GPTOSS_REDIS_PREFIX}:workers-seen"


SEEN_FOR_S = 24 * 3600


def workers_seen() -> list[WorkerStatus]:
    """Return the last status of every worker that beat within SEEN_FOR_S, alive or not."""
    client = redis_client()
    seen = []
    stale = []
    for name, raw in client.hgetall(seen_key()).items():
        status = WorkerStatus(**json.loads(raw))
        if time.time() - status.updated_at > SEEN_FOR_S:
            stale.append(name)
        else:
            seen.append(status)
    if stale:
        client.hdel(seen_key(), *stale)
    return sorted(seen, key=lambda w: (w.model, w.name))


def worker_alive(name: str) -> bool:
    """Return whether the worker *name* sent a heartbeat within HEARTBEAT_TTL_S."""
    return bool(name) and bool(redis_client().exists(worker_key(name)))


def worker_get(name: str) -> WorkerStatus | None:
    """Return the last status of the worker *name*, or None when its heartbeat expired."""
    raw = redis_client().get(worker_key(name)) if name else None
    return WorkerStatus(**json.loads(raw)) if raw else None


def workers_list() -> list[WorkerStatus]:
    """Return the status of every live worker, by model then name."""
    client = redis_client()
    keys = sorted(client.scan_iter(match=worker_key("*"), count=500))
    workers = []
    for raw in client.mget(keys) if keys else []:
        if raw:
            workers.append(WorkerStatus(**json.loads(raw)))
    return sorted(workers, key=lambda w: (w.model, w.name))
