"""The conversation WebSocket: owners get the stored state; strangers, anonymous users and other origins
are refused before the handshake completes."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.conf import settings
from django.contrib.auth.models import Group
from django.contrib.sessions.models import Session
from django.db import connections
from django.test import Client
from django.utils import timezone

from chat import events
from chat.consumers import WATCH_EVERY_S
from chat.models import Conversation, GroupReasoning, Message, ReasoningVisibility
from chat.services.messages import message_send
from gptoss_web.asgi import application
from gptoss_web.devtools.tinymodel import SCRIPTS
from inference.worker.tasks import generate_reply_task
from tests.factories import PASSWORD, make_conversation
from tests.sockets import connected, cookie_header, socket

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("close_thread_connections")]


async def test_the_owner_receives_the_stored_conversation_first(alice: object) -> None:
    conversation = await sync_to_async(make_conversation)(alice)
    await sync_to_async(message_send)(conversation=conversation, text="hello socket")
    communicator = socket(conversation.pk, await sync_to_async(cookie_header)(alice))
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
    headers = [await sync_to_async(cookie_header)(bob)] if who == "stranger" else []
    communicator = socket(conversation.pk, *headers)
    connected, _ = await communicator.connect()
    assert not connected
    await communicator.disconnect()


async def test_a_foreign_origin_is_refused(alice: object) -> None:
    conversation = await sync_to_async(make_conversation)(alice)
    communicator = WebsocketCommunicator(
        application,
        f"/ws/conversations/{conversation.pk}/",
        headers=[(b"origin", b"https://evil.example"), await sync_to_async(cookie_header)(alice)],
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
    ],
)
async def test_malformed_frames_get_an_error_frame_and_the_socket_stays_open(
    alice: object, frame: str, error: str
) -> None:
    conversation = await sync_to_async(make_conversation)(alice)
    communicator = socket(conversation.pk, await sync_to_async(cookie_header)(alice))
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


async def test_a_frame_above_256_kib_closes_the_socket_with_1009_and_a_reason(alice: object) -> None:
    conversation = await sync_to_async(make_conversation)(alice)
    communicator = socket(conversation.pk, await sync_to_async(cookie_header)(alice))
    connected, _ = await communicator.connect()
    try:
        assert connected
        await communicator.receive_json_from()  # the stored state
        await communicator.send_to(text_data=json.dumps({"action": "send", "text": "x" * 300_000}))
        closed = await communicator.receive_output()
        assert closed == {"type": "websocket.close", "code": 1009, "reason": "Frames are limited to 256 KiB."}
        assert await sync_to_async(Message.objects.count)() == 0
    finally:
        await communicator.disconnect()


# --- Actions and live streams (the real task on the tiny model, in a thread) ---------------------------


def _generate(message_id: int) -> None:
    try:
        generate_reply_task.run(message_id)
    finally:
        connections.close_all()


async def _frames_until_done(
    communicator: WebsocketCommunicator, timeout: float = 60
) -> list[dict[str, Any]]:
    frames = []
    while True:
        frame = await communicator.receive_json_from(timeout=timeout)
        frames.append(frame)
        if frame["type"] == "done":
            return frames


def _replay(state_message: dict[str, Any], frames: list[dict[str, Any]]) -> tuple[str, list[int]]:
    """Apply stream frames to a message as the browser does; return its text and the seqs applied."""
    text, seqs, last = state_message["content"], [], state_message["seq"]
    for frame in frames:
        if frame["type"] == "delta" and frame["message"] == state_message["id"]:
            assert frame["seq"] > last, "a duplicate or stale event was forwarded"
            text += frame["content"]
            last = frame["seq"]
            seqs.append(frame["seq"])
    return text, seqs


async def test_send_is_acked_and_every_tab_sees_the_new_messages(alice: object) -> None:
    conversation = await sync_to_async(make_conversation)(alice)
    first, _ = await connected(alice, conversation.pk)
    second, _ = await connected(alice, conversation.pk)
    try:
        await first.send_json_to({"action": "send", "text": "Hello there", "client_id": "c1"})
        seen = [await first.receive_json_from() for _ in range(4)]
        assert {"type": "ack", "action": "send", "client_id": "c1"} in seen
        created = [f["message"] for f in seen if f["type"] == "message"]
        assert [(m["role"], m["status"], m["content"]) for m in created] == [
            ("user", "done", "Hello there"),
            ("assistant", "queued", ""),
        ]
        assert created[1]["queue_position"] == 1
        assert {"type": "title", "title": "Hello there"} in seen
        other = [await second.receive_json_from() for _ in range(3)]  # no ack for the other tab
        assert sorted(f["type"] for f in other) == ["message", "message", "title"]
    finally:
        await first.disconnect()
        await second.disconnect()


@pytest.mark.parametrize(
    ("frame", "error"),
    [
        ({"action": "send", "text": "   "}, "Type a message first."),
        ({"action": "send", "text": "x" * 32001}, "the limit is 32,000"),
        ({"action": "send"}, 'needs the message as "text"'),
        ({"action": "regenerate", "message": "12"}, 'needs the id of a message as "message"'),
        ({"action": "edit", "message": 999999, "text": "new"}, "is not on the branch shown any more"),
    ],
)
async def test_bad_actions_get_a_clear_error_and_store_nothing(
    alice: object, frame: dict[str, Any], error: str
) -> None:
    conversation = await sync_to_async(make_conversation)(alice)
    communicator, _ = await connected(alice, conversation.pk)
    try:
        await communicator.send_json_to({**frame, "client_id": "c9"})
        reply = await communicator.receive_json_from()
        assert reply["type"] == "error" and error in reply["message"], reply
        assert reply["client_id"] == "c9"
        assert await sync_to_async(Message.objects.count)() == 0
    finally:
        await communicator.disconnect()


async def test_sending_while_an_answer_is_generating_is_refused_and_nothing_is_queued(alice: object) -> None:
    conversation = await sync_to_async(make_conversation)(alice)
    await sync_to_async(message_send)(conversation=conversation, text="first")
    communicator, _ = await connected(alice, conversation.pk)
    try:
        await communicator.send_json_to({"action": "send", "text": "second", "client_id": "c2"})
        reply = await communicator.receive_json_from()
        assert reply["type"] == "error" and "still answering" in reply["message"]
        assert await sync_to_async(Message.objects.count)() == 2
    finally:
        await communicator.disconnect()


async def test_an_answer_streams_in_contiguous_steps_and_ends_equal_to_the_stored_text(alice: object) -> None:
    conversation = await sync_to_async(make_conversation)(alice)
    _, reply = await sync_to_async(message_send)(conversation=conversation, text="Please think about it")
    communicator, state = await connected(alice, conversation.pk)
    try:
        task = asyncio.get_running_loop().run_in_executor(None, _generate, reply.pk)
        frames = await _frames_until_done(communicator)
        await task
        kinds = [f["type"] for f in frames]
        assert "started" in kinds
        done = frames[-1]["message"]
        text, seqs = _replay(state["messages"][1], frames)
        reasoning = "".join(f["reasoning"] for f in frames if f["type"] == "delta")
        stored = await sync_to_async(Message.objects.get)(pk=reply.pk)
        assert done["status"] == "done" and done["content"] == stored.content == text
        assert text == SCRIPTS["reasoning"].first.final
        assert reasoning == stored.reasoning == SCRIPTS["reasoning"].first.analysis
        assert seqs == list(range(1, len(seqs) + 1)) and len(seqs) >= 2
        assert done["seq"] == stored.stream_seq >= seqs[-1]
        assert done["stats"]["answer_tokens"] > 0 and done["html"].startswith("<p>")
    finally:
        await communicator.disconnect()


async def test_a_socket_that_joins_mid_answer_gets_no_gap_and_no_duplicate(alice: object) -> None:
    conversation = await sync_to_async(make_conversation)(alice)
    _, reply = await sync_to_async(message_send)(conversation=conversation, text="Tell me an endless story")
    first, _ = await connected(alice, conversation.pk)
    late = None
    try:
        task = asyncio.get_running_loop().run_in_executor(None, _generate, reply.pk)
        while (await first.receive_json_from(timeout=60))["type"] != "delta":
            pass
        await asyncio.sleep(1.5)  # past the first database write
        late, state = await connected(alice, conversation.pk)
        joined = state["messages"][1]
        assert joined["status"] == "streaming" and joined["seq"] > 0 and joined["content"]
        await asyncio.sleep(0.5)
        await late.send_json_to({"action": "stop"})
        frames = await _frames_until_done(late)
        await task
        text, _ = _replay(joined, frames)
        stored = await sync_to_async(Message.objects.get)(pk=reply.pk)
        assert stored.status == "cancelled" and stored.content
        assert text == stored.content == frames[-1]["message"]["content"]
    finally:
        await first.disconnect()
        if late is not None:
            await late.disconnect()


async def test_stop_frees_the_answer_within_a_second(alice: object) -> None:
    conversation = await sync_to_async(make_conversation)(alice)
    _, reply = await sync_to_async(message_send)(conversation=conversation, text="Tell me an endless story")
    communicator, _ = await connected(alice, conversation.pk)
    try:
        task = asyncio.get_running_loop().run_in_executor(None, _generate, reply.pk)
        while (await communicator.receive_json_from(timeout=60))["type"] != "delta":
            pass
        loop = asyncio.get_running_loop()
        stopped_at = loop.time()
        await communicator.send_json_to({"action": "stop"})
        frames = await _frames_until_done(communicator)
        elapsed = loop.time() - stopped_at
        await task
        assert frames[-1]["message"]["status"] == "cancelled"
        assert elapsed < 1.0, f"Stop took {elapsed:.2f} s"
        stored = await sync_to_async(Message.objects.get)(pk=reply.pk)
        assert stored.answer_tokens < 4000  # it did not run to its length limit
    finally:
        await communicator.disconnect()


async def test_a_replys_queued_frame_that_arrives_after_its_start_never_reaches_the_browser(
    alice: object,
) -> None:
    """The send reads a reply's place after enqueueing it; a fast worker may start it before that frame goes
    out. The browser must never see the reply go back from streaming to queued."""
    conversation = await sync_to_async(make_conversation)(alice)
    _, reply = await sync_to_async(message_send)(conversation=conversation, text="Hello")
    communicator, _ = await connected(alice, conversation.pk)
    try:
        queued = events.message_payload(reply, queue_position=1)
        await sync_to_async(events.broadcast)(conversation.pk, {"type": "started", "message": reply.pk})
        await sync_to_async(events.broadcast)(conversation.pk, {"type": "message", "message": queued})
        await sync_to_async(events.broadcast)(conversation.pk, {"type": "title", "title": "After"})
        seen = [await communicator.receive_json_from(timeout=5) for _ in range(2)]
        assert [f["type"] for f in seen] == ["started", "title"]
    finally:
        await communicator.disconnect()


async def test_a_socket_idle_longer_than_the_redis_read_timeout_still_receives_events(alice: object) -> None:
    conversation = await sync_to_async(make_conversation)(alice)
    communicator, _ = await connected(alice, conversation.pk)
    try:
        await asyncio.sleep(6)  # channels_redis blocks 5 s per read of the socket's channel
        await communicator.send_json_to({"action": "send", "text": "Hello after a pause"})
        seen = [await communicator.receive_json_from(timeout=5) for _ in range(4)]
        assert {f["type"] for f in seen} == {"ack", "message", "title"}
    finally:
        await communicator.disconnect()


async def test_a_tool_call_streams_as_a_card_that_fills_in_with_its_result(alice: object) -> None:
    conversation = await sync_to_async(make_conversation)(alice, enabled_tools=["python"])
    _, reply = await sync_to_async(message_send)(conversation=conversation, text="Run some python")
    communicator, _ = await connected(alice, conversation.pk)
    try:
        task = asyncio.get_running_loop().run_in_executor(None, _generate, reply.pk)
        frames = await _frames_until_done(communicator)
        await task
        tools = [f for f in frames if f["type"] == "tool"]
        assert [(f["index"], "result" in f["call"]) for f in tools] == [(0, False), (0, True)]
        assert tools[0]["call"]["recipient"] == "python" and tools[1]["call"]["result"] == "42\n"
        seqs = [f["seq"] for f in frames if "seq" in f and f["type"] != "done"]
        assert seqs == list(range(1, len(seqs) + 1))
        stored = await sync_to_async(Message.objects.get)(pk=reply.pk)
        assert stored.tool_calls == [tools[1]["call"]] == frames[-1]["message"]["tool_calls"]
        assert frames[-1]["message"]["content"] == stored.content == SCRIPTS["python"].after_tool.final
    finally:
        await communicator.disconnect()


async def test_a_send_repeated_with_the_same_client_id_is_stored_once_and_acked_again(alice: object) -> None:
    conversation = await sync_to_async(make_conversation)(alice)
    communicator, _ = await connected(alice, conversation.pk)
    try:
        frame = {"action": "send", "text": "Hello once", "client_id": "draft-7"}
        await communicator.send_json_to(frame)
        first = [await communicator.receive_json_from() for _ in range(4)]
        assert {"type": "ack", "action": "send", "client_id": "draft-7"} in first
        await communicator.send_json_to(frame)  # the browser never saw the ack and sends again
        again = await communicator.receive_json_from()
        assert again == {"type": "ack", "action": "send", "client_id": "draft-7"}
        contents = await sync_to_async(lambda: list(Message.objects.values_list("content", flat=True)))()
        assert contents == ["Hello once", ""]
    finally:
        await communicator.disconnect()


async def test_a_socket_that_missed_a_replys_events_gets_the_stored_state_within_seconds(
    alice: object,
) -> None:
    """As after a Redis restart, which loses the group and the events in it."""
    conversation = await sync_to_async(make_conversation)(alice)
    communicator, _ = await connected(alice, conversation.pk)
    try:

        def answered_behind_the_sockets_back() -> int:
            question = Message.objects.create(conversation=conversation, role="user", content="Hi")
            reply = Message.objects.create(
                conversation=conversation,
                role="assistant",
                status="done",
                reply_to=question,
                content="Hello!",
            )
            return reply.pk

        reply_id = await sync_to_async(answered_behind_the_sockets_back)()
        state = await communicator.receive_json_from(timeout=12)
        assert state["type"] == "state"
        assert [(m["id"], m["content"]) for m in state["messages"]][-1] == (reply_id, "Hello!")
    finally:
        await communicator.disconnect()


# --- Text the database cannot store ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "error"),
    [
        ('{"action": "send", "text": "before\\u0000after", "client_id": "c5"}', "contains a NUL character"),
        ('{"action": "send", "text": "before\\ud800after", "client_id": "c5"}', "a lone UTF-16 surrogate"),
        ('{"action": "send", "text": "\\udfff", "client_id": "c5"}', "a lone UTF-16 surrogate"),
    ],
)
async def test_text_with_a_nul_or_a_lone_surrogate_gets_an_error_frame_and_the_socket_stays_open(
    alice: object, raw: str, error: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Sent as raw JSON, as an attacker would: json.loads accepts both escapes, PostgreSQL stores neither."""
    conversation = await sync_to_async(make_conversation)(alice)
    communicator, _ = await connected(alice, conversation.pk)
    try:
        await communicator.send_to(text_data=raw)
        reply = await communicator.receive_json_from(timeout=5)
        assert reply["type"] == "error" and error in reply["message"], reply
        assert reply["client_id"] == "c5"
        await communicator.send_json_to({"action": "sync"})
        assert (await communicator.receive_json_from(timeout=5))["type"] == "state"
        assert await sync_to_async(Message.objects.count)() == 0
        assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]
    finally:
        await communicator.disconnect()


