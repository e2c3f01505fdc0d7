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


def run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "GPTOSS_", "DATABASE_", "REDIS_"))
    }
    return subprocess.run(
        [sys.executable, *argv], cwd=ROOT, env={**clean, **env}, capture_output=True, text=True, timeout=120
    )


def _one_line_naming(result: subprocess.CompletedProcess[str], message: str) -> None:
    """Assert the process stopped with only the sentence to act on: no traceback, nothing else."""
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    assert result.stderr.strip().splitlines() == [f"Configuration error: {message}"], result.stderr


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"GPTOSS_SLOTS": "abc"}, "GPTOSS_SLOTS='abc' is not an integer, for example GPTOSS_SLOTS=4"),
        ({"GPTOSS_SLOTS": "0"}, "GPTOSS_SLOTS=0 is out of range: it must be between 1 and 256"),
        ({"GPTOSS_CONTEXT": "8k"}, "GPTOSS_CONTEXT='8k' is not an integer, for example GPTOSS_CONTEXT=8192"),
        ({"GPTOSS_CONTEXT": "100"}, "GPTOSS_CONTEXT=100 is out of range: it must be at least 512"),
        ({"GPTOSS_N_GPU_LAYERS": "all"}, "GPTOSS_N_GPU_LAYERS='all' is not an integer"),
        ({"GPTOSS_N_CPU_MOE": "-2"}, "GPTOSS_N_CPU_MOE=-2 is out of range: it must be at least 0"),
        ({"GPTOSS_CPU_MOE": "maybe"}, "GPTOSS_CPU_MOE='maybe' is not a boolean"),
        ({"GPTOSS_KV_TYPE": "q3_k"}, "GPTOSS_KV_TYPE='q3_k' is not one of f16, q8_0, q4_0"),
        ({"GPTOSS_N_UBATCH": "0"}, "GPTOSS_N_UBATCH=0 is out of range: it must be at least 1"),
        (
            {"GPTOSS_WINDOW_CHECKPOINT_MB": "-1"},
            "GPTOSS_WINDOW_CHECKPOINT_MB=-1 is out of range: it must be at",
        ),
        ({"GPTOSS_MAX_ANSWER_TOKENS": "lots"}, "GPTOSS_MAX_ANSWER_TOKENS='lots' is not an integer"),
        ({"GPTOSS_LOG_LEVEL": "loud"}, "GPTOSS_LOG_LEVEL='loud' is not one of DEBUG, INFO, WARNING"),
        ({"GPTOSS_PORT": "http"}, "GPTOSS_PORT='http' is not an integer, for example GPTOSS_PORT=8000"),
        # Read only by the GPU worker's shell command, and checked by every process all the same.
        ({"GPTOSS_QUEUE": "gpu.a,gpu.b"}, "GPTOSS_QUEUE='gpu.a,gpu.b' may hold only letters, digits"),
        # Combinations the engine cannot serve name the variables the operator set.
        (
            {"GPTOSS_CONTEXT": "100000000"},
            "GPTOSS_CONTEXT × GPTOSS_SLOTS = 400000000 KV cells is absurdly large: the limit is 16777216; "
            "lower GPTOSS_CONTEXT × GPTOSS_SLOTS",
        ),
        (
            {"GPTOSS_CPU_MOE": "true", "GPTOSS_N_CPU_MOE": "4"},
            "GPTOSS_CPU_MOE and GPTOSS_N_CPU_MOE are both set: GPTOSS_CPU_MOE already puts every expert",
        ),
        (
            {"GPTOSS_CONTEXT": "1024", "GPTOSS_MAX_ANSWER_TOKENS": "1024"},
            "GPTOSS_MAX_ANSWER_TOKENS=1024 must be below GPTOSS_CONTEXT=1024",
        ),
    ],
)
def test_every_engine_variable_is_checked_at_start_and_named_in_one_line(
    change: dict[str, str], message: str
) -> None:
    """The web side refuses GPTOSS_SLOTS=abc too, though only the GPU worker loads a model."""
    result = manage("check", env={**PRODUCTION, **change})
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr, result.stderr
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"Configuration error: {message}"), line


