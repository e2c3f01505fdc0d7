"""GPU worker status: a heartbeat in Redis every few seconds, read by the reaper and the dashboard.

A worker is alive while its key exists. The key expires HEARTBEAT_TTL_S after the last beat, so a worker that
is killed (kill -9, power loss) disappears within that time and the reaper interrupts its messages.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import redis
from django.conf import settings
from django.db.models import Q

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


def _key(name: str) -> str:
    return f"{settings.GPTOSS_REDIS_PREFIX}:worker:{name}"


def _seen_key() -> str:
    # Every worker's last status, kept after its heartbeat expires, so the dashboard can show it as down.
    return f"{settings.GPTOSS_REDIS_PREFIX}:workers-seen"


SEEN_FOR_S = 24 * 3600


def workers_seen() -> list[WorkerStatus]:
    """Return the last status of every worker that beat within SEEN_FOR_S, alive or not."""
    client = redis_client()
    seen = []
    stale = []
    for name, raw in client.hgetall(_seen_key()).items():
        status = WorkerStatus(**json.loads(raw))
        if time.time() - status.updated_at > SEEN_FOR_S:
            stale.append(name)
        else:
            seen.append(status)
    if stale:
        client.hdel(_seen_key(), *stale)
    return sorted(seen, key=lambda w: (w.model, w.name))


def worker_alive(name: str) -> bool:
    """Return whether the worker *name* sent a heartbeat within HEARTBEAT_TTL_S."""
    return bool(name) and bool(redis_client().exists(_key(name)))


def worker_get(name: str) -> WorkerStatus | None:
    """Return the last status of the worker *name*, or None when its heartbeat expired."""
    raw = redis_client().get(_key(name)) if name else None
    return WorkerStatus(**json.loads(raw)) if raw else None


def workers_list() -> list[WorkerStatus]:
    """Return the status of every live worker, by model then name."""
    client = redis_client()
    keys = sorted(client.scan_iter(match=_key("*"), count=500))
    workers = []
    for raw in client.mget(keys) if keys else []:
        if raw:
            workers.append(WorkerStatus(**json.loads(raw)))
    return sorted(workers, key=lambda w: (w.model, w.name))


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
            pipe.set(_key(self.status.name), payload, ex=HEARTBEAT_TTL_S)
            pipe.hset(_seen_key(), self.status.name, payload)
            pipe.execute()
        except redis.RedisError as error:
            logger.warning("heartbeat of %s not sent: %s", self.status.name, error)
        except Exception:
            logger.exception("heartbeat of %s failed", self.status.name)

    def stop(self) -> None:
        """Stop beating and remove the key: the worker left on purpose."""
        self._stop.set()
        with contextlib.suppress(redis.RedisError):
            redis_client().delete(_key(self.status.name))

    def _run(self) -> None:
        while not self._stop.wait(HEARTBEAT_EVERY_S):
            self.beat()


class Reaper:
    """Leave no reply stranded: each `streaming` reply is being generated, each `queued` one has a task.

    - The replies of a worker that stopped beating become `interrupted`, keeping their text.
    - A reply `streaming` on a live worker whose heartbeat does not list it (its task ended without storing
      it, or the worker restarted under the same name) becomes `interrupted` the same way.
    - When a model has more queued replies than tasks waiting in its queue (tasks lost with Redis, or
      dropped), the missing tasks are sent again. A task claims the oldest queued reply of its model, so
      order is the database's and a surplus task finds nothing to do.

    Each condition must hold for a while of the reaper's own observation (a Redis restart loses every
    heartbeat until the next beat; a task just claimed is listed at the worker's next beat; a reply just
    queued has its task sent on commit), so a transient state interrupts or re-sends nothing.
    """

    MISSING_FOR_S = 3 * HEARTBEAT_EVERY_S
    QUEUED_GRACE_S = 5 * HEARTBEAT_EVERY_S
    REASON = "The GPU worker stopped while writing this answer. The text so far is kept; press Retry."
    LOST_REASON = "The GPU worker lost this answer. The text so far is kept; press Retry."

    def __init__(self) -> None:
        self._missing_since: dict[str, float] = {}
        self._unlisted_since: dict[int, float] = {}
        self._short_since: dict[str, float] = {}
        self._watching = False

    def run_once(self) -> int:
        """Check every streaming and queued reply once; return how many were interrupted.

        A reply stopped while streaming holds its tokens against the quota until its worker counts them; if
        that worker is gone, the reservation is released here, or it would be held for ever.
        """
        from chat import services
        from chat.models import Message
        from inference import serving

        if self._redis_lost_its_data():
            self.requeue()

        now = time.monotonic()
        uncounted = Q(status=Message.Status.CANCELLED, reserved_tokens__gt=0, started_at__isnull=False)
        query = Message.objects.filter(Q(status=Message.Status.STREAMING) | uncounted)
        watched = list(query.only("pk", "worker", "status"))
        statuses = {name: worker_get(name) for name in {m.worker for m in watched}}
        missing = {name for name, status in statuses.items() if status is None}
        for name in missing:
            self._missing_since.setdefault(name, now)
        self._missing_since = {n: t for n, t in self._missing_since.items() if n in missing}
        unlisted = set()
        for message in watched:
            status = statuses[message.worker]
            if message.status != Message.Status.STREAMING or status is None or status.replies is None:
                continue
            if message.pk not in status.replies:
                unlisted.add(message.pk)
                self._unlisted_since.setdefault(message.pk, now)
        self._unlisted_since = {m: t for m, t in self._unlisted_since.items() if m in unlisted}
        interrupted = 0
        for message in watched:
            since = self._missing_since.get(message.worker)
            gone = since is not None and now - since >= self.MISSING_FOR_S
            if message.status != Message.Status.STREAMING:
                if gone:
                    services.generation_release(message=message)
                continue
            lost_since = self._unlisted_since.get(message.pk)
            if gone:
                interrupted += services.generation_interrupt(message=message, reason=self.REASON)
            elif lost_since is not None and now - lost_since >= self.MISSING_FOR_S:
                logger.warning(
                    "reply %s is streaming on %s, which no longer has it", message.pk, message.worker
                )
                interrupted += services.generation_interrupt(message=message, reason=self.LOST_REASON)
        self._resend_missing_tasks(now)
        serving.unserved_check()  # queued replies: is any worker serving their model?
        return interrupted

    def _resend_missing_tasks(self, now: float) -> int:
        """Send again the tasks a model has been short of for QUEUED_GRACE_S; return how many were sent."""
        sent = 0
        short = tasks_missing()
        self._short_since = {m: t for m, t in self._short_since.items() if m in short}
        for model_name, message_ids in short.items():
            since = self._short_since.setdefault(model_name, now)
            if now - since >= self.QUEUED_GRACE_S:
                sent += _send_again(model_name, message_ids)
                del self._short_since[model_name]
        if sent:
            logger.warning("%d queued replies had no task: sent to their workers again", sent)
        return sent

    def _redis_lost_its_data(self) -> bool:
        """Return True once after Redis restarted empty (its queued tasks are gone with it)."""
        created = redis_client().set(f"{settings.GPTOSS_REDIS_PREFIX}:reaper:watching", "1", nx=True)
        lost = bool(created) and self._watching
        self._watching = True
        return lost

    @staticmethod
    def requeue() -> int:
        """Send a task for every queued reply that has none in its model's queue (after Redis lost them)."""
        count = sum(_send_again(model, message_ids) for model, message_ids in tasks_missing().items())
        if count:
            logger.warning("Redis restarted empty: %d queued replies sent to their workers again", count)
        return count


def tasks_missing() -> dict[str, list[int]]:
    """Return, per model that has fewer tasks waiting in its queue than queued replies, the newest replies
    beyond that count (the tasks to send again; which reply a task names does not matter, see Reaper)."""
    from chat.models import Message
    from inference.dispatch import tasks_waiting

    queued = Message.objects.filter(status=Message.Status.QUEUED, role=Message.Role.ASSISTANT)
    by_model: dict[str, list[int]] = {}
    for message_id, model_name in queued.order_by("created_at", "id").values_list("pk", "model_name"):
        by_model.setdefault(model_name, []).append(message_id)
    missing = {}
    for model_name, message_ids in by_model.items():
        waiting = tasks_waiting(model_name=model_name)
        if waiting < len(message_ids):
            missing[model_name] = message_ids[waiting:]
    return missing


def _send_again(model_name: str, message_ids: list[int]) -> int:
    from inference.dispatch import enqueue_reply

    for message_id in message_ids:
        enqueue_reply(message_id=message_id, model_name=model_name)
    return len(message_ids)
