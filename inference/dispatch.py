"""Hand a queued reply to the GPU workers: one shared Celery queue per model, and one own queue per worker for
a conversation's next turn sent where its cache is (docs/architecture.md, "Routing")."""

from __future__ import annotations

import logging
import time

import redis
from django.conf import settings

from gptoss_web.celery import app
from inference.selectors import model_queue
from inference.status import (
    HEARTBEAT_TTL_S,
    RouteOffer,
    offers_key,
    offers_list,
    redis_client,
    route_choose,
)

logger = logging.getLogger(__name__)

GENERATE_TASK = "inference.tasks.generate_reply_task"


def enqueue_reply(*, message_id: int, model_name: str, cache_key: str = "") -> None:
    """Send the task for reply *message_id* (called on commit): to the own queue of the worker that keeps
    the conversation's cache (*cache_key*) when it has a free slot, else to the model's shared queue."""
    shared = model_queue(model_name)
    target = None
    if cache_key and settings.GPTOSS_ROUTING:
        try:
            target = route_target(model_name=model_name, shared=shared, cache_key=cache_key)
        except (redis.RedisError, ValueError, TypeError) as error:  # routing is a hint: never lose the task
            logger.warning("reply %s: no routing (%s); sent to %s", message_id, error, shared)
    if target is None:
        result = app.send_task(GENERATE_TASK, args=[message_id], queue=shared)
        logger.info("reply %s enqueued on %s as task %s", message_id, shared, result.id)
        return
    result = app.send_task(GENERATE_TASK, args=[message_id], kwargs={"routed": True}, queue=target.queue)
    logger.info("reply %s routed to %s (its cache) as task %s", message_id, target.name, result.id)


def route_target(*, model_name: str, shared: str, cache_key: str) -> RouteOffer | None:
    """Read the workers' offers and the queues' lengths from Redis; return the worker to route to, if any."""
    prefix = _queue_prefix()
    offers = [o for o in offers_list(model_name) if cache_key in o.cached]
    pipe = redis_client().pipeline()
    pipe.llen(f"{prefix}{shared}")
    for offer in offers:
        pipe.llen(f"{prefix}{offer.queue}")
    shared_waiting, *waiting = pipe.execute()
    for offer, count in zip(offers, waiting, strict=True):
        offer.waiting = int(count)
    return route_choose(offers, cache_key=cache_key, shared_waiting=int(shared_waiting), now=time.time())


def _queue_prefix() -> str:
    return str(settings.CELERY_BROKER_TRANSPORT_OPTIONS["global_keyprefix"])


def tasks_waiting(*, model_name: str) -> int:
    """Return how many tasks of *model_name* wait in Redis, not yet taken by a worker: in its shared queue and
    in the own queues of its live workers.

    The own queue of a worker whose offer is older than HEARTBEAT_TTL_S (it died) is deleted, uncounted: the
    reaper then sends its replies' tasks again to the shared queue.
    """
    prefix = _queue_prefix()
    client = redis_client()
    waiting = int(client.llen(f"{prefix}{model_queue(model_name)}"))
    now = time.time()
    for offer in offers_list(model_name):
        if now - offer.updated_at <= HEARTBEAT_TTL_S:
            waiting += int(client.llen(f"{prefix}{offer.queue}"))
            continue
        dropped = client.delete(f"{prefix}{offer.queue}")
        client.hdel(offers_key(model_name), offer.name)
        logger.warning("worker %s is gone: its own queue dropped (%d); its replies go to the shared queue",
                       offer.name, dropped)  # fmt: skip
    return waiting