async def test_an_edit_with_a_nul_character_gets_an_error_frame_and_changes_nothing(alice: object) -> None:
    conversation = await sync_to_async(make_conversation)(alice)
    question, reply = await sync_to_async(message_send)(conversation=conversation, text="original")
    await sync_to_async(Message.objects.filter(pk=reply.pk).update)(status="done")
    communicator, _ = await connected(alice, conversation.pk)
    try:
        raw = json.dumps({"action": "edit", "message": question.pk, "client_id": "e1"})
        await communicator.send_to(text_data=raw[:-1] + ', "text": "new\\u0000text"}')
        error = await communicator.receive_json_from(timeout=5)
        assert error["type"] == "error" and "contains a NUL character" in error["message"]
        contents = await sync_to_async(lambda: sorted(Message.objects.values_list("content", flat=True)))()
        assert contents == ["", "original"]
    finally:
        await communicator.disconnect()


# --- Sockets of a session that ended -----------------------------------------------------------------------


def _login(user: object) -> Client:
    client = Client()
    client.force_login(user)  # type: ignore[arg-type]
    return client


def _cookie_of(client: Client) -> tuple[bytes, bytes]:
    return (
        b"cookie",
        f"{settings.SESSION_COOKIE_NAME}={client.cookies[settings.SESSION_COOKIE_NAME].value}".encode(),
    )


