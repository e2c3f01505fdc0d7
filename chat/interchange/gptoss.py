"""This app's own JSON: one conversation per document, `{"format": "gptoss-web", "version": 1, ...}`.

docs/export-format.md describes every field. A reader of version 1 ignores fields it does not know, so a
later version 1 may add some; a change that older readers would misread raises the version.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

from chat.interchange import records
from chat.interchange.records import ConversationRecord, MessageRecord, Refused

FORMAT = "gptoss-web"
VERSION = 1
SOURCE = "gptoss-web"


def document(conversation: ConversationRecord, *, exported_at: datetime) -> dict[str, Any]:
    """Return *conversation* as a version 1 document (a dict, ready for `json.dumps`)."""
    return {
        "format": FORMAT,
        "version": VERSION,
        "exported_at": records.iso(exported_at),
        "title": conversation.title,
        "model": conversation.model,
        "effort": conversation.effort,
        "instructions": conversation.instructions,
        "tools": list(conversation.tools),
        "created_at": records.iso(conversation.created_at),
        "updated_at": records.iso(conversation.updated_at),
        "messages": [_message(m) for m in conversation.messages],
    }


def _message(message: MessageRecord) -> dict[str, Any]:
    if message.role == "user":
        return {"role": "user", "content": message.content, "created_at": records.iso(message.created_at)}
    return {
        "role": "assistant",
        "content": message.content,
        "reasoning": message.reasoning,
        "tool_calls": message.tool_calls,
        "status": message.status,
        "model": message.model,
        "effort": message.effort,
        "error": message.error,
        "created_at": records.iso(message.created_at),
        "started_at": records.iso(message.started_at),
        "finished_at": records.iso(message.finished_at),
    }


def dumps(doc: dict[str, Any]) -> bytes:
    """Return *doc* as the bytes of a file: UTF-8, indented, characters as they are."""
    return (json.dumps(doc, ensure_ascii=False, indent=2) + "\n").encode()


def is_document(value: object) -> bool:
    return isinstance(value, dict) and "format" in value


def read(doc: object, where: str) -> ConversationRecord:
    """Return the conversation a version 1 document holds; refuse anything else, naming what is wrong."""
    body = records.obj(doc, where, "the file")
    if body.get("format") != FORMAT:
        raise Refused(f"{where}: format {body.get('format')!r} is not {FORMAT!r}")
    version = body.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise Refused(f"{where}: version {version!r} is not a version of the {FORMAT} format")
    if version > VERSION:
        raise Refused(
            f"{where}: {FORMAT} format version {version} is newer than this server reads "
            f"(version {VERSION}); import it on an up-to-date server"
        )
    effort = records.text(body.get("effort"), where, "effort", limit=20)
    if effort and effort not in records.EFFORTS:
        raise Refused(f"{where}: effort {effort!r} is not one of {', '.join(records.EFFORTS)}")
    messages = records.array(body.get("messages"), where, "messages")
    if len(messages) > records.MAX_MESSAGES:
        raise Refused(f"{where}: {len(messages):,} messages; the limit is {records.MAX_MESSAGES:,}")
    return ConversationRecord(
        title=records.title(body.get("title"), where),
        model=records.text(body.get("model"), where, "model", limit=100),
        effort=effort,
        instructions=records.text(
            body.get("instructions"), where, "instructions", limit=records.MAX_INSTRUCTIONS_CHARS
        ),
        tools=records.tools(body.get("tools"), where),
        created_at=records.moment(body.get("created_at"), where, "created_at"),
        updated_at=records.moment(body.get("updated_at"), where, "updated_at"),
        messages=[_read_message(m, f"{where}: message {n}") for n, m in enumerate(messages, start=1)],
    )


def _read_message(raw: object, where: str) -> MessageRecord:
    message = records.obj(raw, where, "the message")
    role = message.get("role")
    if role not in records.ROLES:
        raise Refused(f"{where}: role {role!r} is not 'user' or 'assistant'")
    content = records.text(message.get("content"), where, "content")
    created_at = records.moment(message.get("created_at"), where, "created_at")
    if role == "user":
        return MessageRecord(role="user", content=content, created_at=created_at)
    status = records.text(message.get("status"), where, "status", limit=20) or "done"
    if status in records.IN_FLIGHT:
        status = "interrupted"
    elif status not in records.STATUSES:
        raise Refused(f"{where}: status {status!r} is not one of {', '.join(records.STATUSES)}")
    effort = records.text(message.get("effort"), where, "effort", limit=20)
    if effort and effort not in records.EFFORTS:
        raise Refused(f"{where}: effort {effort!r} is not one of {', '.join(records.EFFORTS)}")
    return MessageRecord(
        role="assistant",
        content=content,
        reasoning=records.text(message.get("reasoning"), where, "reasoning"),
        tool_calls=records.tool_calls(message.get("tool_calls"), where),
        status=status,
        model=records.text(message.get("model"), where, "model", limit=100),
        effort=effort,
        error=records.text(message.get("error"), where, "error"),
        created_at=created_at,
        started_at=records.moment(message.get("started_at"), where, "started_at"),
        finished_at=records.moment(message.get("finished_at"), where, "finished_at"),
    )
