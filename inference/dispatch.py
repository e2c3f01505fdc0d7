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


def enqueue_reply(*, message_id: int, model_name: str) -> None:
    """Send the generation task for *message_id* to its model's queue (called on commit)."""
    result = app.send_task(GENERATE_TASK, args=[message_id], queue=queue_for_model(model_name))
    logger.info("reply %s enqueued on %s as task %s", message_id, queue_for_model(model_name), result.id)