async def _socket_of(client: Client, conversation_id: int) -> WebsocketCommunicator:
    communicator = socket(conversation_id, _cookie_of(client))
    connected, _ = await communicator.connect()
    assert connected
    assert (await communicator.receive_json_from())["type"] == "state"
    return communicator


def _end_session(how: str, user: Any, tab: Client, other_tab: Client) -> None:
    """End *tab*'s session the way a user or an admin does; *other_tab* is the same user's other browser."""
    if how == "logout":
        response = tab.post("/accounts/logout/")
        assert response.status_code == 302
    elif how == "password change":  # in the other browser, which stays signed in
        response = other_tab.post(
            "/accounts/password/",
            {
                "old_password": PASSWORD,
                "new_password1": "a new horse battery",
                "new_password2": "a new horse battery",
            },
        )
        assert response.status_code == 302, response.content
    elif how == "deactivation":
        user.refresh_from_db()
        user.is_active = False
        user.save()


SESSION_ENDINGS = ["logout", "password change", "deactivation"]


@pytest.mark.parametrize("how", SESSION_ENDINGS)
async def test_after_the_session_ends_a_send_on_an_open_socket_closes_it_with_4401_and_stores_nothing(
    alice: object, how: str
) -> None:
    conversation = await sync_to_async(make_conversation)(alice)
    tab, other_tab = await sync_to_async(_login)(alice), await sync_to_async(_login)(alice)
    communicator = await _socket_of(tab, conversation.pk)
    try:
        await sync_to_async(_end_session)(how, alice, tab, other_tab)
        await communicator.send_json_to({"action": "send", "text": "Still here?", "client_id": "c1"})
        assert await communicator.receive_output(timeout=5) == {"type": "websocket.close", "code": 4401}
        assert await sync_to_async(Message.objects.count)() == 0
    finally:
        await communicator.disconnect()


