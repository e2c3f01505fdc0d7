"""Open WebUI's chat export (Settings → Chats → Export, or a chat's own Download → Export chat (.json)).

A JSON list of chats, each {id, title, chat: {title, models, params: {system}, messages: [...],
history: {messages: {id: message}, currentId}}, created_at, updated_at}; a message is {id, parentId,
childrenIds, role, content, timestamp, model, files}. Like ChatGPT, Open WebUI keeps edits and regenerations
as a tree (`history`); the branch ending at `currentId` is imported, other branches are counted and left
out. Without a history, `chat.messages` is the thread.

Open WebUI writes a reply's reasoning and tool calls into its text as `<details type="reasoning">` and
`<details type="tool_calls">` blocks; they become the reply's reasoning and tool calls here.
"""

from __future__ import annotations

import html
import re
from collections import Counter
from typing import Any

from chat.interchange import records
from chat.interchange.records import ConversationRecord, MessageRecord, Refused
from inference.tools.records import ToolCallRecord

SOURCE = "Open WebUI"

OTHER_BRANCHES = (
    "messages on other branches (earlier edits and regenerations: only the last one seen is imported)"
)
SYSTEM = "system messages"
ATTACHMENTS = "images and files (only text is imported)"

_DETAILS = re.compile(r'<details type="(reasoning|tool_calls)"([^>]*)>(.*?)</details>\s*', re.DOTALL)
_ATTRIBUTE = re.compile(r'([\w-]+)="([^"]*)"')
_SUMMARY = re.compile(r"\A\s*<summary>.*?</summary>\s*", re.DOTALL)
_THINK = re.compile(r"\A\s*<think>(.*?)</think>\s*", re.DOTALL)


def looks_like(value: object) -> bool:
    return isinstance(value, dict) and isinstance(value.get("chat"), dict)


def read(items: list[Any], name: str, left_out: Counter[str]) -> list[ConversationRecord]:
    """Return the conversations of an Open WebUI export; count what is not imported into *left_out*."""
    return [
        _conversation(item, f"{name}: conversation {n}", left_out) for n, item in enumerate(items, start=1)
    ]


def _conversation(raw: object, where: str, left_out: Counter[str]) -> ConversationRecord:
    item = records.obj(raw, where, "the conversation")
    chat = records.obj(item.get("chat"), where, "chat")
    history = chat.get("history")
    if isinstance(history, dict) and isinstance(history.get("messages"), dict) and history["messages"]:
        nodes: dict[str, Any] = history["messages"]
        chain = records.branch(nodes, history.get("currentId"), "parentId", where)
        left_out[OTHER_BRANCHES] += len(nodes) - len(chain)
        thread = [(node_id, nodes[node_id]) for node_id in chain]
    else:
        listed = records.array(chat.get("messages"), where, "chat.messages")
        thread = [(str(n), m) for n, m in enumerate(listed, start=1)]
    messages: list[MessageRecord] = []
    for node_id, raw_message in thread:
        message = records.obj(raw_message, f"{where}, message '{node_id}'", "the message")
        here = f"{where}, message '{message.get('id') if isinstance(message.get('id'), str) else node_id}'"
        record = _message(message, here, left_out)
        if record is not None:
            messages.append(record)
    params = chat.get("params")
    system = params.get("system") if isinstance(params, dict) else None
    models = chat.get("models")
    model = models[0] if isinstance(models, list) and models and isinstance(models[0], str) else ""
    return ConversationRecord(
        title=records.title(item.get("title") or chat.get("title"), where),
        model=model[:100],
        instructions=records.text(
            system or chat.get("system"), where, "the system prompt", limit=records.MAX_INSTRUCTIONS_CHARS
        ),
        created_at=records.moment(item.get("created_at") or chat.get("timestamp"), where, "created_at"),
        updated_at=records.moment(item.get("updated_at"), where, "updated_at"),
        messages=messages,
    )


def _message(message: dict[str, Any], where: str, left_out: Counter[str]) -> MessageRecord | None:
    role = message.get("role")
    if role not in ("system", "user", "assistant"):
        raise Refused(f"{where}: role {role!r} is not one of system, user, assistant")
    content = message.get("content")
    if not isinstance(content, str):
        raise Refused(f"{where}: content is not text")
    content = records.text(content, where, "content")
    files = message.get("files")
    if isinstance(files, list):
        left_out[ATTACHMENTS] += len(files)
    at = records.moment(message.get("timestamp"), where, "timestamp")
    if role == "system":
        left_out[SYSTEM] += 1
        return None
    if role == "user":
        return MessageRecord(role="user", content=content, created_at=at)
    answer, reasoning, calls = _unfold(content)
    model = message.get("model")
    return MessageRecord(
        role="assistant",
        content=answer,
        reasoning=records.text(reasoning, where, "reasoning"),
        tool_calls=calls,
        model=model[:100] if isinstance(model, str) else "",
        created_at=at,
        finished_at=at,
    )


def _unfold(content: str) -> tuple[str, str, list[ToolCallRecord]]:
    """Split Open WebUI's reply text into the answer, the reasoning and the tool calls it embeds."""
    reasoning: list[str] = []
    calls: list[ToolCallRecord] = []
    think = _THINK.match(content)
    if think:
        reasoning.append(think.group(1).strip())
        content = content[think.end() :]

    def take(match: re.Match[str]) -> str:
        attributes = {k: html.unescape(v) for k, v in _ATTRIBUTE.findall(match.group(2))}
        if match.group(1) == "reasoning":
            body = _SUMMARY.sub("", match.group(3))
            reasoning.append(
                "\n".join(line.removeprefix(">").removeprefix(" ") for line in body.strip().splitlines())
            )
        else:
            calls.append(
                {
                    "recipient": f"functions.{attributes.get('name') or 'tool'}"[:200],
                    "channel": "commentary",
                    "arguments": attributes.get("arguments", ""),
                    "result": attributes.get("result", ""),
                }
            )
        return ""

    answer = _DETAILS.sub(take, content).strip()
    return answer, "\n\n".join(r for r in reasoning if r), calls[: records.MAX_TOOL_CALLS]
