"""The Celery application: GPU workers consume one queue per model."""

from __future__ import annotations

import logging
import os
from typing import Any

from celery import Celery, bootsteps
from django.conf import settings

from gptoss_web.env import configuration_errors_exit

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gptoss_web.settings")

logger = logging.getLogger(__name__)

app = Celery("gptoss_web")


@app.on_configure.connect
def _read_settings(**_: object) -> None:
    """Read Django's settings when Celery first needs its configuration (the worker: while parsing its
    command line), so that a bad variable stops it with one line instead of Celery's whole traceback."""
    with configuration_errors_exit():
        settings.INSTALLED_APPS  # noqa: B018


app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


class QueueGate(bootsteps.StartStopStep):
    """Stop consuming the task queues while the worker cannot reach PostgreSQL or Redis; resume when back.

    Tasks then wait in Redis for a worker that can run them, instead of being taken and failed. The check
    runs on the consumer's own event loop (Celery's queue changes are not thread-safe); the worker's
    DependencyWatch thread (inference/worker.py) does the slow probing.
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
        from inference.worker import gate_changed, taking_tasks

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


app.steps["consumer"].add(QueueGate)
