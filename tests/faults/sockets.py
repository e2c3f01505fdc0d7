"""What the fault tests do as a browser would, over real TCP to the stack's Daphne: sign in, open a
conversation's socket, read its frames."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.test import Client
from websockets.asyncio.client import ClientConnection, connect

from chat.models import Conversation, Message
from gptoss_web.devtools.stack import Stack
from tests.factories import make_conversation


def session_cookie(user: object) -> str:
    """Return a Cookie header value that signs *user* in."""
    client = Client()
    client.force_login(user)  # type: ignore[arg-type]
    return f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}"


async def open_socket(stack: Stack, cookie: str, conversation_id: int) -> ClientConnection:
    return await connect(
        f"ws://127.0.0.1:{stack.web_port}/ws/conversations/{conversation_id}/",
        origin=stack.base_url,  # type: ignore[arg-type]
        additional_headers={"Cookie": cookie},
        open_timeout=10,
    )


async def receive(socket: ClientConnection, timeout: float = 30) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(socket.recv(), timeout))


async def until(
    socket: ClientConnection, kind: str, timeout: float = 60, **fields: Any
) -> list[dict[str, Any]]:
    """Return the frames received up to and including the first of type *kind* that has *fields*."""
    frames: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while True:
        frames.append(await receive(socket, max(0.1, deadline - time.monotonic())))
        last = frames[-1]
        if last["type"] == kind and all(last.get(k) == v for k, v in fields.items()):
            return frames


async def until_finished(socket: ClientConnection, timeout: float = 90) -> dict[str, Any]:
    """Return the last reply once the socket says it ended: by `done`, or by a resent `state`."""
    deadline = time.monotonic() + timeout
    while True:
        frame = await receive(socket, max(0.1, deadline - time.monotonic()))
        if frame["type"] == "done":
            return frame["message"]
        if frame["type"] == "state" and frame["messages"][-1]["status"] not in ("queued", "streaming"):
            return frame["messages"][-1]


async def new_conversation(user: object, **kwargs: Any) -> Conversation:
    return await sync_to_async(make_conversation)(user, **kwargs)


async def latest_reply(conversation: Conversation) -> Message:
    return await sync_to_async(
        lambda: Message.objects.filter(conversation=conversation, role="assistant").latest("created_at")
    )()
