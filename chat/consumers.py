"""The conversation WebSocket (docs/protocol.md): stored state first, then newer live events, owner only."""

from __future__ import annotations

import asyncio
import json
import logging
from contextlib import suppress
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import Max, Q
from django.http import Http404

from chat import selectors, services
from chat.access import access_conversation
from chat.events import conversation_group
from chat.models import Message
from chat.services import ChatError

logger = logging.getLogger(__name__)

MAX_FRAME_BYTES = 256 * 1024
# How often a socket renews its group membership and compares its replies in flight with the database: a
# Redis restart loses group memberships and the events sent meanwhile, so the socket resends the state.
WATCH_EVERY_S = 5.0
ACTIONS = ("send", "stop", "regenerate", "edit", "sync")


class FrameError(Exception):
    """A frame the server cannot act on; the message says why."""


def _state(user: AbstractBaseUser | AnonymousUser, conversation_id: int) -> dict[str, Any]:
    conversation = access_conversation(user, conversation_id)
    return selectors.conversation_state(conversation=conversation)


def _stored_summary(conversation_id: int, message_ids: list[int]) -> tuple[int, dict[int, str]]:
    """Return the conversation's newest message id, and the stored status of *message_ids* and of every
    reply in flight in it: what a socket compares with what it has told its browser."""
    messages = Message.objects.filter(conversation_id=conversation_id)
    newest = messages.aggregate(newest=Max("id"))["newest"] or 0
    wanted = Q(pk__in=message_ids) | Q(status__in=Message.IN_FLIGHT)
    return newest, dict(messages.filter(wanted).values_list("pk", "status"))


def _act(user: AbstractBaseUser | AnonymousUser, conversation_id: int, frame: dict[str, Any]) -> None:
    """Carry out one client action; raise ChatError or FrameError with what the user should know."""
    try:
        conversation = access_conversation(user, conversation_id)
    except Http404:
        raise FrameError("This conversation no longer exists.") from None
    action = frame["action"]
    if action == "send":
        client_id = frame.get("client_id")
        services.message_send(
            conversation=conversation,
            text=_text(frame),
            client_id=client_id if isinstance(client_id, str) else "",
        )
    elif action == "stop":
        services.generation_cancel(conversation=conversation)
    elif action == "regenerate":
        services.message_regenerate(conversation=conversation, message_id=_message_id(frame))
    elif action == "edit":
        services.message_edit(conversation=conversation, message_id=_message_id(frame), text=_text(frame))


def _text(frame: dict[str, Any]) -> str:
    text = frame.get("text")
    if not isinstance(text, str):
        raise FrameError('This action needs the message as "text".')
    return text


def _message_id(frame: dict[str, Any]) -> int:
    value = frame.get("message")
    if not isinstance(value, int) or isinstance(value, bool):
        raise FrameError('This action needs the id of a message as "message".')
    return value


