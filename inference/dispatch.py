"""Hand a queued reply to the GPU workers: one Celery queue per model."""

from __future__ import annotations

import logging
import re

from gptoss_web.celery import app

logger = logging.getLogger(__name__)

GENERATE_TASK = "inference.tasks.generate_reply_task"


def queue_for_model(model_name: str) -> str:
    """Return the Celery queue whose workers serve *model_name*."""
    return "gpu." + re.sub(r"[^A-Za-z0-9_.-]", "-", model_name)


def queue_for_reply(model_name: str) -> str:
    """Return the queue set for *model_name* in the model registry, else `queue_for_model`'s."""
    from inference.selectors import served_model_get

    row = served_model_get(name=model_name)
    return row.queue_name() if row is not None else queue_for_model(model_name)


def enqueue_reply(*, message_id: int, model_name: str) -> None:
    """Send the generation task for *message_id* to its model's queue (called on commit)."""
    queue = queue_for_reply(model_name)
    result = app.send_task(GENERATE_TASK, args=[message_id], queue=queue)
    logger.info("reply %s enqueued on %s as task %s", message_id, queue, result.id)


def tasks_waiting(*, model_name: str) -> int:
    """Return how many tasks wait in *model_name*'s queue in Redis (not yet taken by a worker)."""
    from django.conf import settings

    from inference.status import redis_client

    prefix = settings.CELERY_BROKER_TRANSPORT_OPTIONS["global_keyprefix"]
    return int(redis_client().llen(f"{prefix}{queue_for_reply(model_name)}"))
