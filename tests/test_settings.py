"""Configuration: production settings pass Django's deploy checks, bad variables stop start-up clearly."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION = {
    "DJANGO_SETTINGS_MODULE": "gptoss_web.settings",
    "DJANGO_SECRET_KEY": "k3Jx9-production-like-secret-key-with-plenty-of-entropy-0a1b2c3d4e5f",
    "DJANGO_DEBUG": "false",
    "DJANGO_HTTPS": "true",
    "DJANGO_ALLOWED_HOSTS": "chat.example.internal",
    "DJANGO_CSRF_TRUSTED_ORIGINS": "https://chat.example.internal",
    "DATABASE_URL": "postgres://gptoss:secret@127.0.0.1:5432/gptoss",
    "REDIS_URL": "redis://127.0.0.1:6379/0",
}


def manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "GPTOSS_", "DATABASE_", "REDIS_"))
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_production_settings_pass_the_deploy_checks() -> None:
    result = manage("check", "--deploy", "--fail-level", "WARNING", env=PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr


def test_models_and_migrations_agree() -> None:
    result = manage("makemigrations", "--check", "--dry-run", env=PRODUCTION)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"DJANGO_SECRET_KEY": ""}, "Set the environment variable DJANGO_SECRET_KEY, for example"),
        (
            {"DATABASE_URL": ""},
            "Set the environment variable DATABASE_URL, for example DATABASE_URL=postgres://",
        ),
        ({"DATABASE_URL": "mysql://x@y/z"}, "DATABASE_URL must be a postgres:// URL"),
        ({"REDIS_URL": "127.0.0.1:6379"}, "REDIS_URL must be a redis:// URL, for example REDIS_URL=redis://"),
        ({"DJANGO_DEBUG": "maybe"}, "DJANGO_DEBUG='maybe' is not a boolean; use DJANGO_DEBUG=true"),
        ({"GPTOSS_MAX_IN_FLIGHT_PER_USER": "two"}, "GPTOSS_MAX_IN_FLIGHT_PER_USER='two' is not an integer"),
        ({"GPTOSS_MAX_IN_FLIGHT_PER_USER": "0"}, "GPTOSS_MAX_IN_FLIGHT_PER_USER=0 is out of range"),
        (
            {"GPTOSS_TRUSTED_PROXIES": "127.0.0.1,nginx"},
            "GPTOSS_TRUSTED_PROXIES lists 'nginx', which is not an IP address or network",
        ),
        ({"GPTOSS_TRUSTED_PROXIES": "10.0.0.1/24"}, "GPTOSS_TRUSTED_PROXIES lists '10.0.0.1/24'"),
        (
            {"GPTOSS_HEALTHZ_NETWORKS": "10.0.0.0/8,10.0.0.300"},
            "GPTOSS_HEALTHZ_NETWORKS lists '10.0.0.300', which is not an IP address or network",
        ),
        ({"GPTOSS_HEALTHZ_TOKEN": "short"}, "GPTOSS_HEALTHZ_TOKEN is too short: use at least 24"),
    ],
)
def test_missing_or_malformed_variables_stop_start_up_naming_the_variable(
    change: dict[str, str], message: str
) -> None:
    result = manage("check", env={**PRODUCTION, **change})
    assert result.returncode != 0
    assert message in result.stderr
