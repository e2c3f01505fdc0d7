"""API keys: create and revoke a user's personal keys, and tell whether a request's key authorizes it.

A key reads `gok_<8 hex>_<secret>`: `gok_<8 hex>` is its prefix, stored and shown to find and name it; the
secret is 32 random bytes (`secrets.token_urlsafe`). Only a SHA-256 of the whole key is stored, so the key
is shown once, when it is created. No log line names more of a key than its prefix.

The API is a third face of the same services as the chat page and its socket, and a session cookie never
authorizes it: `api_key_authenticate` takes the `Authorization` header's value and nothing else.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.contrib.auth.models import AbstractBaseUser, User
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from chat import selectors
from chat.errors import ApiKeyRefused
from chat.models import ApiKey

logger = logging.getLogger(__name__)

KEY_START = "gok_"
PREFIX_HEX_CHARS = 8
# last_used_at is written at most this often per key: an API client would otherwise write a row per request.
LAST_USED_RESOLUTION = timedelta(minutes=1)
# Compared with when the prefix names no key, so an unknown prefix costs the same work as a wrong secret.
_NO_HASH = "0" * 64


@dataclass(frozen=True)
class ApiKeyAuth:
    """The key a request was authorized by, and the user it acts as."""

    key: ApiKey
    user: User


def _hash(plaintext: str) -> str:
    """Return the SHA-256 hex of the whole key: a fast hash suffices, the secret is 256 random bits."""
    return hashlib.sha256(plaintext.encode()).hexdigest()


def api_key_create(*, owner: User, name: str, expires_at: datetime | None = None) -> tuple[ApiKey, str]:
    """Create a key for *owner*; return its row and the key itself, which is never stored or shown again."""
    for _ in range(5):  # a new prefix when one is taken (32 bits: rare)
        prefix = KEY_START + secrets.token_hex(PREFIX_HEX_CHARS // 2)
        plaintext = f"{prefix}_{secrets.token_urlsafe(32)}"
        try:
            with transaction.atomic():
                key = ApiKey.objects.create(
                    owner=owner, name=name, prefix=prefix, secret_hash=_hash(plaintext), expires_at=expires_at
                )
        except IntegrityError:
            continue
        logger.info("api key %s (id %s) created for user %s", key.prefix, key.pk, owner.pk)
        return key, plaintext
    raise RuntimeError("Could not find a free API key prefix in 5 tries")


def api_key_revoke(*, key: ApiKey, by: AbstractBaseUser) -> bool:
    """Revoke *key* at once (its owner or an admin, *by*, decided that); return False if it already was."""
    now = timezone.now()
    revoked = ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=now) == 1
    if revoked:
        key.revoked_at = now
        logger.info(
            "api key %s (id %s) of user %s revoked by user %s", key.prefix, key.pk, key.owner_id, by.pk
        )
    return revoked


def _bearer_token(header_value: str | None) -> str:
    scheme, _, token = (header_value or "").strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ApiKeyRefused(
            "no Authorization: Bearer header",
            "send your API key as `Authorization: Bearer gok_…`; create one under API keys in the menu.",
        )
    return token


def api_key_authenticate(header_value: str | None) -> ApiKeyAuth:
    """Return the key and user the `Authorization` header *header_value* names, or raise ApiKeyRefused.

    Refused with 401: no bearer header, an unknown key (no such prefix, or a wrong secret), a revoked or
    expired key, an inactive owner; with 403: the API switched off for a group of the owner's. Records the
    key's use at most once a minute.
    """
    token = _bearer_token(header_value)
    head, _, secret = token.removeprefix(KEY_START).partition("_")
    prefix = KEY_START + head
    key = None
    if token.startswith(KEY_START) and secret and len(head) == PREFIX_HEX_CHARS:
        key = ApiKey.objects.select_related("owner").filter(prefix=prefix).first()
    if not hmac.compare_digest(key.secret_hash if key else _NO_HASH, _hash(token)) or key is None:
        raise ApiKeyRefused(
            "unknown key", "check that the whole key was copied, or create a new one under API keys."
        )
    now = timezone.now()
    if key.revoked_at is not None:
        raise ApiKeyRefused("revoked key", "this key was revoked; create a new one under API keys.")
    if key.expires_at is not None and key.expires_at <= now:
        raise ApiKeyRefused("expired key", "create a new one under API keys.")
    owner = key.owner
    if not owner.is_active:
        raise ApiKeyRefused("inactive user", "the account this key belongs to is deactivated.")
    if not selectors.api_allowed(user=owner):
        raise ApiKeyRefused(
            "the API is switched off for your group", "ask an administrator to switch it on.", status=403
        )
    if key.last_used_at is None or now - key.last_used_at >= LAST_USED_RESOLUTION:
        # Conditional, so simultaneous requests write the row once.
        ApiKey.objects.filter(pk=key.pk).filter(
            Q(last_used_at__isnull=True) | Q(last_used_at__lte=now - LAST_USED_RESOLUTION)
        ).update(last_used_at=now)
        key.last_used_at = now
    return ApiKeyAuth(key=key, user=owner)