class ConversationConsumer(AsyncWebsocketConsumer):
    conversation_id: int
    group: str | None = None
    # The newest stream seq this socket has been sent, per reply: older live events are dropped.
    seqs: dict[int, int]
    in_flight: dict[int, str]  # reply id → status, as this socket last told the browser
    newest: int = 0  # the newest message id this socket has told the browser of
    last_event: float = 0.0
    watchdog: asyncio.Task[None] | None = None
    # The watchdog's resent state and forwarded events must not interleave: an event sent while the state is
    # being read would be overwritten by it in the browser, leaving a gap.
    sending: asyncio.Lock

    async def connect(self) -> None:
        user = self.scope.get("user")
        self.conversation_id = int(self.scope["url_route"]["kwargs"]["conversation_id"])
        try:
            await database_sync_to_async(access_conversation)(user, self.conversation_id)
        except Http404:
            # Refused before accept: a stranger learns nothing, not even that the conversation exists.
            await self.close()
            return
        # Join the group before reading the state, so no event falls between the two (docs/protocol.md).
        self.group = conversation_group(self.conversation_id)
        self.sending = asyncio.Lock()
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()
        await self._send_state()
        self.watchdog = asyncio.create_task(self._watch())

    async def disconnect(self, code: int) -> None:
        if self.watchdog is not None:
            self.watchdog.cancel()
        if self.group:
            with suppress(Exception):  # Redis may be down; the membership expires anyway
                await self.channel_layer.group_discard(self.group, self.channel_name)

    async def _watch(self) -> None:
        """Renew the group membership; resend the state when events about a reply in flight were lost."""
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(WATCH_EVERY_S)
            try:
                await self.channel_layer.group_add(self.group, self.channel_name)
                newest, stored = await database_sync_to_async(_stored_summary)(
                    self.conversation_id, list(self.in_flight)
                )
                silent = loop.time() - self.last_event > WATCH_EVERY_S
                missed = newest > self.newest or stored != self.in_flight
                if missed or (silent and "streaming" in stored.values()):
                    await self._send_state()
            except Exception as error:  # Redis or PostgreSQL restarting: try again next round
                logger.warning("conversation %s socket watch failed: %s", self.conversation_id, error)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        frame: dict[str, Any] = {}
        try:
            frame = self._parse(text_data, bytes_data)
            if frame["action"] == "sync":
                await self._send_state()
                return
            await database_sync_to_async(_act)(self.scope.get("user"), self.conversation_id, frame)
        except services.AlreadySent:
            pass  # acknowledged again below; nothing is stored twice
        except (ChatError, FrameError) as error:
            await self._reply("error", frame, message=str(error))
            if frame.get("action") in ("edit", "regenerate"):
                await self._send_state()  # a stale edit: show the conversation as it is now
            return
        await self._reply("ack", frame)

    def _parse(self, text_data: str | None, bytes_data: bytes | None) -> dict[str, Any]:
        if bytes_data is not None or text_data is None:
            raise FrameError("Send JSON text frames.")
        if len(text_data.encode()) > MAX_FRAME_BYTES:
            raise FrameError(f"That frame is larger than {MAX_FRAME_BYTES // 1024} KiB.")
        try:
            frame = json.loads(text_data)
        except ValueError:
            raise FrameError("That frame is not valid JSON.") from None
        if not isinstance(frame, dict) or not isinstance(frame.get("action"), str):
            raise FrameError('A frame must be a JSON object with an "action".')
        if frame["action"] not in ACTIONS:
            raise FrameError(f"Unknown action {frame['action'][:40]!r}; use one of {', '.join(ACTIONS)}.")
        return frame

    async def _reply(self, kind: str, frame: dict[str, Any], **fields: Any) -> None:
        client_id = frame.get("client_id")
        payload = {
            "type": kind,
            "action": frame.get("action"),
            "client_id": client_id if isinstance(client_id, str) else None,
            **fields,
        }
        await self.send(text_data=json.dumps(payload))

    async def _send_state(self) -> None:
        async with self.sending:
            try:
                state = await database_sync_to_async(_state)(self.scope.get("user"), self.conversation_id)
            except Http404:
                await self.close(code=4404)
                return
            self.seqs = {m["id"]: m["seq"] for m in state["messages"]}
            self.newest = max(self.seqs, default=0)
            self.in_flight = {
                m["id"]: m["status"] for m in state["messages"] if m["status"] in Message.IN_FLIGHT
            }
            self.last_event = asyncio.get_running_loop().time()
            await self.send(text_data=json.dumps(state))

    async def chat_event(self, event: dict[str, Any]) -> None:
        """Forward a broadcast event (sent by chat.events), dropping stream events the socket already has."""
        async with self.sending:
            await self._forward(event["payload"])

    async def _forward(self, payload: dict[str, Any]) -> None:
        self.last_event = asyncio.get_running_loop().time()
        kind = payload.get("type")
        if kind == "started":
            self.in_flight[payload["message"]] = Message.Status.STREAMING
        elif kind in ("done", "message"):
            message = payload["message"]
            self.newest = max(self.newest, message["id"])
            if message["status"] in Message.IN_FLIGHT:
                self.in_flight[message["id"]] = message["status"]
            else:
                self.in_flight.pop(message["id"], None)
        elif kind == "removed":
            for message_id in payload["messages"]:
                self.in_flight.pop(message_id, None)
        seq = payload.get("seq")
        if seq is not None:
            message_id = payload["message"]
            if seq <= self.seqs.get(message_id, 0):
                return
            self.seqs[message_id] = seq
        elif kind in ("done", "message"):
            message = payload["message"]
            self.seqs[message["id"]] = max(self.seqs.get(message["id"], 0), message["seq"])
        await self.send(text_data=json.dumps(payload))