@pytest.mark.parametrize("how", SESSION_ENDINGS)
async def test_an_open_socket_of_a_session_that_ended_closes_with_4401_before_any_further_event(
    alice: object, how: str
) -> None:
    conversation = await sync_to_async(make_conversation)(alice)
    tab, other_tab = await sync_to_async(_login)(alice), await sync_to_async(_login)(alice)
    communicator = await _socket_of(tab, conversation.pk)
    try:
        await sync_to_async(_end_session)(how, alice, tab, other_tab)
        await sync_to_async(message_send)(conversation=conversation, text="Sent from elsewhere")
        assert await communicator.receive_output(timeout=5) == {"type": "websocket.close", "code": 4401}
        assert await communicator.receive_nothing(timeout=1)
    finally:
        await communicator.disconnect()


async def test_the_periodic_check_closes_an_idle_socket_whose_session_expired_within_one_period(
    alice: object,
) -> None:
    """Expiry sends no signal: the watcher's round is what notices."""
    conversation = await sync_to_async(make_conversation)(alice)
    tab = await sync_to_async(_login)(alice)
    communicator = await _socket_of(tab, conversation.pk)
    try:
        key = tab.cookies[settings.SESSION_COOKIE_NAME].value
        expired = timezone.now() - timedelta(seconds=1)
        await sync_to_async(Session.objects.filter(session_key=key).update)(expire_date=expired)
        closed = await communicator.receive_output(timeout=WATCH_EVERY_S + 5)
        assert closed == {"type": "websocket.close", "code": 4401}
    finally:
        await communicator.disconnect()


