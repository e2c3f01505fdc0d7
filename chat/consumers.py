"""The conversation WebSocket (docs/protocol.md): stored state first, then newer live events, owner only."""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable, Coroutine, Mapping
from contextlib import suppress
from dataclasses import dataclass
from typing import Any, cast

import redis.asyncio
from asgiref.sync import async_to_sync
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser, User
from django.db import transaction
from django.http import Http404

from chat import selectors
from chat.access import access_conversation, sessions_signed_in
from chat.errors import ChatError
from chat.events import conversation_group, user_group, without_reasoning
from chat.frames import (
    AckFrame,
    BroadcastFrame,
    ChatEventMessage,
    ClientFrame,
    CreatedFrame,
    EditFrame,
    ErrorFrame,
    RegenerateFrame,
    SendFrame,
    SidebarEventMessage,
    StateFrame,
    StopFrame,
    SwitchFrame,
    SyncFrame,
)
from chat.models import Message
from chat.services import branches, messages, replies
from gptoss_web.reads import reads_once

logger = logging.getLogger(__name__)

# A larger frame closes the socket with 1009 (Daphne closes it before it reaches the consumer:
# gptoss_web/asgi.py). The longest message (GPTOSS_MAX_MESSAGE_CHARS, 32,000 by default) fits easily.
MAX_FRAME_BYTES = 256 * 1024
# How often this process checks all its sockets at once (_Watcher): sessions still signed in, replies in
# flight compared with the database (a Redis restart loses group memberships and the events sent meanwhile,
# so a socket that missed some gets the state again).
WATCH_EVERY_S = 5.0
# Group memberships are renewed when Redis lost them (a restart or flush removes the watcher's sentinel key)
# and at least this often: channels_redis forgets a membership after its group_expiry (a day by default).
RENEW_GROUPS_EVERY_S = 3600
ACTIONS = ("send", "stop", "regenerate", "edit", "switch", "sync")

# Close codes (docs/protocol.md).
CLOSE_SIGNED_OUT = 4401  # the session ended: logout, password changed elsewhere, account deactivated
CLOSE_GONE = 4404  # the conversation was deleted
CLOSE_TOO_BIG = 1009  # a frame above MAX_FRAME_BYTES


class FrameError(Exception):
    """A frame the server cannot act on; the message says why."""


class SignedOut(Exception):
    """The socket's session ended: nothing its frame asked for is done, and the socket closes."""


# A frame as the browser sent it: a JSON object whose "action" is one of ACTIONS (checked by _parse); its
# other fields are checked when the action is carried out (_client_frame).
RawFrame = dict[str, object]


def _state(user: AbstractBaseUser | AnonymousUser, conversation_id: int) -> StateFrame:
    conversation = access_conversation(user, conversation_id)
    return selectors.conversation_state(conversation=conversation)


def _signed_in(session_key: str, user_id: int) -> bool:
    return bool(sessions_signed_in(sessions={session_key: user_id}))


def _check_signed_in(session_key: str, user: AbstractBaseUser | AnonymousUser) -> None:
    if user.pk is None or not _signed_in(session_key, user.pk):
        raise SignedOut()


def _reasoning_shown(user: AbstractBaseUser | AnonymousUser) -> bool:
    assert isinstance(user, User)
    return selectors.reasoning_shown(user=user)


@dataclass(frozen=True)
class _WatchRead:
    summaries: dict[int, tuple[int, dict[int, str]]]
    signed_in: set[str]
    reasoning_hidden: set[int]  # users a group hides the reasoning from


def _watch_read(sessions: Mapping[str, int], conversation_ids: set[int], message_ids: set[int]) -> _WatchRead:
    """Read what the watcher compares, for every socket of the process, in one transaction."""
    with transaction.atomic():
        return _WatchRead(
            summaries=selectors.socket_summaries(conversation_ids=conversation_ids, message_ids=message_ids),
            signed_in=sessions_signed_in(sessions=sessions),
            reasoning_hidden=selectors.reasoning_hidden_among(user_ids=set(sessions.values())),
        )


