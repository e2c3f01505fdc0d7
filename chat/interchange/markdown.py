"""A conversation as a Markdown document, for people to read: questions and answers as they were written.

Answers are Markdown already and go in as they are; reasoning sits in a collapsed `<details>` block (as on
the page); tool calls show their arguments and results in fenced blocks long enough to hold any backticks
the text has.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime

from chat.interchange.records import ConversationRecord, MessageRecord

_BACKTICKS = re.compile(r"`{3,}")
STATUS_WORDS = {"cancelled": "stopped", "failed": "failed", "interrupted": "interrupted"}


def document(conversation: ConversationRecord, *, exported_at: datetime) -> str:
    """Return *conversation* as Markdown."""
    facts = [f"Model: {conversation.model}" if conversation.model else ""]
    if conversation.effort:
        facts.append(f"reasoning effort: {conversation.effort}")
    if conversation.tools:
        facts.append(f"tools: {', '.join(conversation.tools)}")
    facts.append(f"exported {_when(exported_at)}")
    lines = [
        f"# {_one_line(conversation.title) or 'New conversation'}",
        "",
        " · ".join(f for f in facts if f),
        "",
    ]
    if conversation.instructions:
        lines += ["**Instructions**", "", _quote(conversation.instructions), ""]
    for message in conversation.messages:
        lines += ["---", "", *_message(message)]
    return "\n".join(lines).rstrip("\n") + "\n"


def _message(message: MessageRecord) -> list[str]:
    who = "You" if message.role == "user" else "Assistant"
    if message.role == "assistant" and message.model:
        who += f" ({message.model})"
    heading = f"### {who}"
    if message.created_at:
        heading += f" · {_when(message.created_at)}"
    lines = [heading, ""]
    if message.reasoning:
        lines += [
            "<details><summary>Reasoning</summary>",
            "",
            _fenced(message.reasoning, "text"),
            "",
            "</details>",
            "",
        ]
    for call in message.tool_calls:
        lines += [
            f"**Tool call:** `{_one_line(call.get('recipient', 'tool'))}`",
            "",
            _fenced(call.get("arguments", "")),
        ]
        if call.get("result"):
            lines += ["", "Result:", "", _fenced(call.get("result", ""))]
        lines.append("")
    if message.content:
        lines += [message.content.rstrip("\n"), ""]
    if message.status in STATUS_WORDS:
        note = f"*(This reply {STATUS_WORDS[message.status]}"
        lines += [note + (f": {_one_line(message.error)})*" if message.error else ".)*"), ""]
    return lines


def _fenced(text: str, lang: str = "") -> str:
    fence = "`" * max([3, *(len(run) + 1 for run in _BACKTICKS.findall(text))])
    return f"{fence}{lang}\n{text.rstrip(chr(10))}\n{fence}"


def _quote(text: str) -> str:
    return "\n".join(f"> {line}" if line else ">" for line in text.splitlines())


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _when(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