async def test_a_password_change_keeps_the_changing_browser_signed_in_and_closes_the_others(
    alice: object,
) -> None:
    conversation = await sync_to_async(make_conversation)(alice)
    changing, other = await sync_to_async(_login)(alice), await sync_to_async(_login)(alice)
    old_socket = await _socket_of(changing, conversation.pk)
    others_socket = await _socket_of(other, conversation.pk)
    new_socket = None
    try:
        await sync_to_async(_end_session)("password change", alice, other, changing)
        # The changing browser's page reconnects with its rotated session: that socket works.
        new_socket = await _socket_of(changing, conversation.pk)
        await new_socket.send_json_to({"action": "send", "text": "Hello again", "client_id": "c2"})
        seen = [await new_socket.receive_json_from(timeout=5) for _ in range(4)]
        assert {"type": "ack", "action": "send", "client_id": "c2"} in seen
        # The other browser's socket is closed, at its next frame and by the watcher alike.
        await others_socket.send_json_to({"action": "sync"})
        assert await others_socket.receive_output(timeout=5) == {"type": "websocket.close", "code": 4401}
        contents = await sync_to_async(lambda: sorted(Message.objects.values_list("content", flat=True)))()
        assert contents == ["", "Hello again"]
    finally:
        for communicator in (old_socket, others_socket, new_socket):
            if communicator is not None:
                await communicator.disconnect()


