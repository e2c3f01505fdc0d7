"""Read configuration from the environment, failing early with a message that names the variable."""

from __future__ import annotations

import ipaddress
import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str | None = None, *, example: str = "") -> str:
    """Return the variable *name*, or *default*; refuse a missing required variable."""
    value = os.environ.get(name)
    if value is None or value.strip() == "":
        if default is None:
            raise ImproperlyConfigured(f"Set the environment variable {name}, for example {name}={example}")
        return default
    return value.strip()


def env_bool(name: str, default: bool) -> bool:
    """Return the variable *name* read as a boolean (1/0, true/false, yes/no, on/off)."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={raw!r} is not a boolean; use {name}=true or {name}=false")


def env_int(name: str, default: int, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """Return the variable *name* read as an integer within [minimum, maximum]."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        raise ImproperlyConfigured(
            f"{name}={raw!r} is not an integer, for example {name}={default}"
        ) from None
    if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
        bounds = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise ImproperlyConfigured(f"{name}={value} is out of range: it must be {bounds}")
    return value


def env_int_or_auto(name: str, default: int, *, minimum: int, maximum: int) -> int | None:
    """Return the variable *name* read as an integer within [minimum, maximum], or None for ``auto``."""
    raw = os.environ.get(name)
    if raw is not None and raw.strip().lower() == "auto":
        return None
    return env_int(name, default, minimum=minimum, maximum=maximum)


def env_choice(name: str, default: str, choices: Iterable[str]) -> str:
    """Return the variable *name*, which must be one of *choices*."""
    value = env_str(name, default)
    allowed = list(choices)
    if value not in allowed:
        raise ImproperlyConfigured(
            f"{name}={value!r} is not one of {', '.join(allowed)}, for example {name}={default}"
        )
    return value


def env_list(name: str, default: list[str]) -> list[str]:
    """Return the comma-separated variable *name* as a list of non-empty items."""
    raw = os.environ.get(name)
    if raw is None:
        return default
    return [item.strip() for item in raw.split(",") if item.strip()]


@dataclass(frozen=True)
class DatabaseURL:
    name: str
    user: str
    password: str
    host: str
    port: str

    def django(self) -> dict[str, object]:
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": self.name,
            "USER": self.user,
            "PASSWORD": self.password,
            "HOST": self.host,
            "PORT": self.port,
            "CONN_MAX_AGE": 60,
            "CONN_HEALTH_CHECKS": True,
        }


def parse_database_url(name: str, url: str) -> DatabaseURL:
    """Parse a postgres:// URL; unix sockets are given as ?host=/path."""
    example = f"{name}=postgres://gptoss:secret@127.0.0.1:5432/gptoss"
    parts = urlsplit(url)
    if parts.scheme not in {"postgres", "postgresql"}:
        raise ImproperlyConfigured(f"{name} must be a postgres:// URL, for example {example}")
    query = dict(pair.split("=", 1) for pair in parts.query.split("&") if "=" in pair)
    host = unquote(query.get("host", parts.hostname or ""))
    database = unquote(parts.path.lstrip("/"))
    if not database or not host:
        raise ImproperlyConfigured(f"{name} needs a host and a database name, for example {example}")
    try:
        port = str(parts.port or 5432)
    except ValueError:
        raise ImproperlyConfigured(f"{name} has an invalid port, for example {example}") from None
    return DatabaseURL(database, unquote(parts.username or ""), unquote(parts.password or ""), host, port)


def check_redis_url(name: str, url: str) -> str:
    """Refuse anything but a redis://, rediss:// or unix:// URL."""
    if urlsplit(url).scheme not in {"redis", "rediss", "unix"}:
        raise ImproperlyConfigured(
            f"{name} must be a redis:// URL, for example {name}=redis://127.0.0.1:6379/0"
        )
    return url


def parse_networks(
    name: str, items: list[str], *, example: str = "10.0.0.0/8,127.0.0.1"
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """Return *items* (IP addresses or networks such as 10.0.0.0/24) as networks; refuse anything else."""
    networks = []
    for item in items:
        try:
            networks.append(ipaddress.ip_network(item))
        except ValueError:
            raise ImproperlyConfigured(
                f"{name} lists {item!r}, which is not an IP address or network (a network's host bits "
                f"must be zero), for example {name}={example}"
            ) from None
    return tuple(networks)


@contextmanager
def configuration_errors_exit() -> Iterator[None]:
    """Stop the process with one line naming what to set, and no traceback, on a configuration error.

    A traceback in front of "GPTOSS_SLOTS='abc' is not an integer" only hides the sentence the operator
    needs; the error is in their environment, not in the code.
    """
    try:
        yield
    except ImproperlyConfigured as error:
        print(f"Configuration error: {error}", file=sys.stderr, flush=True)
        raise SystemExit(2) from None
