"""The Celery application: GPU workers consume one queue per model."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gptoss_web.settings")

app = Celery("gptoss_web")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
