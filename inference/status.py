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
from dataclasses import asdict, dataclass, field
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


# ------------------------------------------------------------------------------------------------------------
# Routing: which worker keeps which conversation's cache (inference/dispatch.py reads it at enqueue time)
# ------------------------------------------------------------------------------------------------------------

# An offer older than this is not routed to: the worker missed two beats (it may be dead or stuck).
ROUTE_FRESH_S = 2 * HEARTBEAT_EVERY_S + 1


@dataclass
class RouteOffer:
    """What one GPU worker offers the dispatcher: its own queue, its free slots and the conversations whose
    cache it keeps. Written with every heartbeat and whenever a reply is claimed or finished."""

    name: str
    queue: str  # the worker's own queue, `<model queue>.w.<worker name>`
    free: int  # slots without a claimed reply (0 while the worker is not `ready`)
    cached: list[str] = field(default_factory=list)  # cache keys of idle slots that keep their KV
    updated_at: float = field(default_factory=time.time)
    waiting: int = 0  # tasks in its own queue, read by the dispatcher (not stored)


def conversation_cache_key(conversation_id: int) -> str:
    """Return the engine cache key of a chat conversation (the worker's plans and the dispatcher share it)."""
    return f"conversation:{conversation_id}"


def worker_queue(model_queue: str, worker: str) -> str:
    """Return the own queue of the worker called *worker* that serves *model_queue*."""
    return f"{model_queue}.w.{worker}"


def offers_key(model_name: str) -> str:
    return f"{settings.GPTOSS_REDIS_PREFIX}:routes:{model_name}"


def offer_write(model_name: str, offer: RouteOffer) -> None:
    """Store *offer* among its model's offers (the hash expires with the last worker's heartbeat)."""
    payload = asdict(offer)
    del payload["waiting"]
    pipe = redis_client().pipeline()
    pipe.hset(offers_key(model_name), offer.name, json.dumps(payload))
    pipe.expire(offers_key(model_name), HEARTBEAT_TTL_S)
    pipe.execute()


def offer_remove(model_name: str, name: str) -> None:
    redis_client().hdel(offers_key(model_name), name)


def offers_list(model_name: str) -> list[RouteOffer]:
    """Return every offer stored for *model_name*, fresh or not."""
    raw = redis_client().hgetall(offers_key(model_name))
    return [RouteOffer(**json.loads(value)) for value in raw.values()]


def route_choose(
    offers: list[RouteOffer], *, cache_key: str, shared_waiting: int, now: float
) -> RouteOffer | None:
    """Return the worker a reply with *cache_key* should go to, or None for the model's shared queue.

    The rules (docs/architecture.md, "Routing"): a reply goes to a worker's own queue only when no task
    waits in the shared queue (an older reply would otherwise be passed over), the worker's offer is fresh,
    it keeps the conversation's cache, and it has a slot that neither a claimed reply nor a task already in
    its own queue takes. Several such workers: the one with the most free slots. Else the shared queue,
    which any worker takes from: a reply never waits longer for its cache than it would in line.
    """
    if shared_waiting > 0 or not cache_key:
        return None
    holders = [
        offer
        for offer in offers
        if now - offer.updated_at <= ROUTE_FRESH_S
        and cache_key in offer.cached
        and offer.free - offer.waiting > 0
    ]
    return max(holders, key=lambda offer: offer.free - offer.waiting, default=None)
