"""Reading and writing conversation files, without a database: what each format becomes, and every refusal
naming what is wrong (chat/interchange)."""

from __future__ import annotations

import io
import json
import zipfile
from datetime import UTC, datetime
from typing import Any

import pytest

from chat.interchange import chatgpt, gptoss, markdown, openwebui, records
from chat.interchange.files import read_file
from chat.interchange.records import ConversationRecord, MessageRecord, Refused
from chat.models import Message, ReasoningEffort
from tests.chat.transfer_fixtures import XSS, chatgpt_bytes, chatgpt_export, openwebui_bytes

AT = datetime(2025, 3, 1, 9, 30, 15, 123456, tzinfo=UTC)


def sample() -> ConversationRecord:
    return ConversationRecord(
        title="Tides & moons",
        model="gpt-oss-20b",
        effort="high",
        instructions="Answer briefly.",
        tools=["python"],
        created_at=AT,
        updated_at=AT,
        messages=[
            MessageRecord(role="user", content="Two tides?", created_at=AT),
            MessageRecord(
                role="assistant",
                content="Yes: ```` four backticks ````",
                reasoning="Think.",
                tool_calls=[
                    {"recipient": "python", "channel": "analysis", "arguments": "```x```", "result": "1"}
                ],
                model="gpt-oss-20b",
                effort="high",
                created_at=AT,
                started_at=AT,
                finished_at=AT,
            ),
        ],
    )


def test_the_formats_words_are_the_databases() -> None:
    assert set(records.ROLES) == set(Message.Role.values)
    assert set(records.EFFORTS) == set(ReasoningEffort.values)
    assert set(records.STATUSES) | set(records.IN_FLIGHT) == set(Message.Status.values)


def test_own_json_reads_back_what_it_wrote() -> None:
    document = gptoss.document(sample(), exported_at=AT)
    assert document["format"] == "gptoss-web" and document["version"] == 1
    assert document["exported_at"] == "2025-03-01T09:30:15.123456Z"
    contents = read_file(gptoss.dumps(document), "tides.json")
    assert contents.source == "gptoss-web"
    [record] = contents.conversations
    expected = sample()
    expected.messages[1].tool_calls[0]["result"] = "1"
    assert record == expected


def test_markdown_fences_hold_any_backticks_and_keep_the_answer_as_written() -> None:
    text = markdown.document(sample(), exported_at=AT)
    assert text.startswith("# Tides & moons\n\nModel: gpt-oss-20b · reasoning effort: high · tools: python")
    assert "> Answer briefly." in text
    assert "### You · 2025-03-01 09:30 UTC\n\nTwo tides?" in text
    assert "<details><summary>Reasoning</summary>\n\n```text\nThink.\n```\n\n</details>" in text
    assert "**Tool call:** `python`\n\n````\n```x```\n````" in text
    assert "Yes: ```` four backticks ````" in text


def test_chatgpt_imports_every_branch_as_questions_and_replies_ending_at_the_one_last_shown() -> None:
    contents = read_file(chatgpt_bytes(), "conversations.json")
    assert contents.source == "ChatGPT"
    tides, greeting = contents.conversations
    assert tides.title == "Tides" and tides.model == "gpt-4o"
    assert tides.created_at == datetime.fromtimestamp(1700000000, tz=UTC)
    # The branch last shown comes first and ends at the leaf; the regenerated answer it replaced is another
    # version of the first reply (same question).
    assert [m.role for m in tides.messages] == ["user", "assistant", "user", "assistant", "assistant"]
    assert [m.parent for m in tides.messages] == [None, 0, 1, 2, 0] and tides.leaf == 3
    question, reply, photo, last, older = tides.messages
    assert older.content == "An older answer, regenerated."
    assert question.content == "Why are there two tides a day?"
    # Thoughts, a code call, its output and the text become one reply.
    assert reply.reasoning == "**Gravity**\n\nThe Moon pulls both sides."
    assert reply.tool_calls == [
        {"recipient": "python", "channel": "analysis", "arguments": "print(24 / 2)", "result": "12.0"}
    ]
    assert reply.content.startswith("Because the Moon **pulls**")
    assert reply.model == "o3"
    assert reply.created_at == datetime.fromtimestamp(1700000020, tz=UTC)
    assert reply.finished_at == datetime.fromtimestamp(1700000030, tz=UTC)
    assert photo.content == "[image asset pointer: not imported]\nAnd this beach?"
    assert last.content == f"{XSS} It is low tide."  # stored as written; the page sanitizes it
    assert greeting.title == "" and [m.content for m in greeting.messages] == [
        "Hello there\nsecond line",
        "Hi!",
    ]
    assert dict(contents.left_out) == {chatgpt.ATTACHMENTS: 1}


def test_chatgpt_content_a_reply_holds_that_is_not_text_is_left_out_and_counted() -> None:
    widget = {"content_type": "model_editable_context", "model_set_context": "x"}
    data = _b2(lambda m: m.update(content=widget))
    contents = read_file(data, "conversations.json")
    assert [m.content for m in contents.conversations[1].messages] == ["Hello there\nsecond line"]
    assert contents.left_out[f"{chatgpt.OTHER_CONTENT} (model_editable_context)"] == 1


