"""Django settings for gptoss-web, read from the environment (deploy/.env.example documents each variable)."""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured
from django.utils.csp import CSP
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from gptoss_web.env import (
    check_redis_url,
    env_bool,
    env_choice,
    env_int,
    env_int_or_auto,
    env_list,
    env_str,
    parse_database_url,
    parse_networks,
)
from inference.runtime.catalog import NAME_PATTERN, answer_tokens_default, served_model_name
from inference.runtime.engine.settings import (
    DEFAULT_CHECKPOINT_BYTES,
    DEFAULT_CONTEXT,
    DEFAULT_KV_TYPE,
    DEFAULT_N_GPU_LAYERS,
    DEFAULT_N_UBATCH,
    DEFAULT_SLOTS,
    KV_TYPES,
    MAX_SLOTS,
    MIN_CONTEXT,
    SettingsError,
    engine_settings,
)

BASE_DIR = Path(__file__).resolve().parent.parent

# --- Django core -------------------------------------------------------------------------------------------
DEBUG = env_bool("DJANGO_DEBUG", False)
SECRET_KEY = env_str(
    "DJANGO_SECRET_KEY", example="$(python -c 'import secrets; print(secrets.token_urlsafe(50))')"
)
if len(SECRET_KEY) < 32 and not DEBUG:
    raise ImproperlyConfigured("DJANGO_SECRET_KEY is too short: use at least 50 random characters")
ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["127.0.0.1", "localhost"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "daphne",
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "channels",
    "axes",
    "chat",
    "inference",
    "inference.tools",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.auth.middleware.LoginRequiredMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django.middleware.csp.ContentSecurityPolicyMiddleware",
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "gptoss_web.urls"
ASGI_APPLICATION = "gptoss_web.asgi.application"
WSGI_APPLICATION = None

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "django.template.context_processors.csp",
                "gptoss_web.context_processors.site",
            ],
        },
    },
]

DATABASES = {
    "default": parse_database_url(
        "DATABASE_URL", env_str("DATABASE_URL", example="postgres://gptoss:secret@127.0.0.1:5432/gptoss")
    ).django()
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

REDIS_URL = check_redis_url("REDIS_URL", env_str("REDIS_URL", example="redis://127.0.0.1:6379/0"))
# Every Redis key this install writes starts with this prefix, so several installs (or test runs) can share
# one Redis server.
GPTOSS_REDIS_PREFIX = env_str("GPTOSS_REDIS_PREFIX", "gptoss")

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": REDIS_URL,
        "KEY_PREFIX": GPTOSS_REDIS_PREFIX,
    }
}

# Redis lists per socket (channels_redis's core layer): a socket's next event wakes it at once. The pub/sub
# layer was measured here delivering 50-90 ms late in one case out of two (its reader polls every 100 ms),
# more than this app's whole time-to-first-token budget. Group memberships live in Redis: after a Redis
# restart, sockets re-join within WATCH_EVERY_S and reload the state (chat/consumers.py).
CHANNEL_LAYERS = {
    "default": {
        "BACKEND": "gptoss_web.channel_layer.TwoTripRedisChannelLayer",
        "CONFIG": {
            # redis-py 8 reads with a 5 s socket timeout by default, which is exactly how long channels_redis
            # blocks waiting for a socket's next event: idle sockets would die with error 1011. Read longer.
            # After a Redis restart, pooled connections are dead: retry a command on a fresh one.
            "hosts": [
                {
                    "address": REDIS_URL,
                    "socket_timeout": 30,
                    "socket_connect_timeout": 5,
                    "retry": AsyncRetry(ExponentialBackoff(cap=1.0, base=0.05), 4),
                    "retry_on_error": [RedisConnectionError, RedisTimeoutError],
                    # redis-py's pool refuses a 101st connection ("Too many connections"): 200 sockets
                    # opening at once (each joining its groups) got 500 from Daphne (bench part `load`).
                    "max_connections": 1000,
                }
            ],
            "prefix": f"{GPTOSS_REDIS_PREFIX}:asgi",
            "capacity": 1000,
            "expiry": 30,
        },
    }
}

