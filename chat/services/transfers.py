"""Imports: conversations from a file (this app's JSON, ChatGPT's or Open WebUI's export) become the
importer's own, all of them in one transaction or none.

The file is read and checked whole before anything is written (chat/interchange); a refusal names what is
wrong and stores nothing. Imported text is stored as it came and rendered like every message (sanitized).
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from chat.errors import ImportRefused
from chat.interchange.files import read_file
from chat.interchange.records import ConversationRecord, Refused
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
    if *owner* may use it, else their default model; its messages in the file's order, each reply answering
    the question before it.
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
        questions: list[Message] = []
        replies: list[tuple[Message, Message | None]] = []
        threads: list[list[Message]] = []
        for conversation, record in zip(conversations, records, strict=True):
            question: Message | None = None
            previous: datetime | None = None
            thread: list[Message] = []
            threads.append(thread)
            for message in record.messages:
                row = message_row(message)
                row.conversation = conversation
                thread.append(row)
                # The page orders by time: keep the file's order whatever its clocks said.
                row.created_at = message.created_at or (
                    previous + _TICK if previous else conversation.created_at
                )
                if previous is not None and row.created_at <= previous:
                    row.created_at = previous + _TICK
                previous = row.created_at
                if row.role == Message.Role.USER:
                    question = row
                    questions.append(row)
                else:
                    replies.append((row, question))
        Message.objects.bulk_create(questions, batch_size=1000)
        for reply, answered in replies:
            reply.reply_to = answered
        Message.objects.bulk_create([reply for reply, _ in replies], batch_size=1000)
        # One branch each, in the file's order: each message follows the one before it, the last is the leaf.
        for thread in threads:
            for before, row in itertools.pairwise(thread):
                row.parent = before
        Message.objects.bulk_update(
            [row for thread in threads for row in thread[1:]], ["parent"], batch_size=1000
        )
        for conversation, thread in zip(conversations, threads, strict=True):
            conversation.current_leaf = thread[-1] if thread else None
        Conversation.objects.bulk_update(conversations, ["current_leaf"], batch_size=500)
    return conversations


def _last_time(record: ConversationRecord) -> datetime | None:
    times = [t for m in record.messages if (t := m.finished_at or m.created_at) is not None]
    return max(times, default=None)