def _start(
    session_key: str, user: AbstractBaseUser | AnonymousUser, raw: RawFrame, join: Callable[[str], None]
) -> StateFrame:
    """Start a conversation with the start page's first message, in one transaction; return its state.

    *join* adds the socket to the conversation's group once the send is committed and enqueued; the state is
    read after it in this same call (join, then read: docs/protocol.md, so nothing sent in between is missed),
    and the first answer's text waits for no second call. Raise ChatError or FrameError (storing nothing,
    joining nothing: no empty conversation is left behind), or SignedOut.
    """
    _check_signed_in(session_key, user)
    frame = _client_frame(raw)
    if frame["action"] != "send":
        raise FrameError("Send a message to start a conversation.")
    assert isinstance(user, User)
    with reads_once():  # the new conversation, its send and its state read the same settings
        conversation, _, _ = messages.conversation_start(
            owner=user, text=frame["text"], client_id=frame.get("client_id", "")
        )
        join(conversation_group(conversation.pk))
        return selectors.conversation_state(conversation=conversation)


def _act(
    session_key: str, user: AbstractBaseUser | AnonymousUser, conversation_id: int, raw: RawFrame
) -> None:
    """Carry out one client action; raise ChatError or FrameError with what the user should know, or
    SignedOut. The session is checked in the same thread call (a send waits for one hop, not two), against the
    owner's row read with the conversation (one query fewer on the way to the first token)."""
    try:
        conversation = access_conversation(user, conversation_id)
    except Http404:
        _check_signed_in(session_key, user)  # a socket whose session ended is told that first
        raise FrameError("This conversation no longer exists.") from None
    owner = conversation.owner
    if not sessions_signed_in(sessions={session_key: owner.pk}, users={owner.pk: owner}):
        raise SignedOut()
    frame = _client_frame(raw)
    if frame["action"] == "send":
        messages.message_send(
            conversation=conversation, text=frame["text"], client_id=frame.get("client_id", "")
        )
    elif frame["action"] == "stop":
        replies.reply_cancel(conversation=conversation)
    elif frame["action"] == "regenerate":
        messages.message_regenerate(conversation=conversation, message_id=frame["message"])
    elif frame["action"] == "edit":
        messages.message_edit(conversation=conversation, message_id=frame["message"], text=frame["text"])
    elif frame["action"] == "switch":
        branches.branch_switch(conversation=conversation, message_id=frame["message"])


def _client_frame(raw: RawFrame) -> ClientFrame:
    """Check the fields of *raw*'s action and return it typed; raise FrameError with what is missing."""
    frame: ClientFrame
    action = raw["action"]
    if action == "send":
        frame = SendFrame(action="send", text=_text(raw))
    elif action == "stop":
        frame = StopFrame(action="stop")
    elif action == "regenerate":
        frame = RegenerateFrame(action="regenerate", message=_message_id(raw))
    elif action == "edit":
        frame = EditFrame(action="edit", message=_message_id(raw), text=_text(raw))
    elif action == "switch":
        frame = SwitchFrame(action="switch", message=_message_id(raw))
    else:
        frame = SyncFrame(action="sync")
    client_id = _client_id(raw)
    if client_id is not None:
        frame["client_id"] = client_id
    return frame


def _text(frame: RawFrame) -> str:
    text = frame.get("text")
    if not isinstance(text, str):
        raise FrameError('This action needs the message as "text".')
    return text


def _message_id(frame: RawFrame) -> int:
    value = frame.get("message")
    if not isinstance(value, int) or isinstance(value, bool):
        raise FrameError('This action needs the id of a message as "message".')
    return value


def _client_id(frame: RawFrame) -> str | None:
    client_id = frame.get("client_id")
    return client_id if isinstance(client_id, str) else None


def _action(frame: RawFrame) -> str | None:
    action = frame.get("action")
    return action if isinstance(action, str) else None