def test_open_webui_imports_the_current_branch_with_reasoning_and_tool_calls() -> None:
    contents = read_file(openwebui_bytes(), "chat-export.json")
    assert contents.source == "Open WebUI"
    haiku, plain = contents.conversations
    assert haiku.title == "Haiku" and haiku.model == "llama3" and haiku.instructions == "Answer in verse."
    assert [m.role for m in haiku.messages] == ["user", "assistant", "user", "assistant"]
    reply = haiku.messages[1]
    assert reply.content == "Leaves fall, *slowly* down"
    assert reply.reasoning == "The user wants a haiku.\nKeep it short."
    assert reply.tool_calls == [
        {
            "recipient": "functions.get_season",
            "channel": "commentary",
            "arguments": '{"hemisphere": "north"}',
            "result": '"autumn"',
        }
    ]
    assert haiku.messages[3].reasoning == "Plain tags." and haiku.messages[3].content.startswith("Done")
    assert haiku.messages[0].created_at == datetime.fromtimestamp(1710000000, tz=UTC)
    assert [m.content for m in plain.messages] == ["Q", "A"]
    assert dict(contents.left_out) == {openwebui.OTHER_BRANCHES: 1, openwebui.ATTACHMENTS: 1}


def test_a_zip_from_chatgpt_or_of_this_apps_export_is_read_too() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("chat.html", "<html></html>")
        archive.writestr("conversations.json", chatgpt_bytes())
    assert len(read_file(buffer.getvalue(), "export.zip").conversations) == 2

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("top/README.md", "read me")
        archive.writestr("top/account.json", "{}")
        archive.writestr(
            "top/conversations/0001-a.json", gptoss.dumps(gptoss.document(sample(), exported_at=AT))
        )
        archive.writestr("top/conversations/0001-a.md", "# a")
    contents = read_file(buffer.getvalue(), "mine.zip")
    assert contents.source == "gptoss-web" and [c.title for c in contents.conversations] == ["Tides & moons"]


def _chatgpt_with(change: Any) -> bytes:
    conversations = chatgpt_export()
    conversations.append(json.loads(json.dumps(conversations[1])))
    change(conversations)
    return json.dumps(conversations).encode()


def _parts_not_text(conversations: list[dict[str, Any]]) -> None:
    third = conversations[2]
    node = third["mapping"].pop("b1")
    node["message"]["id"] = "abc"
    node["message"]["content"]["parts"] = [42]
    third["mapping"]["b1"] = node


def _own(**changes: Any) -> bytes:
    document = gptoss.document(sample(), exported_at=AT)
    for key, value in changes.items():
        if key.startswith("message_"):
            document["messages"][1][key.removeprefix("message_")] = value
        else:
            document[key] = value
    return gptoss.dumps(document)


C2 = "conversations.json: conversation 2, message"
KINDS = (
    "not a conversation export; expected this app's JSON or export zip, ChatGPT's conversations.json "
    "(or its export zip), or Open WebUI's chat export"
)


def _b1(change: Any) -> bytes:
    return _chatgpt_with(lambda c: change(c[1]["mapping"]["b1"]["message"]))


def _b2(change: Any) -> bytes:
    return _chatgpt_with(lambda c: change(c[1]["mapping"]["b2"]["message"]))


def _webui(message: dict[str, Any]) -> bytes:
    return openwebui_bytes([{"chat": {"messages": [message]}}])


