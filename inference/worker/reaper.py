"""The reaper process (`manage.py reaper`): leaves no reply stranded by a worker that stopped or lost it."""

from __future__ import annotations

import logging
import time

from django.conf import settings
from django.db.models import Q

from chat.models import Message
from chat.services import api_requests, replies
from inference import serving
from inference.dispatch import enqueue_reply, tasks_waiting
from inference.status import HEARTBEAT_EVERY_S, redis_client, worker_get

logger = logging.getLogger(__name__)


class Reaper:
    """Leave no reply stranded: each `streaming` reply is being generated, each `queued` one has a task.

    - The replies of a worker that stopped beating become `interrupted`, keeping their text.
    - A reply `streaming` on a live worker whose heartbeat does not list it (its task ended without storing
      it, or the worker restarted under the same name) becomes `interrupted` the same way.
    - When a model has more queued replies than tasks waiting in its queues (its shared queue and the own
      queues of its live workers: tasks lost with Redis, dropped, or routed to a worker that died), the
      missing tasks are sent again, to the shared queue. A task claims the oldest queued reply of its model,
      so order is the database's and a surplus task finds nothing to do.

    Each condition must hold for a while of the reaper's own observation (a Redis restart loses every
    heartbeat until the next beat; a task just claimed is listed at the worker's next beat; a reply just
    queued has its task sent on commit), so a transient state interrupts or re-sends nothing.
    """

    MISSING_FOR_S = 3 * HEARTBEAT_EVERY_S
    QUEUED_GRACE_S = 5 * HEARTBEAT_EVERY_S
    REASON = "The GPU worker stopped while writing this reply. The text so far is kept; press Retry."
    LOST_REASON = "The GPU worker lost this reply. The text so far is kept; press Retry."

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
                    replies.reply_release(message=message)
                continue
            lost_since = self._unlisted_since.get(message.pk)
            if gone:
                interrupted += replies.reply_interrupt(message=message, reason=self.REASON)
            elif lost_since is not None and now - lost_since >= self.MISSING_FOR_S:
                logger.warning(
                    "reply %s is streaming on %s, which no longer has it", message.pk, message.worker
                )
                interrupted += replies.reply_interrupt(message=message, reason=self.LOST_REASON)
        self._resend_missing_tasks(now)
        serving.unserved_check()  # queued replies: is any worker serving their model?
        api_requests.api_conversations_sweep()  # API replies whose client left before they ended
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
    for message_id in message_ids:
        enqueue_reply(message_id=message_id, model_name=model_name)
    return len(message_ids)