class _Watcher:
    """The one periodic check of every socket of this process.

    Every WATCH_EVERY_S it reads, in one transaction whatever the number of sockets, whether their sessions
    are still signed in, what is stored in their conversations and whose reasoning a group hides; it closes
    the sockets whose session ended and sends the state again to those that missed events or whose user's
    reasoning visibility changed (an admin's switch, a group joined or left). Group memberships are renewed
    only when Redis lost
    them: a sentinel key set with them is gone after a Redis restart or flush (one SET per round tells).
    """

    def __init__(self) -> None:
        self.sockets: set[ConversationConsumer] = set()
        self.task: asyncio.Task[None] | None = None
        self.sentinel = f"{settings.GPTOSS_REDIS_PREFIX}:asgi:watch:{uuid.uuid4().hex}"

    def add(self, socket: ConversationConsumer) -> None:
        self.sockets.add(socket)
        loop = asyncio.get_running_loop()
        if self.task is None or self.task.done() or self.task.get_loop() is not loop:
            self.task = loop.create_task(self._run())

    def discard(self, socket: ConversationConsumer) -> None:
        self.sockets.discard(socket)
        if not self.sockets and self.task is not None:
            self.task.cancel()
            self.task = None

    async def _run(self) -> None:
        client = redis.asyncio.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
        try:
            while True:
                await asyncio.sleep(WATCH_EVERY_S)
                try:
                    await self.check(client)
                except Exception as error:  # Redis or PostgreSQL restarting: try again next round
                    logger.warning("socket watch of %d sockets failed: %s", len(self.sockets), error)
        finally:
            with suppress(Exception):
                await client.aclose()

    async def check(self, client: redis.asyncio.Redis) -> None:
        sockets = list(self.sockets)
        if not sockets:
            return
        await self._renew_groups(client, sockets)
        read = await database_sync_to_async(_watch_read)(
            {s.session_key: s.user_id for s in sockets},
            {s.conversation_id for s in sockets},
            {m for s in sockets for m in s.in_flight},
        )
        due: dict[ConversationConsumer, Coroutine[Any, Any, None]] = {}
        for socket in sockets:
            if socket.closing:
                continue
            shown = socket.user_id not in read.reasoning_hidden
            if socket.session_key not in read.signed_in:
                due[socket] = socket.signed_out()
            elif shown != socket.reasoning_shown:
                socket.reasoning_shown = shown  # the state sent now and every event after follow it
                due[socket] = socket.send_state()
            elif socket.missed(*read.summaries.get(socket.conversation_id, (0, {}))):
                due[socket] = socket.send_state()
        for socket, outcome in zip(
            due, await asyncio.gather(*due.values(), return_exceptions=True), strict=True
        ):
            if isinstance(outcome, Exception):
                logger.warning("conversation %s socket not updated: %s", socket.conversation_id, outcome)

    async def _renew_groups(self, client: redis.asyncio.Redis, sockets: list[ConversationConsumer]) -> None:
        if not await client.set(self.sentinel, 1, nx=True, ex=RENEW_GROUPS_EVERY_S):
            return  # the memberships this sentinel vouches for are still in Redis
        try:
            for socket in sockets:
                for group in socket.groups:
                    await socket.channel_layer.group_add(group, socket.channel_name)
        except Exception:
            with suppress(Exception):  # renew them all again next round
                await client.delete(self.sentinel)
            raise


_watcher = _Watcher()