# --- Accounts ----------------------------------------------------------------------------------------------
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "chat:index"
LOGOUT_REDIRECT_URL = "login"
# Five wrong passwords for one username from one address lock that pair out for a while, never for ever.
AXES_FAILURE_LIMIT = env_int("GPTOSS_LOGIN_FAILURE_LIMIT", 5, minimum=1)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("GPTOSS_LOGIN_COOLOFF_MINUTES", 15, minimum=1))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_VERBOSE = False
# Throttle on REMOTE_ADDR only, never on a header the client writes (gptoss_web/client_ip.py sets it).
AXES_CLIENT_IP_CALLABLE = "gptoss_web.client_ip.remote_addr"
GPTOSS_INVITATIONS = env_bool("GPTOSS_INVITATIONS", False)

# --- Security ----------------------------------------------------------------------------------------------
# DJANGO_HTTPS=true when the site is served over TLS (behind nginx): secure cookies, HSTS, redirects.
HTTPS = env_bool("DJANGO_HTTPS", False)
SECURE_SSL_REDIRECT = HTTPS
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 31536000 if HTTPS else 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = HTTPS
SECURE_HSTS_PRELOAD = HTTPS
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if HTTPS else None
# The reverse proxies whose X-Forwarded-For is believed (addresses or networks): nginx on this host in
# deploy/. Empty (make run, no proxy): the client is the TCP peer, whatever headers it sends.
GPTOSS_TRUSTED_PROXIES = parse_networks(
    "GPTOSS_TRUSTED_PROXIES", env_list("GPTOSS_TRUSTED_PROXIES", []), example="127.0.0.1,::1"
)
SECURE_REDIRECT_EXEMPT = [r"^healthz$"]
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
SECURE_CROSS_ORIGIN_OPENER_POLICY = "same-origin"
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
# No inline script or style anywhere: model output can never run as script, and nothing loads off-site.
SECURE_CSP = {
    "default-src": [CSP.SELF],
    "script-src": [CSP.SELF],
    "style-src": [CSP.SELF],
    "img-src": [CSP.SELF, "data:"],
    "font-src": [CSP.SELF],
    "connect-src": [CSP.SELF],
    "object-src": [CSP.NONE],
    "base-uri": [CSP.NONE],
    "form-action": [CSP.SELF],
    "frame-ancestors": [CSP.NONE],
}

# --- Static files ------------------------------------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = Path(env_str("DJANGO_STATIC_ROOT", str(BASE_DIR / "var" / "static")))
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        "BACKEND": "gptoss_web.storage.StaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