async def test_after_redis_loses_the_group_memberships_live_events_flow_again_within_a_round(
    alice: object,
) -> None:
    """As after a Redis restart or flush: the process's watcher notices its sentinel key is gone."""
    import redis.asyncio

    conversation = await sync_to_async(make_conversation)(alice)
    communicator, _ = await connected(alice, conversation.pk)
    client = redis.asyncio.Redis.from_url(settings.REDIS_URL)
    try:
        async for key in client.scan_iter(match=f"{settings.GPTOSS_REDIS_PREFIX}:asgi*"):
            await client.delete(key)  # the groups, and the watcher's sentinel with them
        group = f"{settings.GPTOSS_REDIS_PREFIX}:asgi:group:conversation.{conversation.pk}"
        deadline = asyncio.get_running_loop().time() + WATCH_EVERY_S + 15
        while not await client.exists(group):
            assert asyncio.get_running_loop().time() < deadline, "the memberships were never renewed"
            await asyncio.sleep(0.2)
        await sync_to_async(message_send)(conversation=conversation, text="Hello after the flush")
        seen = [await communicator.receive_json_from(timeout=5) for _ in range(3)]
        assert sorted(f["type"] for f in seen) == ["message", "message", "title"]
    finally:
        await client.aclose()
        await communicator.disconnect()


# --- The start page's socket: its first message starts the conversation -----------------------------------


def _start_communicator(*headers: tuple[bytes, bytes]) -> WebsocketCommunicator:
    return WebsocketCommunicator(
        application,
        "/ws/conversations/new/",
        headers=[(b"origin", b"http://127.0.0.1"), (b"host", b"127.0.0.1"), *headers],
    )


async def test_the_start_page_s_first_message_starts_a_conversation_the_socket_then_follows(
    alice: object,
) -> None:
    communicator = _start_communicator(await sync_to_async(cookie_header)(alice))
    connected, _ = await communicator.connect()
    try:
        assert connected
        assert await communicator.receive_json_from(timeout=10) == {
            "type": "state", "conversation": 0, "title": "", "messages": []
        }  # fmt: skip
        await communicator.send_json_to(
            {"action": "send", "text": "hello from the start page", "client_id": "c1"}
        )
        created = await communicator.receive_json_from(timeout=10)
        conversation = await sync_to_async(Conversation.objects.get)()
        assert created == {
            "type": "created",
            "conversation": conversation.pk,
            "url": f"/c/{conversation.pk}/",
        }
        state = await communicator.receive_json_from(timeout=10)
        assert state["conversation"] == conversation.pk
        assert [(m["role"], m["status"]) for m in state["messages"]] == [
            ("user", "done"),
            ("assistant", "queued"),
        ]
        assert await communicator.receive_json_from(timeout=10) == {
            "type": "ack",
            "action": "send",
            "client_id": "c1",
        }
        # From now on it is that conversation's socket: a Stop reaches its reply.
        await communicator.send_json_to({"action": "stop"})
        reply = await sync_to_async(Message.objects.get)(role="assistant")
        for _ in range(20):
            frame = await communicator.receive_json_from(timeout=10)
            if frame["type"] == "ack":
                break
        await sync_to_async(reply.refresh_from_db)()
        assert reply.status == Message.Status.CANCELLED
    finally:
        await communicator.disconnect()


async def test_a_refused_first_message_leaves_no_conversation_and_anonymous_is_refused(alice: object) -> None:
    communicator = _start_communicator(await sync_to_async(cookie_header)(alice))
    await communicator.connect()
    try:
        await communicator.receive_json_from(timeout=10)
        await communicator.send_json_to({"action": "send", "text": "   ", "client_id": "c1"})
        error = await communicator.receive_json_from(timeout=10)
        assert error["type"] == "error" and error["client_id"] == "c1" and error["message"]
        await communicator.send_json_to({"action": "stop"})
        assert (await communicator.receive_json_from(timeout=10))["type"] == "error"
        assert not await sync_to_async(Conversation.objects.exists)()
    finally:
        await communicator.disconnect()
    anonymous = _start_communicator()
    connected, _ = await anonymous.connect()
    assert not connected
    await anonymous.disconnect()


