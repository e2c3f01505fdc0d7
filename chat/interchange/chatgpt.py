"""ChatGPT's export (`conversations.json`, in the zip ChatGPT mails): a list of conversations.

Each conversation keeps its messages as a tree: `mapping` is {node id: {id, message, parent, children}},
where `message` is {id, author: {role, name}, content: {content_type, parts | text | ...}, create_time,
recipient, metadata} or null (the root), and `current_node` is the message its reader saw last. The whole
tree is imported: every branch (older edits and regenerations) becomes a branch of the conversation here, and
the one that ends at `current_node` is the branch on screen.

Between two questions, ChatGPT writes the reply as several nodes: text for the user, code for a tool
(`recipient` other than "all"), the tool's output (author "tool"), thoughts. They become one reply: its
answer, its tool calls with their results, its reasoning. A question must be text (images and files in it
are left out, with a marker in their place); anything else a reply holds that is not text is left out and
counted.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime
from typing import Any

from chat.interchange import records
from chat.interchange.records import ConversationRecord, MessageRecord, Refused

SOURCE = "ChatGPT"

# Node visits over all branches (each branch is read from the root): a tree of deep branches costs the
# product, so a file beyond this is refused rather than read for minutes.
MAX_BRANCH_NODES = 200_000
HIDDEN = "system and hidden messages (ChatGPT's own instructions and context)"
ATTACHMENTS = "images and files (only text is imported)"
TOOL_OUTPUT = "tool results that are not text"
OTHER_CONTENT = "parts of replies that are not text"
TOO_MANY_CALLS = f"tool calls beyond {records.MAX_TOOL_CALLS} in one reply"
_TEXT_TYPES = ("text", "multimodal_text")


def looks_like(value: object) -> bool:
    return isinstance(value, dict) and "mapping" in value


def read(items: list[Any], name: str, left_out: Counter[str]) -> list[ConversationRecord]:
    """Return the conversations of a ChatGPT export; count what is not imported into *left_out*."""
    return [
        _conversation(item, f"{name}: conversation {n}", left_out) for n, item in enumerate(items, start=1)
    ]


def _conversation(raw: object, where: str, left_out: Counter[str]) -> ConversationRecord:
    item = records.obj(raw, where, "the conversation")
    mapping = records.obj(item.get("mapping"), where, "mapping")
    current = records.branch(mapping, item.get("current_node"), "parent", where)
    messages, leaf = _tree(mapping, current, where, left_out)
    model = item.get("default_model_slug")
    return ConversationRecord(
        title=records.title(item.get("title"), where),
        model=model[:100] if isinstance(model, str) else "",
        created_at=records.moment(item.get("create_time"), where, "create_time"),
        updated_at=records.moment(item.get("update_time"), where, "update_time"),
        messages=messages,
        leaf=leaf,
    )


def _tree(
    mapping: dict[str, Any], current: list[str], where: str, left_out: Counter[str]
) -> tuple[list[MessageRecord], int | None]:
    """Return the messages of every branch of *mapping*, each linked to its parent, and the index of the last
    message of the *current* branch.

    Each branch (root to leaf) is read on its own, the current one first: ChatGPT's nodes become questions
    and replies as for one branch, and a message two branches share (the same nodes, after the same
    messages) is kept once. What is left out is counted once per node, however many branches hold it.
    """
    parents = {node.get("parent") for node in mapping.values() if isinstance(node, dict)}
    leaves = [current[-1], *(n for n in mapping if n not in parents and n != current[-1])]
    messages: list[MessageRecord] = []
    known: dict[tuple[str, ...], int] = {}  # the nodes up to a message's end → its index in *messages*
    counted: set[str] = set()
    visits = 0
    leaf: int | None = None
    for branch_leaf in leaves:
        chain = current
        if branch_leaf != current[-1]:
            chain = records.branch(mapping, branch_leaf, "parent", where)
        visits += len(chain)
        if visits > MAX_BRANCH_NODES:
            raise Refused(
                f"{where}: its branches hold more than {MAX_BRANCH_NODES:,} messages in all; "
                "export it again with fewer edits and regenerations"
            )
        thread = _Thread(left_out if not counted else Counter())
        for position, node_id in enumerate(chain):
            thread.position = position
            _node(mapping[node_id], node_id, where, thread, left_out if node_id not in counted else Counter())
            counted.add(node_id)
        parent: int | None = None
        read = thread.finish()
        for i, message in enumerate(read):
            end = thread.starts[i + 1] if i + 1 < len(read) else len(chain)
            key = tuple(chain[:end])
            if key not in known:
                message.parent = parent
                known[key] = len(messages)
                messages.append(message)
            parent = known[key]
        if leaf is None:
            leaf = parent
    return messages, leaf


def _hidden(message: dict[str, Any]) -> bool:
    metadata = message.get("metadata")
    return isinstance(metadata, dict) and bool(metadata.get("is_visually_hidden_from_conversation"))


def _node(raw: object, node_id: str, where: str, thread: _Thread, left_out: Counter[str]) -> None:
    node = records.obj(raw, f"{where}, message '{node_id}'", "the message")
    if node.get("message") is None:
        return  # the tree's root
    message = records.obj(node.get("message"), f"{where}, message '{node_id}'", "message")
    message_id = message.get("id") if isinstance(message.get("id"), str) else node_id
    here = f"{where}, message '{message_id}'"
    author = records.obj(message.get("author"), here, "author")
    role = author.get("role")
    if role not in ("system", "user", "assistant", "tool"):
        raise Refused(f"{here}: author role {role!r} is not one of system, user, assistant, tool")
    content = records.obj(message.get("content"), here, "content")
    content_type = content.get("content_type")
    at = records.moment(message.get("create_time"), here, "create_time")
    if role == "system" or _hidden(message):
        if _has_text(content):
            left_out[HIDDEN] += 1
        return
    recipient = message.get("recipient")
    to_tool = isinstance(recipient, str) and recipient not in ("", "all")
    if role == "user":
        if content_type not in _TEXT_TYPES:
            raise Refused(f"{here}: content is not text (content_type {content_type!r})")
        thread.question(_parts(content, here, left_out), at)
    elif role == "tool":
        thread.tool_result(_tool_output(content, here, left_out), str(author.get("name") or "tool"), at)
    elif content_type in _TEXT_TYPES and not to_tool:
        thread.answer(_parts(content, here, left_out), at, _model(message), here)
    elif content_type == "thoughts":
        thread.reasoning(_thoughts(content, here), at, _model(message), here)
    elif content_type == "reasoning_recap":
        thread.reply(at, _model(message))  # "Thought for 12 seconds": the reasoning itself says more
    elif content_type in _TEXT_TYPES or isinstance(content.get("text"), str):
        arguments = _parts(content, here, left_out) if content_type in _TEXT_TYPES else content["text"]
        thread.tool_call(
            str(recipient) if to_tool else str(content_type), records.text(arguments, here, "text")
        )
        thread.reply(at, _model(message))
    else:  # ChatGPT's own widgets and context (memory, canvases, ...): nothing this app can show
        left_out[f"{OTHER_CONTENT} ({content_type})"] += 1


def _parts(content: dict[str, Any], where: str, left_out: Counter[str]) -> str:
    """Return the text of a text or multimodal_text content; an image or file leaves a marker in its place."""
    pieces: list[str] = []
    for part in records.array(content.get("parts"), where, "content parts"):
        if isinstance(part, str):
            pieces.append(records.text(part, where, "content"))
        elif isinstance(part, dict) and isinstance(part.get("content_type"), str):
            left_out[ATTACHMENTS] += 1
            pieces.append(f"[{part['content_type'].replace('_', ' ')}: not imported]")
        else:
            raise Refused(f"{where}: content is not text")
    return records.text("\n".join(pieces), where, "content")


def _has_text(content: dict[str, Any]) -> bool:
    parts = content.get("parts")
    return (isinstance(parts, list) and any(isinstance(p, str) and p.strip() for p in parts)) or any(
        isinstance(content.get(key), str) and content[key].strip() for key in ("text", "user_instructions")
    )


def _tool_output(content: dict[str, Any], where: str, left_out: Counter[str]) -> str:
    content_type = content.get("content_type")
    if content_type in _TEXT_TYPES:
        return _parts(content, where, left_out)
    if isinstance(content.get("text"), str):
        return records.text(content["text"], where, "text")
    left_out[TOOL_OUTPUT] += 1
    return f"[{content_type}: not imported]"


def _thoughts(content: dict[str, Any], where: str) -> str:
    pieces: list[str] = []
    for thought in records.array(content.get("thoughts"), where, "thoughts"):
        thought = records.obj(thought, where, "a thought")
        summary = records.text(thought.get("summary"), where, "a thought's summary")
        body = records.text(thought.get("content"), where, "a thought's content")
        pieces.append("\n\n".join(p for p in (summary and f"**{summary}**", body) if p))
    return records.text("\n\n".join(pieces), where, "reasoning")


def _model(message: dict[str, Any]) -> str:
    metadata = message.get("metadata")
    slug = metadata.get("model_slug") if isinstance(metadata, dict) else None
    return slug[:100] if isinstance(slug, str) else ""


class _Thread:
    """Questions and replies, in order: each reply gathers the assistant and tool nodes after its question."""

    def __init__(self, left_out: Counter[str]) -> None:
        self.left_out = left_out
        self.messages: list[MessageRecord] = []
        self.current: MessageRecord | None = None
        # Where in the branch the node being read sits, and where each of *messages* began.
        self.position = 0
        self.starts: list[int] = []
        self.current_start = 0

    def question(self, content: str, at: datetime | None) -> None:
        self._close()
        self.messages.append(MessageRecord(role="user", content=content, created_at=at))
        self.starts.append(self.position)

    def reply(self, at: datetime | None, model: str) -> MessageRecord:
        if self.current is None:
            self.current = MessageRecord(role="assistant", content="", created_at=at, model=model)
            self.current_start = self.position
        reply = self.current
        reply.model = reply.model or model
        if at is not None:
            reply.finished_at = at
        return reply

    def answer(self, content: str, at: datetime | None, model: str, where: str) -> None:
        reply = self.reply(at, model)
        reply.content = records.text(
            "\n\n".join(p for p in (reply.content, content) if p), where, "the reply"
        )

    def reasoning(self, text: str, at: datetime | None, model: str, where: str) -> None:
        reply = self.reply(at, model)
        joined = "\n\n".join(p for p in (reply.reasoning, text) if p)
        reply.reasoning = records.text(joined, where, "the reply's reasoning")

    def tool_call(self, recipient: str, arguments: str) -> None:
        reply = self.reply(None, "")
        reply.tool_calls.append({"recipient": recipient[:200], "channel": "analysis", "arguments": arguments})

    def tool_result(self, result: str, name: str, at: datetime | None) -> None:
        reply = self.reply(at, "")
        waiting = next((c for c in reversed(reply.tool_calls) if "result" not in c), None)
        if waiting is None:
            waiting = {"recipient": name[:200], "channel": "analysis", "arguments": ""}
            reply.tool_calls.append(waiting)
        waiting["result"] = result

    def _close(self) -> None:
        reply, self.current = self.current, None
        if reply is None or not (reply.content or reply.reasoning or reply.tool_calls):
            return
        for call in reply.tool_calls:
            call.setdefault("result", "")
        if len(reply.tool_calls) > records.MAX_TOOL_CALLS:
            self.left_out[TOO_MANY_CALLS] += len(reply.tool_calls) - records.MAX_TOOL_CALLS
            del reply.tool_calls[records.MAX_TOOL_CALLS :]
        self.messages.append(reply)
        self.starts.append(self.current_start)

    def finish(self) -> list[MessageRecord]:
        self._close()
        return self.messages
