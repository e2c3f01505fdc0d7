"""The Celery application: GPU workers consume one queue per model."""

from __future__ import annotations

import os

from celery import Celery
from django.conf import settings

from gptoss_web.env import configuration_errors_exit

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gptoss_web.settings")

app = Celery("gptoss_web")


@app.on_configure.connect
def _read_settings(**_: object) -> None:
    """Read Django's settings when Celery first needs its configuration (the worker: while parsing its
    command line), so that a bad variable stops it with one line instead of Celery's whole traceback."""
    with configuration_errors_exit():
        settings.INSTALLED_APPS  # noqa: B018


app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
