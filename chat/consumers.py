"""The conversation WebSocket: stored state first, then live events for its owner only."""

from __future__ import annotations

import json
import logging
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.http import Http404

from chat.access import access_conversation
from chat.events import conversation_group, conversation_state

logger = logging.getLogger(__name__)

MAX_FRAME_BYTES = 256 * 1024


class ConversationConsumer(AsyncWebsocketConsumer):
    conversation_id: int
    group: str

    async def connect(self) -> None:
        user = self.scope.get("user")
        self.conversation_id = int(self.scope["url_route"]["kwargs"]["conversation_id"])
        try:
            await database_sync_to_async(access_conversation)(user, self.conversation_id)
        except Http404:
            # Refused before accept: a stranger learns nothing, not even that the conversation exists.
            await self.close()
            return
        self.group = conversation_group(self.conversation_id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        state = await database_sync_to_async(conversation_state)(self.conversation_id)
        await self.send(text_data=json.dumps(state))

    async def disconnect(self, code: int) -> None:
        if getattr(self, "group", None):
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if bytes_data is not None or text_data is None:
            await self._error("Send JSON text frames.")
            return
        if len(text_data.encode()) > MAX_FRAME_BYTES:
            await self._error(f"That frame is larger than {MAX_FRAME_BYTES // 1024} KiB.")
            return
        try:
            frame = json.loads(text_data)
        except ValueError:
            await self._error("That frame is not valid JSON.")
            return
        if not isinstance(frame, dict) or not isinstance(frame.get("action"), str):
            await self._error('A frame must be a JSON object with an "action".')
            return
        await self._error(f"Unknown action {frame['action'][:40]!r}.")

    async def _error(self, message: str) -> None:
        await self.send(text_data=json.dumps({"type": "error", "message": message}))

    async def chat_event(self, event: dict[str, Any]) -> None:
        """Forward a broadcast event (sent by chat.events) to the browser."""
        await self.send(text_data=json.dumps(event["payload"]))