LANGUAGE_CODE = "en-us"
TIME_ZONE = env_str("DJANGO_TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

# --- Celery ------------------------------------------------------------------------------------------------
CELERY_BROKER_URL = REDIS_URL
CELERY_BROKER_TRANSPORT_OPTIONS = {"global_keyprefix": f"{GPTOSS_REDIS_PREFIX}:celery:"}
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
# A GPU worker takes a task only when one of its threads is free: the others wait in Redis for whichever
# worker frees a slot first (first come, first served), and no task sits unacknowledged in a busy worker.
CELERY_WORKER_DISABLE_PREFETCH = True
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True

# --- gptoss-web --------------------------------------------------------------------------------------------
GPTOSS_VAR_DIR = Path(env_str("GPTOSS_VAR_DIR", str(BASE_DIR / "var")))
# Which model `make run` and the worker serve: "tiny" (the generated test model), "gpt-oss-20b",
# "gpt-oss-120b"; GPTOSS_MODEL_PATH points at any local gpt-oss GGUF instead.
GPTOSS_MODEL = env_str("GPTOSS_MODEL", "gpt-oss-20b")
GPTOSS_MODEL_PATH = env_str("GPTOSS_MODEL_PATH", "")
# The GPU worker's engine when no model registry row configures it. Only the worker loads a model, but every
# process reads these, so that a bad value stops whichever starts first, naming the variable. The web side
# also holds an answer's budget (GPTOSS_MAX_ANSWER_TOKENS) against the daily quota while it is in flight.
GPTOSS_CONTEXT = env_int("GPTOSS_CONTEXT", DEFAULT_CONTEXT, minimum=MIN_CONTEXT)
# A number, or `auto`: as many as the memory left after the model loads holds (None here; the worker decides).
GPTOSS_SLOTS = env_int_or_auto("GPTOSS_SLOTS", DEFAULT_SLOTS, minimum=1, maximum=MAX_SLOTS)
GPTOSS_N_GPU_LAYERS = env_int("GPTOSS_N_GPU_LAYERS", DEFAULT_N_GPU_LAYERS, minimum=-1)
GPTOSS_N_CPU_MOE = env_int("GPTOSS_N_CPU_MOE", 0, minimum=0)
GPTOSS_CPU_MOE = env_bool("GPTOSS_CPU_MOE", False)
GPTOSS_KV_TYPE = env_choice("GPTOSS_KV_TYPE", DEFAULT_KV_TYPE, KV_TYPES)
GPTOSS_N_UBATCH = env_int("GPTOSS_N_UBATCH", DEFAULT_N_UBATCH, minimum=1)
# Host memory of the worker for the sliding-window checkpoints of cached conversations (0 keeps none).
GPTOSS_WINDOW_CHECKPOINT_MB = env_int(
    "GPTOSS_WINDOW_CHECKPOINT_MB", DEFAULT_CHECKPOINT_BYTES >> 20, minimum=0
)
GPTOSS_MAX_ANSWER_TOKENS = env_int(
    "GPTOSS_MAX_ANSWER_TOKENS", answer_tokens_default(GPTOSS_CONTEXT), minimum=16
)
if GPTOSS_MAX_ANSWER_TOKENS >= GPTOSS_CONTEXT:
    raise ImproperlyConfigured(
        f"GPTOSS_MAX_ANSWER_TOKENS={GPTOSS_MAX_ANSWER_TOKENS} must be below GPTOSS_CONTEXT={GPTOSS_CONTEXT}"
    )
try:
    # The worker puts the file it resolves (inference/runtime/catalog.py) in model_path.
    GPTOSS_ENGINE = engine_settings(
        model_path=Path(GPTOSS_MODEL_PATH or f"{GPTOSS_MODEL}.gguf"),
        context=GPTOSS_CONTEXT,
        slots=GPTOSS_SLOTS,
        n_gpu_layers=GPTOSS_N_GPU_LAYERS,
        n_cpu_moe=GPTOSS_N_CPU_MOE,
        cpu_moe=GPTOSS_CPU_MOE,
        kv_type=GPTOSS_KV_TYPE,
        n_ubatch=GPTOSS_N_UBATCH,
        checkpoint_bytes=GPTOSS_WINDOW_CHECKPOINT_MB << 20,
        # The engine's errors name what the operator set.
        names={
            "model_path": "GPTOSS_MODEL_PATH",
            "context": "GPTOSS_CONTEXT",
            "slots": "GPTOSS_SLOTS",
            "n_gpu_layers": "GPTOSS_N_GPU_LAYERS",
            "n_cpu_moe": "GPTOSS_N_CPU_MOE",
            "cpu_moe": "GPTOSS_CPU_MOE",
            "kv_type": "GPTOSS_KV_TYPE",
            "n_ubatch": "GPTOSS_N_UBATCH",
        },
    )
except SettingsError as error:
    raise ImproperlyConfigured(str(error)) from None
# The name it is served under (conversations, queue, heartbeats, chips): GPTOSS_MODEL_NAME, else the
# GPTOSS_MODEL_PATH file's own name, else GPTOSS_MODEL.
try:
    GPTOSS_MODEL_NAME = served_model_name(os.environ)
except ValueError as _error:
    raise ImproperlyConfigured(str(_error)) from None
# The queue a systemd / compose GPU worker listens on: its shell command reads it, so it is checked here.
GPTOSS_QUEUE = env_str("GPTOSS_QUEUE", "")
if GPTOSS_QUEUE and not re.match(NAME_PATTERN, GPTOSS_QUEUE):
    raise ImproperlyConfigured(
        f"GPTOSS_QUEUE={GPTOSS_QUEUE!r} may hold only letters, digits, '.', '_' and '-', for example "
        "GPTOSS_QUEUE=gpu.gpt-oss-20b"
    )
GPTOSS_MAX_MESSAGE_CHARS = env_int("GPTOSS_MAX_MESSAGE_CHARS", 32000, minimum=1)
GPTOSS_MAX_TOOL_CALLS = env_int("GPTOSS_MAX_TOOL_CALLS", 8, minimum=0)
# Tools: limits of one Python run, of fetched pages, and of any tool's output the model reads back.
GPTOSS_TOOL_OUTPUT_CHARS = env_int("GPTOSS_TOOL_OUTPUT_CHARS", 8000, minimum=100)
GPTOSS_PYTHON_TIMEOUT_S = env_int("GPTOSS_PYTHON_TIMEOUT_S", 10, minimum=1, maximum=600)
GPTOSS_PYTHON_MEMORY_MB = env_int("GPTOSS_PYTHON_MEMORY_MB", 512, minimum=64)
GPTOSS_PYTHON_PROCESSES = env_int("GPTOSS_PYTHON_PROCESSES", 32, minimum=1)
GPTOSS_PYTHON_DISK_MB = env_int("GPTOSS_PYTHON_DISK_MB", 64, minimum=1)
GPTOSS_FETCH_MAX_BYTES = env_int("GPTOSS_FETCH_MAX_BYTES", 2 * 1024 * 1024, minimum=1024)
GPTOSS_FETCH_TIMEOUT_S = env_int("GPTOSS_FETCH_TIMEOUT_S", 10, minimum=1, maximum=120)
GPTOSS_FETCH_MAX_REDIRECTS = env_int("GPTOSS_FETCH_MAX_REDIRECTS", 5, minimum=0, maximum=20)
# Seconds a queued reply waits while no GPU worker serves its model before it fails (with Retry).
GPTOSS_UNSERVED_TIMEOUT_S = env_int("GPTOSS_UNSERVED_TIMEOUT_S", 120, minimum=5)
# Send a conversation's next turn to the GPU worker that keeps its cache when that worker has a free slot
# (inference/status.py route_choose); off: every reply goes to its model's shared queue.
GPTOSS_ROUTING = env_bool("GPTOSS_ROUTING", True)
GPTOSS_MAX_IN_FLIGHT_PER_USER = env_int("GPTOSS_MAX_IN_FLIGHT_PER_USER", 2, minimum=1)
# Tokens (reasoning + answer) a user may generate a day unless a quota in admin says otherwise; 0 = none.
GPTOSS_DAILY_TOKEN_LIMIT = env_int("GPTOSS_DAILY_TOKEN_LIMIT", 0, minimum=0)
# Many teams must not read each other's chats: staff see message contents in admin only when allowed.
GPTOSS_STAFF_CAN_READ_MESSAGES = env_bool("GPTOSS_STAFF_CAN_READ_MESSAGES", False)
# /healthz names models and queues only to staff, to these client networks, or with this bearer token;
# everyone else gets {"status": ...} alone.
GPTOSS_HEALTHZ_NETWORKS = parse_networks("GPTOSS_HEALTHZ_NETWORKS", env_list("GPTOSS_HEALTHZ_NETWORKS", []))
GPTOSS_HEALTHZ_TOKEN = env_str("GPTOSS_HEALTHZ_TOKEN", "")
if GPTOSS_HEALTHZ_TOKEN and len(GPTOSS_HEALTHZ_TOKEN) < 24:
    raise ImproperlyConfigured(
        "GPTOSS_HEALTHZ_TOKEN is too short: use at least 24 random characters, for example "
        "GPTOSS_HEALTHZ_TOKEN=$(python -c 'import secrets; print(secrets.token_urlsafe(32))')"
    )
# Where `make run` serves (gptoss_web/run.py hands them to Daphne); checked here like every GPTOSS_* variable.
GPTOSS_HOST = env_str("GPTOSS_HOST", "127.0.0.1")
GPTOSS_PORT = env_int("GPTOSS_PORT", 8000, minimum=1, maximum=65535)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {
        "handlers": ["console"],
        "level": env_choice("GPTOSS_LOG_LEVEL", "INFO", ["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"]),
    },
    "loggers": {"django.db.backends": {"level": "WARNING"}, "axes": {"level": "WARNING"}},
}
