"""Hand a queued reply to the GPU workers: one Celery queue per model."""

from __future__ import annotations

import logging

from django.conf import settings

from gptoss_web.celery import app
from inference.selectors import model_queue
from inference.status import redis_client

logger = logging.getLogger(__name__)

GENERATE_TASK = "inference.tasks.generate_reply_task"


def enqueue_reply(*, message_id: int, model_name: str) -> None:
    """Send the task for reply *message_id* to its model's queue (called on commit)."""
    queue = model_queue(model_name)
    result = app.send_task(GENERATE_TASK, args=[message_id], queue=queue)
    logger.info("reply %s enqueued on %s as task %s", message_id, queue, result.id)


def tasks_waiting(*, model_name: str) -> int:
    """Return how many tasks wait in *model_name*'s queue in Redis (not yet taken by a worker)."""
    prefix = settings.CELERY_BROKER_TRANSPORT_OPTIONS["global_keyprefix"]
    return int(redis_client().llen(f"{prefix}{model_queue(model_name)}"))