class ConversationConsumer(AsyncWebsocketConsumer):
    conversation_id: int
    user_id: int
    session_key: str
    groups: tuple[str, ...] = ()  # the conversation's, and the user's (told when a session ends)
    # The newest stream seq this socket has been sent, per reply: older live events are dropped.
    seqs: dict[int, int]
    in_flight: dict[int, str]  # reply id → status, as this socket last told the browser
    # Whether the user may see reasoning (chat.selectors.reasoning_shown), read at connect and by the
    # watcher; when not, every frame goes out with its reasoning emptied.
    reasoning_shown = False
    newest: int = 0  # the newest message id this socket has told the browser of
    last_event: float = 0.0
    closing = False  # closed by the server: nothing more is sent
    # Resent states and forwarded events must not interleave: an event sent while the state is being read
    # would be overwritten by it in the browser, leaving a gap.
    sending: asyncio.Lock

    async def connect(self) -> None:
        user = self.scope.get("user")
        kwargs = self.scope["url_route"]["kwargs"]
        # 0: the start page's socket, whose first message starts its conversation (`_begin`).
        self.conversation_id = int(kwargs["conversation_id"]) if "conversation_id" in kwargs else 0
        if "conversation_id" not in kwargs:
            if user is None or not user.is_authenticated:
                await self.close()
                return
        else:
            try:
                await database_sync_to_async(access_conversation)(user, self.conversation_id)
            except Http404:
                # Refused before accept: a stranger learns nothing, not even that the conversation exists.
                await self.close()
                return
        assert user is not None
        self.user_id = user.pk
        self.reasoning_shown = await database_sync_to_async(_reasoning_shown)(user)
        self.session_key = self.scope["session"].session_key or ""
        self.seqs = {}
        # Join the group before reading the state, so no event falls between the two (docs/protocol.md).
        self.groups = (user_group(self.user_id),)
        if self.conversation_id:
            self.groups = (conversation_group(self.conversation_id), *self.groups)
        self.sending = asyncio.Lock()
        self.in_flight = {}
        for group in self.groups:
            await self.channel_layer.group_add(group, self.channel_name)
        await self.accept()
        await self.send_state()
        _watcher.add(self)

    async def disconnect(self, code: int) -> None:
        _watcher.discard(self)
        for group in self.groups:
            with suppress(Exception):  # Redis may be down; the membership expires anyway
                await self.channel_layer.group_discard(group, self.channel_name)

    def missed(self, newest: int, stored: dict[int, str]) -> bool:
        """Return whether the stored conversation differs from what this socket told its browser: events about
        it were lost (a Redis restart: a newer message, another branch on screen), or a streaming reply has
        been silent for a whole round."""
        silent = asyncio.get_running_loop().time() - self.last_event > WATCH_EVERY_S
        return (
            newest != self.newest or stored != self.in_flight or (silent and "streaming" in stored.values())
        )

    async def signed_out(self) -> None:
        """Close the socket of a session that ended; the browser goes to the login page (docs/protocol.md)."""
        logger.info(
            "conversation %s socket of user %s closed: its session ended", self.conversation_id, self.user_id
        )
        await self._close(CLOSE_SIGNED_OUT)

    async def _close(self, code: int, reason: str | None = None) -> None:
        self.closing = True
        await self.close(code=code, reason=reason)
        _watcher.discard(self)  # last: it may cancel the watcher's round that is closing this socket

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        if self.closing:
            return
        size = (
            len(text_data.encode(errors="surrogatepass")) if text_data is not None else len(bytes_data or b"")
        )
        if size > MAX_FRAME_BYTES:
            # Daphne already closes these (gptoss_web/asgi.py); this covers any other server.
            await self._close(CLOSE_TOO_BIG, reason=f"Frames are limited to {MAX_FRAME_BYTES // 1024} KiB.")
            return
        frame: RawFrame = {}
        try:
            frame = self._parse(text_data, bytes_data)
            if frame["action"] == "sync":
                if not await database_sync_to_async(_signed_in)(self.session_key, self.user_id):
                    raise SignedOut()
                await self.send_state()
                return
            if self.conversation_id == 0:
                await self._begin(frame)
                return
            await database_sync_to_async(_act)(
                self.session_key, self.scope.get("user"), self.conversation_id, frame
            )
        except SignedOut:
            await self.signed_out()  # nothing the frame asked for is done
            return
        except messages.AlreadySent:
            pass  # acknowledged again below; nothing is stored twice
        except (ChatError, FrameError) as error:
            if not frame and not await database_sync_to_async(_signed_in)(self.session_key, self.user_id):
                await self.signed_out()  # an unreadable frame from a socket whose session ended
                return
            await self._reply(
                ErrorFrame(
                    type="error", action=_action(frame), client_id=_client_id(frame), message=str(error)
                )
            )
            if frame.get("action") in ("edit", "regenerate", "switch"):
                await self.send_state()  # a stale edit or switch: show the conversation as it is now
            return
        await self._reply(AckFrame(type="ack", action=_action(frame), client_id=_client_id(frame)))

    async def _begin(self, frame: RawFrame) -> None:
        """Start the conversation with the start page's first message, then follow it as its own socket does:
        its group joined and its state read in the call that starts it (`_start`), say where it lives (the
        page moves there with the History API at the answer's first text), send its state."""
        user = self.scope.get("user")
        layer, channel = self.channel_layer, self.channel_name

        def join(group: str) -> None:  # in _start's thread: the group is joined on this socket's event loop
            async_to_sync(layer.group_add)(group, channel)

        state = await database_sync_to_async(_start)(self.session_key, user, frame, join)
        conversation_id = state["conversation"]
        self.conversation_id = conversation_id
        self.groups = (conversation_group(conversation_id), *self.groups)
        created = CreatedFrame(type="created", conversation=conversation_id, url=f"/c/{conversation_id}/")
        await self.send(text_data=json.dumps(created))
        async with self.sending:
            await self._show_state(state)
        await self._reply(AckFrame(type="ack", action="send", client_id=_client_id(frame)))

    def _parse(self, text_data: str | None, bytes_data: bytes | None) -> RawFrame:
        if bytes_data is not None or text_data is None:
            raise FrameError("Send JSON text frames.")
        try:
            frame = json.loads(text_data)
        except ValueError:
            raise FrameError("That frame is not valid JSON.") from None
        if not isinstance(frame, dict) or not isinstance(frame.get("action"), str):
            raise FrameError('A frame must be a JSON object with an "action".')
        if frame["action"] not in ACTIONS:
            raise FrameError(f"Unknown action {frame['action'][:40]!r}; use one of {', '.join(ACTIONS)}.")
        return cast(RawFrame, frame)

    async def _reply(self, reply: AckFrame | ErrorFrame) -> None:
        """Answer the frame this socket received (only to its sender)."""
        await self.send(text_data=json.dumps(reply))

    async def send_state(self) -> None:
        """Send the stored state of the conversation (closing the socket if it no longer exists)."""
        async with self.sending:
            if self.closing:
                return
            if self.conversation_id == 0:  # the start page: nothing yet
                await self.send(
                    text_data=json.dumps({"type": "state", "conversation": 0, "title": "", "messages": []})
                )
                return
            try:
                state = await database_sync_to_async(_state)(self.scope.get("user"), self.conversation_id)
            except Http404:
                await self._close(CLOSE_GONE)
                return
            await self._show_state(state)

    async def _show_state(self, state: StateFrame) -> None:
        """Send *state* and remember what it holds (call it holding `sending`)."""
        self.seqs = {m["id"]: m["seq"] for m in state["messages"]}
        self.newest = max(self.seqs, default=0)
        self.in_flight = {m["id"]: m["status"] for m in state["messages"] if m["status"] in Message.IN_FLIGHT}
        self.last_event = asyncio.get_running_loop().time()
        await self.send(text_data=json.dumps(state))

    async def chat_recheck(self, event: Mapping[str, object]) -> None:
        """One of the user's sessions ended or their account changed (chat.events.sessions_changed): check
        this socket's session before anything else is forwarded (a consumer handles one message at a time)."""
        if not self.closing and not await database_sync_to_async(_signed_in)(self.session_key, self.user_id):
            await self.signed_out()

    async def chat_sidebar(self, event: SidebarEventMessage) -> None:
        """Forward a change of the user's sidebar (chat.events.sidebar_changed): only the user's own sockets
        are in the group it is sent to, and it names a conversation id, nothing of its text."""
        async with self.sending:
            if not self.closing:
                await self.send(text_data=json.dumps(event["payload"]))

    async def chat_event(self, event: ChatEventMessage) -> None:
        """Forward a broadcast event (sent by chat.events), dropping stream events the socket already has.

        A `branch` event is answered with the new state instead: the thread on screen changed.
        """
        if event["payload"]["type"] == "branch":
            await self.send_state()
            return
        async with self.sending:
            if not self.closing:
                await self._forward(event["payload"])

    async def _forward(self, payload: BroadcastFrame) -> None:
        self.last_event = asyncio.get_running_loop().time()
        if payload["type"] == "started":
            self.in_flight[payload["message"]] = Message.Status.STREAMING
        elif payload["type"] == "done" or payload["type"] == "message":
            message = payload["message"]
            if (
                payload["type"] == "message"
                and message["status"] == Message.Status.QUEUED
                and (self.in_flight.get(message["id"]) == Message.Status.STREAMING)
            ):
                return  # its creation, read before a worker claimed it, arriving after its start
            self.newest = max(self.newest, message["id"])
            if message["status"] in Message.IN_FLIGHT:
                self.in_flight[message["id"]] = message["status"]
            else:
                self.in_flight.pop(message["id"], None)
            self.seqs[message["id"]] = max(self.seqs.get(message["id"], 0), message["seq"])
        elif payload["type"] == "delta" or payload["type"] == "tool" or payload["type"] == "notice":
            # A seq-numbered stream event: one this socket already has (in its state) is dropped.
            if payload["seq"] <= self.seqs.get(payload["message"], 0):
                return
            self.seqs[payload["message"]] = payload["seq"]
        if not self.reasoning_shown:
            payload = without_reasoning(payload)
        await self.send(text_data=json.dumps(payload))
