"""Test helpers for the conversation WebSocket: a signed-in cookie, a socket on the real ASGI application."""

from __future__ import annotations

from typing import Any

from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.test import Client

from gptoss_web.asgi import application


def cookie_header(user: object) -> tuple[bytes, bytes]:
    """Return the cookie header of a fresh signed-in session of *user*."""
    client = Client()
    client.force_login(user)  # type: ignore[arg-type]
    return (
        b"cookie",
        f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}".encode(),
    )


def socket(conversation_id: int | str, *headers: tuple[bytes, bytes]) -> WebsocketCommunicator:
    """Return a socket to the conversation *conversation_id* ("new": the start page's) from this site's own
    origin, with *headers*."""
    return WebsocketCommunicator(
        application,
        f"/ws/conversations/{conversation_id}/",
        headers=[(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1"), *headers],
    )


async def connected(user: object, conversation_id: int | str) -> tuple[WebsocketCommunicator, dict[str, Any]]:
    """Connect a socket of *user* to *conversation_id*; return it and the `state` frame it received first."""
    communicator = socket(conversation_id, await sync_to_async(cookie_header)(user))
    accepted, _ = await communicator.connect()
    assert accepted
    state = await communicator.receive_json_from()
    assert state["type"] == "state"
    return communicator, state
