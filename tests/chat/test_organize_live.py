"""The live sidebar: every socket of a user hears what changed in their list (and nobody else's)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from chat.services.conversations import (
    conversation_archive,
    conversation_create,
    conversation_delete,
    conversation_move,
    conversation_pin,
    conversation_rename,
)
from chat.services.messages import message_send
from chat.services.projects import project_create
from chat.services.replies import reply_cancel
from tests.sockets import connected

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("close_thread_connections")]


async def _start_page_socket(user: object) -> WebsocketCommunicator:
    """Connect *user*'s start-page socket (any of their sockets joins their group) and read its state."""
    communicator, _ = await connected(user, "new")
    return communicator


async def _sidebar_frames(communicator: WebsocketCommunicator, count: int) -> list[dict[str, Any]]:
    frames = []
    while len(frames) < count:
        frame = await communicator.receive_json_from(timeout=5)
        if frame["type"] == "sidebar":
            frames.append(frame)
    return frames


async def test_every_change_to_a_users_list_reaches_their_sockets(alice: Any) -> None:
    tab = await _start_page_socket(alice)
    try:
        conversation = await sync_to_async(conversation_create)(owner=alice)
        project = await sync_to_async(project_create)(owner=alice, name="Live")
        await sync_to_async(conversation_rename)(conversation=conversation, title="Renamed")
        await sync_to_async(conversation_pin)(conversation=conversation, pinned=True)
        await sync_to_async(conversation_move)(conversation=conversation, project=project)
        await sync_to_async(conversation_archive)(conversation=conversation, archived=True)
        await sync_to_async(conversation_archive)(conversation=conversation, archived=False)
        frames = await _sidebar_frames(tab, 7)
        assert [(f["change"], f["conversation"]) for f in frames] == [
            ("created", conversation.pk),
            ("projects", None),
            ("title", conversation.pk),
            ("pinned", conversation.pk),
            ("moved", conversation.pk),
            ("archived", conversation.pk),
            ("restored", conversation.pk),
        ]
        # An id, never a title or text.
        assert all(set(frame) == {"type", "change", "conversation"} for frame in frames)
        pk = conversation.pk
        await sync_to_async(conversation_delete)(conversation=conversation)
        assert [(f["change"], f["conversation"]) for f in await _sidebar_frames(tab, 1)] == [("deleted", pk)]
    finally:
        await tab.disconnect()


async def test_a_reply_ending_in_another_conversation_is_announced(alice: Any) -> None:
    conversation = await sync_to_async(conversation_create)(owner=alice, announce=False)
    await sync_to_async(message_send)(conversation=conversation, text="hello")
    tab = await _start_page_socket(alice)
    try:
        await sync_to_async(reply_cancel)(conversation=conversation)  # a queued reply ends: `done`
        assert [(f["change"], f["conversation"]) for f in await _sidebar_frames(tab, 1)] == [
            ("reply", conversation.pk)
        ]
    finally:
        await tab.disconnect()


async def test_another_users_changes_never_reach_a_socket(alice: Any, bob: Any) -> None:
    bobs_tab = await _start_page_socket(bob)
    alices_tab = await _start_page_socket(alice)
    try:
        conversation = await sync_to_async(conversation_create)(owner=alice)
        await sync_to_async(message_send)(conversation=conversation, text="secret plans")
        await sync_to_async(conversation_pin)(conversation=conversation, pinned=True)
        await sync_to_async(reply_cancel)(conversation=conversation)
        await sync_to_async(conversation_delete)(conversation=conversation)
        assert len(await _sidebar_frames(alices_tab, 4)) >= 4  # alice heard them...
        await asyncio.sleep(0.3)
        assert await bobs_tab.receive_nothing(timeout=0.5)  # ...bob heard nothing at all
    finally:
        await bobs_tab.disconnect()
        await alices_tab.disconnect()
