"""Imports: conversations from a file (this app's JSON, ChatGPT's or Open WebUI's export) become the
importer's own, all of them in one transaction or none.

The file is read and checked whole before anything is written (chat/interchange); a refusal names what is
wrong and stores nothing. Imported text is stored as it came and rendered like every message (sanitized).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from chat.errors import ImportRefused
from chat.interchange.files import read_file
from chat.interchange.records import FOLLOWS, ConversationRecord, Refused
from chat.models import Conversation, Message, ReasoningEffort
from chat.services.conversations import title_from_text
from chat.transfer import message_row
from inference.selectors import default_model_name, served_model_list

logger = logging.getLogger(__name__)

_TICK = timedelta(microseconds=1)


@dataclass(frozen=True)
class Imported:
    source: str  # "gptoss-web", "ChatGPT", "Open WebUI"
    conversations: list[Conversation]
    message_count: int
    left_out: dict[str, int] = field(default_factory=dict)  # what the file had that was not imported


def conversations_import(*, owner: User, data: bytes, filename: str) -> Imported:
    """Import every conversation of the uploaded file *filename* for *owner*, or none.

    Raises ImportRefused, naming what is wrong, when the file is not one this app reads, is damaged, or
    passes a cap (chat/interchange/records.py); the database is then unchanged.
    """
    try:
        contents = read_file(data, filename)
    except Refused as error:
        logger.info("import by user %s refused: %s", owner.pk, error)
        raise ImportRefused(str(error)) from None
    conversations = records_store(owner=owner, records=contents.conversations)
    logger.info(
        "user %s imported %s conversations (%s messages) from %s",
        owner.pk, len(conversations), contents.message_count, contents.source,
    )  # fmt: skip
    left_out = {what: count for what, count in contents.left_out.items() if count}
    return Imported(contents.source, conversations, contents.message_count, left_out)


def records_store(*, owner: User, records: Sequence[ConversationRecord]) -> list[Conversation]:
    """Store *records* as conversations of *owner*, in one transaction; return them.

    Each keeps its title (or gets one from its first question), times, instructions and tools; its model
    if *owner* may use it, else their default model; its messages in the file's order, each after its parent
    (the one before it, for a file of one branch) and answering the nearest question above it, and the branch
    its reader saw last on screen (`ConversationRecord.leaf`, else the last message's).
    """
    allowed = {model.name: model for model in served_model_list(user=owner)}
    default = default_model_name(user=owner)
    now = timezone.now()
    conversations: list[Conversation] = []
    for record in records:
        model = record.model if record.model in allowed else default
        served = allowed.get(model)
        effort = record.effort or (served.default_reasoning_effort if served else ReasoningEffort.MEDIUM)
        first_question = next((m.content for m in record.messages if m.role == "user"), "")
        created = record.created_at or (record.messages[0].created_at if record.messages else None) or now
        conversations.append(
            Conversation(
                owner=owner,
                title=(record.title or title_from_text(first_question))[:200],
                model_name=model,
                reasoning_effort=effort,
                enabled_tools=sorted(set(record.tools)),
                instructions=record.instructions,
                created_at=created,
                updated_at=record.updated_at or _last_time(record) or created,
            )
        )
    with transaction.atomic():
        Conversation.objects.bulk_create(conversations, batch_size=500)
        trees = [_tree_rows(c, r) for c, r in zip(conversations, records, strict=True)]
        rows = [row for tree in trees for row, _, _ in tree]
        Message.objects.bulk_create([r for r in rows if r.role == Message.Role.USER], batch_size=1000)
        for tree in trees:
            for row, _, question in tree:
                if row.role == Message.Role.ASSISTANT:
                    row.reply_to = question
        Message.objects.bulk_create([r for r in rows if r.role == Message.Role.ASSISTANT], batch_size=1000)
        for tree in trees:
            for row, parent, _ in tree:
                row.parent = parent
        Message.objects.bulk_update([r for r in rows if r.parent is not None], ["parent"], batch_size=1000)
        off_branch: list[int] = []
        for conversation, record, tree in zip(conversations, records, trees, strict=True):
            leaf = None if not tree else tree[-1 if record.leaf is None else record.leaf][0]
            conversation.current_leaf = leaf
            shown: set[int] = set()
            while leaf is not None:
                shown.add(leaf.pk)
                leaf = leaf.parent
            off_branch += [row.pk for row, _, _ in tree if row.pk not in shown]
        Conversation.objects.bulk_update(conversations, ["current_leaf"], batch_size=500)
        Message.objects.filter(pk__in=off_branch).update(on_branch=False)
    return conversations


def _tree_rows(
    conversation: Conversation, record: ConversationRecord
) -> list[tuple[Message, Message | None, Message | None]]:
    """Return each message of *record* as an unsaved row with its parent and the question it answers (its
    nearest question up the branch), in the file's order.

    Each comes after its parent in time, whatever the file's clocks said (the page and the versions' order go
    by time).
    """
    tree: list[tuple[Message, Message | None, Message | None]] = []
    for message in record.messages:
        row = message_row(message)
        row.conversation = conversation
        index = message.parent
        if index == FOLLOWS:
            index = len(tree) - 1 if tree else None
        if index is not None and not 0 <= index < len(tree):
            raise ValueError(f"conversation {record.title!r}: a message's parent is not an earlier message")
        parent, _, question = tree[index] if index is not None else (None, None, None)
        before = parent.created_at if parent is not None else None
        row.created_at = message.created_at or (before + _TICK if before else conversation.created_at)
        if before is not None and row.created_at <= before:
            row.created_at = before + _TICK
        tree.append((row, parent, row if row.role == Message.Role.USER else question))
    return tree


def _last_time(record: ConversationRecord) -> datetime | None:
    times = [t for m in record.messages if (t := m.finished_at or m.created_at) is not None]
    return max(times, default=None)