@pytest.mark.parametrize("value", ["auto", " AUTO "])
def test_gptoss_slots_auto_leaves_the_slots_to_the_worker_with_one_conversations_context(value: str) -> None:
    """GPTOSS_SLOTS=auto: the engine settings say so and hold one slot of GPTOSS_CONTEXT tokens until the
    model has loaded and the worker's engine sizes them (tests/inference/test_engine.py)."""
    probe = (
        "import django; django.setup(); from django.conf import settings; e = settings.GPTOSS_ENGINE; "
        "print(settings.GPTOSS_SLOTS, e.auto_slots, e.n_slots, e.n_ctx, e.called('n_slots'))"
    )
    result = run(["-c", probe], {**PRODUCTION, "GPTOSS_SLOTS": value, "GPTOSS_CONTEXT": "4096"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["None", "True", "1", "4096", "GPTOSS_SLOTS"]


@pytest.mark.parametrize(
    "argv",
    [
        pytest.param(["manage.py", "migrate"], id="manage.py"),
        pytest.param(
            ["-m", "daphne", "-b", "127.0.0.1", "-p", "0", "gptoss_web.asgi:application"], id="daphne"
        ),
        pytest.param(
            ["-m", "celery", "-A", "gptoss_web", "worker", "-P", "threads", "-Q", "gpu.x"], id="celery"
        ),
    ],
)
def test_a_configuration_error_stops_each_process_with_one_line_and_no_traceback(argv: list[str]) -> None:
    """A malformed URL or value reads as one sentence, not as the last line of a 40-frame traceback."""
    result = run(argv, env={**PRODUCTION, "DATABASE_URL": "mysql://x@y/z"})
    _one_line_naming(
        result,
        "DATABASE_URL must be a postgres:// URL, for example DATABASE_URL=postgres://gptoss:secret@127.0.0.1:5432/gptoss",
    )
    result = run(argv, env={**PRODUCTION, "GPTOSS_SLOTS": "abc"})
    _one_line_naming(result, "GPTOSS_SLOTS='abc' is not an integer, for example GPTOSS_SLOTS=4")


ENGINE_FIELDS = ("n_ctx", "n_slots", "n_gpu_layers", "n_cpu_moe", "cpu_moe", "kv_type", "n_batch", "n_ubatch")


@pytest.mark.parametrize(
    ("context", "slots", "n_ubatch", "kv_type"), [(8192, 4, 512, "f16"), (4096, 3, 4096, "q8_0")]
)
def test_the_environment_and_a_registry_row_with_the_same_values_configure_the_same_engine(
    context: int, slots: int, n_ubatch: int, kv_type: str
) -> None:
    """One builder turns GPTOSS_* variables and a registry row into engine settings, defaults included."""
    from inference.models import ServedModel
    from inference.runtime.engine.settings import engine_settings

    variables = {"GPTOSS_CONTEXT": str(context), "GPTOSS_SLOTS": str(slots), "GPTOSS_N_UBATCH": str(n_ubatch)}
    probe = (
        "import django; django.setup(); from django.conf import settings; "
        f"print(repr(tuple(getattr(settings.GPTOSS_ENGINE, f) for f in {ENGINE_FIELDS!r})))"
    )
    result = run(["-c", probe], {**PRODUCTION, **variables, "GPTOSS_KV_TYPE": kv_type})
    assert result.returncode == 0, result.stderr
    row = ServedModel(name="m", context=context, slots=slots, n_ubatch=n_ubatch, kv_type=kv_type)
    from_row = row.engine_settings(Path("m.gguf"))
    assert result.stdout.strip() == repr(tuple(getattr(from_row, f) for f in ENGINE_FIELDS))
    built = engine_settings(
        model_path=Path("m.gguf"),
        context=context,
        slots=slots,
        n_ubatch=n_ubatch,
        kv_type=kv_type,
        names={"slots": "slots"},
    )
    assert built == from_row
    assert (from_row.n_ctx, from_row.n_batch) == (context * slots, max(2048, n_ubatch))
