"""The Celery application: the web process sends reply tasks through it; GPU workers consume one queue per
model."""

from __future__ import annotations

import logging
import os

from celery import Celery
from django.conf import settings

from gptoss_web.env import configuration_errors_exit

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gptoss_web.settings")

logger = logging.getLogger(__name__)

# Tasks a GPU worker thread runs on one PostgreSQL connection (`_reuse_database_connections`).
DB_REUSE_MAX = 100

# The worker side is named by string, so that only a worker imports it (the web process, which sends tasks by
# name through this same app, never does): the reply task, and the consumer step that stops taking tasks while
# PostgreSQL or Redis is unreachable.
app = Celery("gptoss_web", include=["inference.worker.tasks"])
app.steps["consumer"].add("inference.worker.gate:QueueGate")


@app.on_configure.connect
def _read_settings(**_: object) -> None:
    """Read Django's settings when Celery first needs its configuration (the worker: while parsing its
    command line), so that a bad variable stops it with one line instead of Celery's whole traceback."""
    with configuration_errors_exit():
        settings.INSTALLED_APPS  # noqa: B018


app.config_from_object("django.conf:settings", namespace="CELERY")


@app.on_after_configure.connect
def _reuse_database_connections(sender: Celery, **_: object) -> None:
    """Keep a task thread's PostgreSQL connection from one task to the next.

    Celery's Django fixup otherwise closes it before and after every task, so each reply's claim would open a
    new connection (a PostgreSQL backend started on the way to the first token: tens of milliseconds on a
    busy server). It still closes them after every 100 tasks; a connection PostgreSQL dropped meanwhile fails
    its next query, which the task's own retries replace (inference.worker.tasks._until_database).
    """
    sender.conf["CELERY_DB_REUSE_MAX"] = DB_REUSE_MAX
