"""The Celery consumer step that stops taking tasks while this worker cannot reach PostgreSQL or Redis."""

from __future__ import annotations

import logging
from typing import Any

from celery import bootsteps

from inference.worker.process import gate_changed, taking_tasks

logger = logging.getLogger(__name__)


class QueueGate(bootsteps.StartStopStep):
    """Stop consuming the task queues while the worker cannot reach PostgreSQL or Redis; resume when back.

    Tasks then wait in Redis for a worker that can run them, instead of being taken and failed. The check
    runs on the consumer's own event loop (Celery's queue changes are not thread-safe); the worker's
    DependencyWatch thread (inference/worker/process.py) does the slow probing.
    """

    requires = ("celery.worker.consumer.tasks:Tasks",)
    paused: list[str] = []  # kept across consumer restarts (a lost broker connection restarts the consumer)

    def __init__(self, parent: Any, **kwargs: Any) -> None:
        super().__init__(parent, **kwargs)
        self._timer: Any = None

    def start(self, c: Any) -> None:
        self._timer = c.timer.call_repeatedly(1.0, self.apply, (c,), priority=10)

    def stop(self, c: Any) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    shutdown = stop

    def apply(self, c: Any) -> None:
        if c.task_consumer is None:
            return
        if not taking_tasks() and not self.paused:
            QueueGate.paused = [q.name for q in c.task_consumer.queues]
            for name in self.paused:
                c.cancel_task_queue(name)
            logger.warning("stopped taking tasks from %s", ", ".join(self.paused))
            gate_changed(closed=True)
        elif taking_tasks() and self.paused:
            for name in self.paused:
                c.add_task_queue(name)
            logger.warning("taking tasks again from %s", ", ".join(self.paused))
            QueueGate.paused = []
            gate_changed(closed=False)
