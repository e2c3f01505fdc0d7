"""Exports of other chat apps, written by hand from the shapes their files have (no real user's data).

- ChatGPT's `conversations.json`: a list of conversations, each a `mapping` tree of nodes
  {id, message: {id, author: {role, name}, content: {content_type, parts | text | thoughts}, create_time,
  recipient, metadata}, parent, children} and the `current_node` its reader saw last.
- Open WebUI's chat export: a list of {id, title, chat: {title, models, params, messages, history:
  {messages, currentId}}, created_at, updated_at}.
"""

from __future__ import annotations

import copy
import json
from typing import Any

XSS = '<img src=x onerror="window.__xss++"> <script>window.__xss++</script>'


def _node(
    node_id: str, parent: str | None, children: list[str], message: dict[str, Any] | None
) -> dict[str, Any]:
    return {"id": node_id, "message": message, "parent": parent, "children": children}


def _message(
    message_id: str,
    role: str,
    content: dict[str, Any],
    at: float | None,
    *,
    recipient: str = "all",
    name: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    return {
        "id": message_id,
        "author": {"role": role, "name": name, "metadata": {}},
        "create_time": at,
        "update_time": None,
        "content": content,
        "status": "finished_successfully",
        "end_turn": True,
        "weight": 1.0,
        "metadata": metadata or {},
        "recipient": recipient,
    }


def _text(*parts: Any) -> dict[str, Any]:
    return {"content_type": "text", "parts": list(parts)}


TIDES = {
    "title": "Tides",
    "create_time": 1700000000.0,
    "update_time": 1700000300.5,
    "default_model_slug": "gpt-4o",
    "conversation_id": "c-tides",
    "id": "c-tides",
    "current_node": "a4",
    "mapping": {
        "root": _node("root", None, ["sys"], None),
        "sys": _node(
            "sys",
            "root",
            ["u1"],
            _message(
                "sys", "system", _text(""), None, metadata={"is_visually_hidden_from_conversation": True}
            ),
        ),
        "u1": _node(
            "u1",
            "sys",
            ["a1", "old"],
            _message("u1", "user", _text("Why are there two tides a day?"), 1700000010.0),
        ),
        "old": _node(
            "old",
            "u1",
            [],
            _message("old", "assistant", _text("An older answer, regenerated."), 1700000015.0),
        ),
        "a1": _node(
            "a1",
            "u1",
            ["a2"],
            _message(
                "a1",
                "assistant",
                {
                    "content_type": "thoughts",
                    "thoughts": [{"summary": "Gravity", "content": "The Moon pulls both sides."}],
                },
                1700000020.0,
                metadata={"model_slug": "o3"},
            ),
        ),
        "a2": _node(
            "a2",
            "a1",
            ["t1"],
            _message(
                "a2",
                "assistant",
                {"content_type": "code", "language": "python", "text": "print(24 / 2)"},
                1700000021.0,
                recipient="python",
            ),
        ),
        "t1": _node(
            "t1",
            "a2",
            ["a3"],
            _message(
                "t1",
                "tool",
                {"content_type": "execution_output", "text": "12.0"},
                1700000022.0,
                name="python",
            ),
        ),
        "a3": _node(
            "a3",
            "t1",
            ["u2"],
            _message(
                "a3",
                "assistant",
                _text("Because the Moon **pulls** the near side, and the Earth away from the far side."),
                1700000030.0,
                metadata={"model_slug": "o3"},
            ),
        ),
        "u2": _node(
            "u2",
            "a3",
            ["a4"],
            _message(
                "u2",
                "user",
                {
                    "content_type": "multimodal_text",
                    "parts": [
                        {"content_type": "image_asset_pointer", "asset_pointer": "file-service://x"},
                        "And this beach?",
                    ],
                },
                1700000100.0,
            ),
        ),
        "a4": _node(
            "a4", "u2", [], _message("a4", "assistant", _text(f"{XSS} It is low tide."), 1700000110.0)
        ),
    },
}

GREETING = {
    "title": None,
    "create_time": 1690000000,
    "update_time": 1690000050,
    "current_node": "b2",
    "mapping": {
        "b0": _node("b0", None, ["b1"], None),
        "b1": _node(
            "b1", "b0", ["b2"], _message("b1", "user", _text("Hello there\nsecond line"), 1690000001)
        ),
        "b2": _node("b2", "b1", [], _message("b2", "assistant", _text("Hi!"), 1690000002)),
    },
}


def chatgpt_export() -> list[dict[str, Any]]:
    return copy.deepcopy([TIDES, GREETING])


def chatgpt_bytes(conversations: list[dict[str, Any]] | None = None) -> bytes:
    return json.dumps(chatgpt_export() if conversations is None else conversations).encode()


REASONING_REPLY = (
    '<details type="reasoning" done="true" duration="2">\n<summary>Thought for 2 seconds</summary>\n'
    "> The user wants a haiku.\n> Keep it short.\n</details>\n"
    '<details type="tool_calls" done="true" id="call_1" name="get_season" '
    'arguments="{&quot;hemisphere&quot;: &quot;north&quot;}" result="&quot;autumn&quot;">\n'
    "<summary>Tool Executed</summary>\n</details>\n"
    "Leaves fall, *slowly* down"
)


def openwebui_export() -> list[dict[str, Any]]:
    messages = {
        "m1": {"id": "m1", "parentId": None, "childrenIds": ["m2", "m2b"], "role": "user",
               "content": "Write a haiku", "timestamp": 1710000000, "models": ["llama3"]},
        "m2b": {"id": "m2b", "parentId": "m1", "childrenIds": [], "role": "assistant",
                "content": "An older haiku", "timestamp": 1710000001, "model": "llama3"},
        "m2": {"id": "m2", "parentId": "m1", "childrenIds": ["m3"], "role": "assistant",
               "content": REASONING_REPLY, "timestamp": 1710000005, "model": "llama3"},
        "m3": {"id": "m3", "parentId": "m2", "childrenIds": ["m4"], "role": "user",
               "content": f"Now with markup {XSS}", "timestamp": 1710000100,
               "files": [{"type": "image", "url": "data:image/png;base64,AAAA"}]},
        "m4": {"id": "m4", "parentId": "m3", "childrenIds": [], "role": "assistant",
               "content": "<think>Plain tags.</think>\nDone [link](javascript:alert(1))",
               "timestamp": 1710000105, "model": "llama3"},
    }  # fmt: skip
    chat = {
        "id": "",
        "title": "Haiku",
        "models": ["llama3"],
        "params": {"system": "Answer in verse."},
        "history": {"messages": messages, "currentId": "m4"},
        "messages": [messages[k] for k in ("m1", "m2", "m3", "m4")],
        "tags": [],
        "timestamp": 1710000000000,
    }
    plain = {
        "id": "chat-2",
        "title": "No history",
        "chat": {"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]},
        "created_at": 1710005000,
        "updated_at": 1710005001,
    }
    return [
        {"id": "chat-1", "user_id": "u", "title": "Haiku", "chat": chat, "created_at": 1710000000,
         "updated_at": 1710000105, "share_id": None, "archived": False},
        plain,
    ]  # fmt: skip


def openwebui_bytes(chats: list[dict[str, Any]] | None = None) -> bytes:
    return json.dumps(openwebui_export() if chats is None else chats).encode()
