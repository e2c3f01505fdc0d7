"""Reasoning sealed for the client to keep: a Responses call with `store: false` and
`include: ["reasoning.encrypted_content"]` gets each reasoning item back encrypted, and sends it with its next
request, so the model keeps its chain of thought across function calls (as harmony requires) while the server
keeps nothing.

AES-256-GCM under a key derived from the server's SECRET_KEY (its fallbacks still open what they sealed),
bound to the user it was sealed for: only this server can read it, and only for the same user.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings

PREFIX = "gptoss1."


class Unreadable(ValueError):
    """Sealed content this server did not seal, sealed for another user, or altered."""


def _key(secret: str | bytes) -> AESGCM:
    raw = secret if isinstance(secret, bytes) else secret.encode()
    return AESGCM(hashlib.sha256(b"gptoss-web sealed reasoning\0" + raw).digest())


def seal(text: str, *, user_id: int) -> str:
    nonce = os.urandom(12)
    sealed = _key(settings.SECRET_KEY).encrypt(nonce, text.encode(), f"user:{user_id}".encode())
    return PREFIX + base64.urlsafe_b64encode(nonce + sealed).decode()


def unseal(token: str, *, user_id: int) -> str:
    """Return the text *token* seals for *user_id*; raise Unreadable."""
    if not token.startswith(PREFIX):
        raise Unreadable("it was not sealed by this server")
    try:
        raw = base64.urlsafe_b64decode(token[len(PREFIX) :])
    except (binascii.Error, ValueError):
        raise Unreadable("it is not valid base64") from None
    for secret in (settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS):
        try:
            return _key(secret).decrypt(raw[:12], raw[12:], f"user:{user_id}".encode()).decode()
        except (InvalidTag, ValueError):
            continue
    raise Unreadable("this server cannot open it (another server's, another user's, or altered)")
