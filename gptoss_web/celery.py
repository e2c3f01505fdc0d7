"""The Celery application: GPU workers consume one queue per model."""

from __future__ import annotations

import os

from celery import Celery
from django.conf import settings

from gptoss_web.env import configuration_errors_exit

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gptoss_web.settings")
# Read the settings now: Celery would read them lazily, deep in its command-line parsing, and print the
# whole traceback in front of the variable to fix.
with configuration_errors_exit():
    settings.INSTALLED_APPS  # noqa: B018

app = Celery("gptoss_web")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