SURROGATE = (
    b'[{"mapping": {"x": {"message": {"author": {"role": "user"}, "content": {"content_type": "text", '
    b'"parts": ["\\ud800"]}}, "parent": null}}, "current_node": "x"}]'
)
REFUSALS = [
    pytest.param(
        _chatgpt_with(_parts_not_text),
        "conversations.json",
        "conversations.json: conversation 3, message 'abc': content is not text",
        id="parts not text",
    ),
    pytest.param(
        _b1(lambda m: m["content"].update(content_type="audio")),
        "conversations.json",
        f"{C2} 'b1': content is not text (content_type 'audio')",
        id="audio content",
    ),
    pytest.param(
        _chatgpt_with(lambda c: c[0].update(current_node="gone")),
        "conversations.json",
        "conversations.json: conversation 1: the last message shown ('gone') is not one of its messages",
        id="no current node",
    ),
    pytest.param(
        _chatgpt_with(lambda c: c[1]["mapping"]["b0"].update(parent="b2")),
        "conversations.json",
        f"{C2} 'b2': the parent links go round in a loop",
        id="a loop",
    ),
    pytest.param(
        _chatgpt_with(lambda c: c[1]["mapping"]["b2"].update(parent="nowhere")),
        "conversations.json",
        f"{C2} 'b2': its parent 'nowhere' is not one of its messages",
        id="a lost parent",
    ),
    pytest.param(
        _b2(lambda m: m.update(create_time="yesterday")),
        "conversations.json",
        f"{C2} 'b2': create_time is not a time ('yesterday')",
        id="a bad time",
    ),
    pytest.param(
        _b2(lambda m: m["content"].update(parts=["a\x00b"])),
        "conversations.json",
        f"{C2} 'b2': content contains a NUL character, which cannot be stored",
        id="a NUL",
    ),
    pytest.param(
        SURROGATE,
        "conversations.json",
        "conversations.json: conversation 1, message 'x': content contains a lone UTF-16 surrogate, "
        "which cannot be stored",
        id="a surrogate",
    ),
    pytest.param(
        _webui({"role": "user", "content": [1]}),
        "webui.json",
        "webui.json: conversation 1, message '1': content is not text",
        id="open webui list content",
    ),
    pytest.param(
        _webui({"id": "q", "role": "tool", "content": "x"}),
        "webui.json",
        "webui.json: conversation 1, message 'q': role 'tool' is not one of system, user, assistant",
        id="open webui role",
    ),
    pytest.param(
        _own(version=2),
        "tides.json",
        "tides.json: gptoss-web format version 2 is newer than this server reads (version 1); "
        "import it on an up-to-date server",
        id="newer version",
    ),
    pytest.param(
        _own(message_role="system"),
        "tides.json",
        "tides.json: message 2: role 'system' is not 'user' or 'assistant'",
        id="a system role",
    ),
    pytest.param(
        _own(message_status="exploded"),
        "tides.json",
        "tides.json: message 2: status 'exploded' is not one of done, cancelled, failed, interrupted",
        id="a bad status",
    ),
    pytest.param(
        _own(effort="extreme"),
        "tides.json",
        "tides.json: effort 'extreme' is not one of low, medium, high",
        id="a bad effort",
    ),
    pytest.param(
        _own(instructions="x" * 8001),
        "tides.json",
        "tides.json: instructions is 8,001 characters long; the limit is 8,000",
        id="long instructions",
    ),
    pytest.param(
        _own(message_tool_calls=[{"recipient": "python", "error": "yes"}]),
        "tides.json",
        "tides.json: message 2, tool call 1: error is not true or false",
        id="a bad tool call",
    ),
    pytest.param(
        b'{"format": "other-app", "version": 1}',
        "x.json",
        "x.json: format 'other-app' is not 'gptoss-web'",
        id="someone else's format",
    ),
    pytest.param(
        b"{nope",
        "x.json",
        "x.json: not JSON (line 1, column 2: Expecting property name enclosed in double quotes)",
        id="not JSON",
    ),
    pytest.param(b'["\xff"]', "x.json", "x.json: not UTF-8 text (byte 2 cannot be read)", id="not UTF-8"),
    pytest.param(b"[]", "x.json", "x.json: the file holds no conversations", id="nothing in it"),
    pytest.param(b'[{"question": "hi"}]', "x.json", f"x.json: {KINDS}", id="a foreign list"),
    pytest.param(b"42", "x.json", f"x.json: {KINDS}", id="a number"),
    pytest.param(b"PK\x03\x04broken", "x.zip", "x.zip: not a readable zip file", id="a broken zip"),
]


@pytest.mark.parametrize(("data", "name", "message"), REFUSALS)
def test_each_refusal_names_the_file_the_place_and_what_is_wrong(
    data: bytes, name: str, message: str
) -> None:
    with pytest.raises(Refused) as refused:
        read_file(data, name)
    assert str(refused.value) == message


def test_a_zip_without_conversations_is_refused() -> None:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("photos/beach.png", b"\x89PNG")
    with pytest.raises(Refused, match=r"^x.zip: a zip without conversations.json \(ChatGPT's export\) or a "):
        read_file(buffer.getvalue(), "x.zip")


def test_caps_on_size_conversations_and_messages(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(records, "MAX_FILE_BYTES", 1024 * 1024)
    monkeypatch.setattr("chat.interchange.files.MAX_FILE_BYTES", 1024 * 1024)
    with pytest.raises(Refused, match=r"^big.json: 1.5 MB is larger than the limit of 1 MB$"):
        read_file(b" " * (1536 * 1024), "big.json")
    # A zip whose members would unpack past the cap is refused before they are unpacked.
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("conversations.json", b" " * (2 * 1024 * 1024))
    with pytest.raises(Refused, match=r"^bomb.zip: 2 MB once unpacked, larger than the limit of 1 MB$"):
        read_file(buffer.getvalue(), "bomb.zip")

    monkeypatch.setattr("chat.interchange.files.MAX_CONVERSATIONS", 1)
    with pytest.raises(Refused, match=r"^c.json: 2 conversations; the limit is 1 in one file$"):
        read_file(chatgpt_bytes(), "c.json")
    monkeypatch.setattr("chat.interchange.files.MAX_MESSAGES", 5)
    monkeypatch.setattr("chat.interchange.files.MAX_CONVERSATIONS", 10)
    with pytest.raises(Refused, match=r"^c.json: 7 messages; the limit is 5 in one file$"):
        read_file(chatgpt_bytes(), "c.json")
