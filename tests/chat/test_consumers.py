"""The conversation WebSocket: owners get the stored state; strangers, anonymous users and other origins
are refused before the handshake completes."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.db import connections
from django.test import Client

from chat.services import message_send
from gptoss_web.asgi import application
from tests.factories import make_conversation

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
async def _close_thread_connections() -> AsyncIterator[None]:
    """Close the database connection of sync_to_async's thread, so the test database can be dropped."""
    yield
    await sync_to_async(connections.close_all)()


def _cookie_header(user: object) -> tuple[bytes, bytes]:
    client = Client()
    client.force_login(user)  # type: ignore[arg-type]
    return (
        b"cookie",
        f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}".encode(),
    )


def _communicator(conversation_id: int, *headers: tuple[bytes, bytes]) -> WebsocketCommunicator:
    return WebsocketCommunicator(
        application,
        f"/ws/conversations/{conversation_id}/",
        headers=[(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1"), *headers],
    )


async def test_the_owner_receives_the_stored_conversation_first(alice: object) -> None:
    conversation = await sync_to_async(make_conversation)(alice)
    await sync_to_async(message_send)(conversation=conversation, text="hello socket")
    communicator = _communicator(conversation.pk, await sync_to_async(_cookie_header)(alice))
    connected, _ = await communicator.connect()
    try:
        assert connected
        state = await communicator.receive_json_from()
        assert state["type"] == "state"
        assert [(m["role"], m["status"]) for m in state["messages"]] == [
            ("user", "done"),
            ("assistant", "queued"),
        ]
        assert state["messages"][0]["content"] == "hello socket"
    finally:
        await communicator.disconnect()


@pytest.mark.parametrize("who", ["stranger", "anonymous"])
async def test_strangers_and_anonymous_users_are_refused_before_accept(
    alice: object, bob: object, who: str
) -> None:
    conversation = await sync_to_async(make_conversation)(alice)
    headers = [await sync_to_async(_cookie_header)(bob)] if who == "stranger" else []
    communicator = _communicator(conversation.pk, *headers)
    connected, _ = await communicator.connect()
    assert not connected
    await communicator.disconnect()


async def test_a_foreign_origin_is_refused(alice: object) -> None:
    conversation = await sync_to_async(make_conversation)(alice)
    communicator = WebsocketCommunicator(
        application,
        f"/ws/conversations/{conversation.pk}/",
        headers=[(b"origin", b"https://evil.example"), await sync_to_async(_cookie_header)(alice)],
    )
    connected, _ = await communicator.connect()
    assert not connected
    await communicator.disconnect()


@pytest.mark.parametrize(
    ("frame", "error"),
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", 'must be a JSON object with an "action"'),
        (json.dumps({"action": "explode"}), "Unknown action 'explode'"),
        (json.dumps({"action": "send", "text": "x" * 300_000}), "larger than 256 KiB"),
    ],
)
async def test_malformed_frames_get_an_error_frame_and_the_socket_stays_open(
    alice: object, frame: str, error: str
) -> None:
    conversation = await sync_to_async(make_conversation)(alice)
    communicator = _communicator(conversation.pk, await sync_to_async(_cookie_header)(alice))
    connected, _ = await communicator.connect()
    try:
        assert connected
        await communicator.receive_json_from()  # the stored state
        await communicator.send_to(text_data=frame)
        reply = await communicator.receive_json_from()
        assert reply["type"] == "error" and error in reply["message"]
        await communicator.send_to(text_data="still there?")
        assert (await communicator.receive_json_from())["type"] == "error"
    finally:
        await communicator.disconnect()