# --- Reasoning a group hides -------------------------------------------------------------------------------


def _hide_reasoning_from(user: Any) -> None:
    group = Group.objects.create(name=f"no-reasoning-{user.pk}")
    GroupReasoning.objects.create(group=group, visibility=ReasoningVisibility.HIDDEN)
    user.groups.add(group)


async def test_reasoning_a_group_hides_never_reaches_the_socket_live_or_stored(alice: Any) -> None:
    """Neither the live deltas nor the stored state carry it; the answer streams as it always does."""
    analysis = SCRIPTS["reasoning"].first.analysis
    await sync_to_async(_hide_reasoning_from)(alice)
    conversation = await sync_to_async(make_conversation)(alice)
    _, reply = await sync_to_async(message_send)(conversation=conversation, text="Please think about it")
    communicator, state = await connected(alice, conversation.pk)
    try:
        task = asyncio.get_running_loop().run_in_executor(None, _generate, reply.pk)
        frames = await _frames_until_done(communicator)
        await task
        stored = await sync_to_async(Message.objects.get)(pk=reply.pk)
        assert stored.reasoning == analysis and stored.reasoning_tokens > 0  # generated and kept
        text, seqs = _replay(state["messages"][1], frames)
        assert text == stored.content == SCRIPTS["reasoning"].first.final
        assert seqs == list(range(1, len(seqs) + 1))  # no gap: reasoning-only deltas still come, empty
        assert all(f["reasoning"] == "" for f in frames if f["type"] == "delta")
        assert frames[-1]["message"]["reasoning"] == ""
        assert frames[-1]["message"]["stats"]["reasoning_tokens"] == stored.reasoning_tokens
        assert analysis[:12] not in json.dumps(frames)
    finally:
        await communicator.disconnect()
    again, state = await connected(alice, conversation.pk)  # the stored state, on a reconnect
    try:
        assert [m["reasoning"] for m in state["messages"]] == ["", ""]
        assert analysis[:12] not in json.dumps(state)
    finally:
        await again.disconnect()


async def test_an_open_socket_stops_showing_reasoning_within_a_round_of_the_admins_switch(
    alice: Any,
) -> None:
    conversation = await sync_to_async(make_conversation)(alice)
    _, reply = await sync_to_async(message_send)(conversation=conversation, text="Please think about it")
    communicator, _ = await connected(alice, conversation.pk)
    try:
        shown = {
            "type": "delta",
            "message": reply.pk,
            "seq": 1,
            "at": 0.0,
            "reasoning": "THINKING",
            "content": "",
        }
        await sync_to_async(events.broadcast)(conversation.pk, shown)  # type: ignore[arg-type]
        assert (await communicator.receive_json_from(timeout=5))["reasoning"] == "THINKING"

        await sync_to_async(_hide_reasoning_from)(alice)
        state = await communicator.receive_json_from(timeout=WATCH_EVERY_S + 10)
        assert state["type"] == "state"  # sent again, as the user now sees it
        hidden = {**shown, "seq": 2, "reasoning": "STILL THINKING"}
        await sync_to_async(events.broadcast)(conversation.pk, hidden)  # type: ignore[arg-type]
        frame = await communicator.receive_json_from(timeout=5)
        assert (frame["type"], frame["seq"], frame["reasoning"]) == ("delta", 2, "")
    finally:
        await communicator.disconnect()


async def test_a_broadcast_from_a_thread_that_runs_an_event_loop_still_reaches_the_socket(
    alice: object,
) -> None:
    """A broadcast waits in its caller's thread for its two round trips, also in a thread that runs an event
    loop (here the test's own, as where a test drives a browser): the socket in that loop then gets it."""
    conversation = await sync_to_async(make_conversation)(alice)
    communicator, _ = await connected(alice, conversation.pk)
    try:
        assert events.broadcast(conversation.pk, {"type": "title", "title": "From a loop"})
        assert await communicator.receive_json_from(timeout=5) == {"type": "title", "title": "From a loop"}
    finally:
        await communicator.disconnect()
