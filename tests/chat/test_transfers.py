"""Exports, imports and shares as services: what is stored, for whom; a refused file stores nothing."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from chat import selectors, transfer
from chat.errors import ChatError, ImportRefused
from chat.interchange import gptoss
from chat.models import Conversation, Message, Share
from chat.services import shares, transfers
from tests.chat.transfer_fixtures import XSS, chatgpt_bytes, openwebui_bytes
from tests.factories import make_conversation

pytestmark = pytest.mark.django_db

T0 = datetime(2025, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)


def answered(owner: Any, **kwargs: Any) -> Conversation:
    """A conversation with two finished turns, tool calls and reasoning, stored as the worker leaves them."""
    conversation = make_conversation(
        owner,
        title="Tides",
        instructions="Be brief.",
        enabled_tools=["python"],
        reasoning_effort="high",
        **kwargs,
    )
    turns = [
        ("Why two tides?", "Because of **the Moon** $e^{i\\pi}$.", "Gravity.", "done", ""),
        (XSS, "Stopped here", "", "failed", "The model failed (error 3f9c0a1e)."),
    ]
    for n, (question, answer, reasoning, status, error) in enumerate(turns):
        at = T0 + timedelta(minutes=n)
        asked = Message.objects.create(
            conversation=conversation, role="user", content=question, created_at=at
        )
        Message.objects.create(
            conversation=conversation,
            role="assistant",
            reply_to=asked,
            status=status,
            content=answer,
            reasoning=reasoning,
            error=error,
            model_name=conversation.model_name,
            reasoning_effort="high",
            tool_calls=[
                {
                    "recipient": "browser.open",
                    "channel": "analysis",
                    "arguments": '{"id": 1}',
                    "result": "page",
                    "started_at": "2025-01-02T03:04:06Z",
                    "finished_at": "2025-01-02T03:04:07Z",
                    "sources": [{"cursor": 1, "url": "https://example.org/", "title": "Example"}],
                }
            ]
            if n == 0
            else [],
            created_at=at + timedelta(seconds=1),
            started_at=at + timedelta(seconds=2),
            finished_at=at + timedelta(seconds=3),
        )
    return conversation


def snapshot() -> list[tuple[Any, ...]]:
    """Everything an import could touch, to compare before and after."""
    return [
        *Conversation.objects.order_by("pk").values_list("pk", "owner_id", "title", "updated_at"),
        *Message.objects.order_by("pk").values_list("pk", "conversation_id", "content", "reply_to_id"),
        *Share.objects.order_by("pk").values_list("pk", "revoked_at"),
    ]


def test_own_json_round_trips_a_conversation(alice: Any, bob: Any) -> None:
    original = answered(alice)
    data = transfer.conversation_json(original)
    document = json.loads(data)
    assert document["format"] == "gptoss-web" and document["version"] == 1
    assert (
        document["title"] == "Tides"
        and document["effort"] == "high"
        and document["instructions"] == "Be brief."
    )
    assert [m["role"] for m in document["messages"]] == ["user", "assistant", "user", "assistant"]
    assert document["messages"][1]["reasoning"] == "Gravity."
    assert document["messages"][1]["created_at"] == "2025-01-02T03:04:06.678901Z"

    imported = transfers.conversations_import(owner=bob, data=data, filename="tides.json")
    assert imported.source == "gptoss-web" and imported.message_count == 4 and imported.left_out == {}
    [copy] = imported.conversations
    assert copy.owner == bob and copy.pk != original.pk
    assert transfer.conversation_record(copy) == transfer.conversation_record(original)
    replies = list(copy.messages.filter(role="assistant").order_by("created_at"))
    assert [r.reply_to.content for r in replies if r.reply_to] == ["Why two tides?", XSS]
    assert replies[1].status == "failed" and replies[1].error == "The model failed (error 3f9c0a1e)."
    # Exported again, it is the same file (but for the time of the export).
    assert _without_export_time(transfer.conversation_json(copy)) == _without_export_time(data)


def _without_export_time(data: bytes) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(data)
    del document["exported_at"]
    return document


def test_chatgpt_and_open_webui_exports_become_the_importers_conversations(alice: Any, bob: Any) -> None:
    answered(bob)
    imported = transfers.conversations_import(
        owner=alice, data=chatgpt_bytes(), filename="conversations.json"
    )
    assert imported.source == "ChatGPT" and len(imported.conversations) == 2 and imported.message_count == 7
    tides = Conversation.objects.get(owner=alice, title="Tides")
    # gpt-4o is not served here: the conversation goes on with the importer's default model.
    assert tides.model_name == make_conversation(alice).model_name
    assert tides.updated_at == datetime.fromtimestamp(1700000300.5, tz=UTC)
    # The branch last shown is on screen; the answer it regenerated stays, as the first reply's other version.
    messages = list(selectors.message_list(conversation=tides))
    assert [m.role for m in messages] == ["user", "assistant", "user", "assistant"]
    assert messages[1].reply_to == messages[0] and messages[3].reply_to == messages[2]
    assert tides.current_leaf_id == messages[3].pk
    older = tides.messages.get(content="An older answer, regenerated.")
    assert older.parent == older.reply_to == messages[0] and not older.on_branch
    assert selectors.branch_positions(conversation=tides, messages=messages)[messages[1].pk]["count"] == 2
    assert messages[1].tool_calls[0]["result"] == "12.0" and messages[1].model_name == "o3"
    assert all(m.status == "done" for m in messages)
    # An untitled one is named after its first question, as a new conversation is.
    assert Conversation.objects.filter(owner=alice, title="Hello there").exists()

    imported = transfers.conversations_import(owner=alice, data=openwebui_bytes(), filename="webui.json")
    assert imported.source == "Open WebUI" and imported.message_count == 6
    haiku = Conversation.objects.get(owner=alice, title="Haiku")
    assert haiku.instructions == "Answer in verse."
    assert Conversation.objects.filter(owner=bob).count() == 1


def test_message_order_follows_the_file_whatever_its_clocks(alice: Any) -> None:
    chats = [{"title": "Clocks", "chat": {"messages": [
        {"role": "user", "content": "first", "timestamp": 1710000100},
        {"role": "assistant", "content": "second", "timestamp": 1710000000},
        {"role": "user", "content": "third"},
    ]}}]  # fmt: skip
    [conversation] = transfers.conversations_import(
        owner=alice, data=openwebui_bytes(chats), filename="w.json"
    ).conversations
    shown = [m.content for m in transfer.conversation_record(conversation).messages]
    assert shown == ["first", "second", "third"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"[1, 2", "bad.json: not JSON (line 1, column 6: Expecting ',' delimiter)"),
        (
            chatgpt_bytes()[:-1] + b', {"mapping": {}, "current_node": "x"}]',
            "bad.json: conversation 3: the last message shown ('x') is not one of its messages",
        ),
        (b'{"format": "gptoss-web", "version": 1, "messages": [{"role": "user", "content": 5}]}',
         "bad.json: message 1: content is not text"),
    ],
)  # fmt: skip
def test_a_refused_file_names_what_is_wrong_and_changes_nothing(
    alice: Any, bob: Any, data: bytes, message: str
) -> None:
    answered(alice)
    shares.share_create(conversation=answered(bob))
    before = snapshot()
    with pytest.raises(ImportRefused) as refused:
        transfers.conversations_import(owner=alice, data=data, filename="bad.json")
    assert str(refused.value) == message
    assert snapshot() == before


def test_a_failure_while_storing_leaves_nothing_behind(alice: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    answered(alice)
    before = snapshot()

    def fail(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("disk full")

    monkeypatch.setattr(Message.objects, "bulk_create", fail)
    with pytest.raises(RuntimeError):
        transfers.conversations_import(owner=alice, data=chatgpt_bytes(), filename="conversations.json")
    assert snapshot() == before


def test_a_share_is_a_snapshot_without_the_reply_being_written(alice: Any, bob: Any) -> None:
    conversation = answered(alice)
    in_flight = Message.objects.create(conversation=conversation, role="user", content="Later question")
    Message.objects.create(
        conversation=conversation, role="assistant", status="streaming", reply_to=in_flight
    )
    share = shares.share_create(conversation=conversation)
    assert share.owner == alice and share.message_count == 5 and share.title == "Tides"
    record = transfer.share_record(share)
    assert [m.content for m in record.messages][-1] == "Later question"
    # What the owner does afterwards does not change it.
    Message.objects.filter(conversation=conversation).update(content="rewritten")
    conversation.instructions = "changed"
    conversation.save()
    assert transfer.share_record(share) == record
    assert record.instructions == "Be brief."

    copy = shares.share_continue(share=share, reader=bob)
    assert copy.owner == bob and copy.title == "Tides"
    assert [m.content for m in transfer.conversation_record(copy).messages] == [
        m.content for m in record.messages
    ]
    assert copy.updated_at > timezone.now() - timedelta(minutes=1)  # at the top of the reader's list
    assert Conversation.objects.filter(owner=alice).count() == 1

    assert shares.share_revoke(share=share) is True
    share.refresh_from_db()
    assert share.revoked_at is not None and share.snapshot == {}
    assert shares.share_revoke(share=share) is False


def test_deleting_a_conversation_deletes_its_shares(alice: Any) -> None:
    conversation = answered(alice)
    shares.share_create(conversation=conversation)
    conversation.delete()
    assert not Share.objects.exists()


def test_nothing_to_share_in_an_empty_conversation(alice: Any) -> None:
    with pytest.raises(ChatError, match="nothing to share yet"):
        shares.share_create(conversation=make_conversation(alice))
    assert not Share.objects.exists()


def test_the_share_snapshot_is_this_apps_document(alice: Any) -> None:
    share = shares.share_create(conversation=answered(alice))
    assert share.snapshot["format"] == gptoss.FORMAT and share.snapshot["version"] == gptoss.VERSION
