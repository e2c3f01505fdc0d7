"""Settings for the test suite and the linters: the real local PostgreSQL and Redis, private key prefixes."""

from __future__ import annotations

import os
import uuid

os.environ.setdefault("DJANGO_SECRET_KEY", "test-only-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz")
# Every test run has its own database (pytest-django creates and drops test_gptoss_<run>) and its own Redis
# prefix (removed at the end by tests/conftest.py): two checkouts can test on one server at once.
RUN_ID = uuid.uuid4().hex[:12]
os.environ.setdefault("DATABASE_URL", f"postgres://postgres@127.0.0.1:5432/gptoss_{RUN_ID}")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/0")
os.environ.setdefault("GPTOSS_REDIS_PREFIX", f"gptoss-test-{RUN_ID}")
os.environ.setdefault("GPTOSS_MODEL", "tiny")

from gptoss_web.settings import *  # noqa: E402, F403
from gptoss_web.settings import STORAGES  # noqa: E402

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
STORAGES = {**STORAGES, "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
STATIC_ROOT.mkdir(parents=True, exist_ok=True)  # noqa: F405  (whitenoise warns about a missing folder)
