"""What a conversation file holds, read or written: records, the caps on one file, and the refusal.

Every reader checks its file completely before anything is stored, and refuses it with `Refused`, whose
message names the file, the place in it and what is wrong: "conversations.json: conversation 3, message
'abc': content is not text".
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from inference.tools.records import ToolCallRecord, ToolSource

# One uploaded file (a zip: what its members hold, uncompressed) and what it may hold.
MAX_FILE_BYTES = 50 * 1024 * 1024
MAX_CONVERSATIONS = 2_000
MAX_MESSAGES = 20_000
# One text (a question, an answer, its reasoning, a tool call's arguments or result).
MAX_TEXT_CHARS = 500_000
# A conversation's instructions: what its settings form accepts (chat/forms.py, SettingsForm).
MAX_INSTRUCTIONS_CHARS = 8_000
MAX_TITLE_CHARS = 200
MAX_TOOL_CALLS = 200  # in one reply
MAX_TOOLS = 50  # switched on in one conversation

# The words of the format (docs/export-format.md), the database's too (tests/chat/test_interchange.py).
ROLES = ("user", "assistant")
EFFORTS = ("low", "medium", "high")
STATUSES = ("done", "cancelled", "failed", "interrupted")
IN_FLIGHT = ("queued", "streaming")  # exported while a reply was being written; imported as interrupted


class Refused(Exception):
    """A file that is not imported; the message names the file, the place in it and what is wrong."""


# MessageRecord.parent of a message that follows the one before it in its conversation's list.
FOLLOWS = -1


@dataclass
class MessageRecord:
    role: str  # one of ROLES
    content: str
    reasoning: str = ""
    tool_calls: list[ToolCallRecord] = field(default_factory=list)
    status: str = "done"  # one of STATUSES (a question is always done)
    model: str = ""
    effort: str = ""  # one of EFFORTS, or "" when unknown
    error: str = ""
    created_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    # The message before it on its branch: an index into its conversation's messages (always an earlier one),
    # None for a first message, FOLLOWS for the one before it in the list (a file of one branch).
    parent: int | None = FOLLOWS


@dataclass
class ConversationRecord:
    title: str = ""
    model: str = ""
    effort: str = ""
    instructions: str = ""
    tools: list[str] = field(default_factory=list)
    created_at: datetime | None = None
    updated_at: datetime | None = None
    messages: list[MessageRecord] = field(default_factory=list)
    # The index of the last message of the branch its reader saw last; None: the last message.
    leaf: int | None = None


@dataclass
class FileContents:
    """What one file holds: its conversations and, per kind, how many things it had that are not imported."""

    source: str  # "gptoss-web", "ChatGPT", "Open WebUI"
    conversations: list[ConversationRecord]
    left_out: Counter[str] = field(default_factory=Counter)

    @property
    def message_count(self) -> int:
        return sum(len(c.messages) for c in self.conversations)


def text(value: object, where: str, what: str, *, limit: int = MAX_TEXT_CHARS) -> str:
    """Return *value* if it is text PostgreSQL can store (None reads as ""), else refuse naming *what*."""
    if value is None:
        return ""
    if not isinstance(value, str):
        raise Refused(f"{where}: {what} is not text")
    if len(value) > limit:
        raise Refused(f"{where}: {what} is {len(value):,} characters long; the limit is {limit:,}")
    if "\x00" in value:
        raise Refused(f"{where}: {what} contains a NUL character, which cannot be stored")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise Refused(f"{where}: {what} contains a lone UTF-16 surrogate, which cannot be stored") from None
    return value


def title(value: object, where: str) -> str:
    """Return a title: text on one line, cut to the length a conversation's title may have."""
    return " ".join(text(value, where, "the title", limit=MAX_TEXT_CHARS).split())[:MAX_TITLE_CHARS]


def moment(value: object, where: str, what: str) -> datetime | None:
    """Return the time *value* names: ISO 8601 text, or seconds since 1970 (milli-, micro- or nanoseconds
    when larger than any date in seconds could be). None reads as None; a naive time is UTC."""
    if value is None or value == "":
        return None
    try:
        if isinstance(value, bool):
            raise TypeError
        if isinstance(value, int | float):
            seconds = float(value)
            if not math.isfinite(seconds) or seconds < 0:
                raise ValueError
            while seconds > 1e11:  # 5138 AD in seconds: a count in smaller units
                seconds /= 1000
            return datetime.fromtimestamp(seconds, tz=UTC)
        if isinstance(value, str):
            parsed = datetime.fromisoformat(value)
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    except (TypeError, ValueError, OverflowError, OSError):
        pass
    raise Refused(f"{where}: {what} is not a time ({_short(value)})")


def iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z") if moment else None


def obj(value: object, where: str, what: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise Refused(f"{where}: {what} is not an object")
    return value


def array(value: object, where: str, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise Refused(f"{where}: {what} is not a list")
    return value


def tool_calls(value: object, where: str) -> list[ToolCallRecord]:
    """Return the tool calls of a reply as this app stores them (`ToolCallRecord`), each field checked.

    A call without a result (the reply was written when the file was made) gets an empty one: an imported
    reply has finished, and its calls with it.
    """
    calls = array(value if value is not None else [], where, "tool_calls")
    if len(calls) > MAX_TOOL_CALLS:
        raise Refused(f"{where}: {len(calls):,} tool calls; the limit is {MAX_TOOL_CALLS:,}")
    records: list[ToolCallRecord] = []
    for number, raw in enumerate(calls, start=1):
        here = f"{where}, tool call {number}"
        call = obj(raw, here, "the tool call")
        record: ToolCallRecord = {
            "recipient": text(call.get("recipient"), here, "recipient", limit=200) or "tool",
            "channel": text(call.get("channel"), here, "channel", limit=40),
            "arguments": text(call.get("arguments"), here, "arguments"),
            "result": text(call.get("result"), here, "result"),
        }
        error = call.get("error")
        if error is not None and not isinstance(error, bool):
            raise Refused(f"{here}: error is not true or false")
        if error:
            record["error"] = True
        for key in ("started_at", "finished_at"):
            if call.get(key) is not None:
                record[key] = iso(moment(call.get(key), here, key)) or ""
        if call.get("sources") is not None:
            record["sources"] = _sources(call.get("sources"), here)
        records.append(record)
    return records


def _sources(value: object, where: str) -> list[ToolSource]:
    sources: list[ToolSource] = []
    for number, raw in enumerate(array(value, where, "sources"), start=1):
        here = f"{where}, source {number}"
        source = obj(raw, here, "the source")
        cursor = source.get("cursor")
        if not isinstance(cursor, int) or isinstance(cursor, bool):
            raise Refused(f"{here}: cursor is not a whole number")
        record: ToolSource = {
            "cursor": cursor,
            "url": text(source.get("url"), here, "url", limit=4000),
            "title": text(source.get("title"), here, "title", limit=1000),
        }
        if source.get("lines") is not None:
            lines = obj(source.get("lines"), here, "lines")
            record["lines"] = {
                text(key, here, "a line number", limit=20): text(url, here, "a line's url", limit=4000)
                for key, url in lines.items()
            }
        sources.append(record)
    return sources


def tools(value: object, where: str) -> list[str]:
    names = array(value if value is not None else [], where, "tools")
    if len(names) > MAX_TOOLS:
        raise Refused(f"{where}: {len(names):,} tools; the limit is {MAX_TOOLS}")
    return [text(name, where, "a tool's name", limit=80) for name in names]


def _short(value: object) -> str:
    shown = repr(value)
    return shown if len(shown) <= 40 else shown[:39] + "…"


def branch(nodes: dict[str, Any], leaf: object, parent_key: str, where: str) -> list[str]:
    """Return the ids from the root of a tree of *nodes* down to *leaf*, following each node's *parent_key*.

    ChatGPT and Open WebUI keep every edit and regeneration as a branch of such a tree; the branch that ends
    at the message last shown is the conversation as its reader left it.
    """
    if not isinstance(leaf, str) or leaf not in nodes:
        raise Refused(f"{where}: the last message shown ({_short(leaf)}) is not one of its messages")
    ids: list[str] = []
    seen: set[str] = set()
    node_id: object = leaf
    while node_id is not None:
        if not isinstance(node_id, str) or node_id not in nodes:
            raise Refused(
                f"{where}, message '{ids[-1]}': its parent {_short(node_id)} is not one of its messages"
            )
        if node_id in seen:
            raise Refused(f"{where}, message '{node_id}': the parent links go round in a loop")
        seen.add(node_id)
        ids.append(node_id)
        node = obj(nodes[node_id], f"{where}, message '{node_id}'", "the message")
        node_id = node.get(parent_key)
    ids.reverse()
    return ids
