"""Conversations as files: rows to interchange records and back, and the archive of a whole account.

Reads only. What a conversation exports is what its page shows (`selectors.message_list`); the records are
chat/interchange's, which write this app's JSON and Markdown. The writes that store records (imports, a
share's copy) are chat/services/transfers.py's; they build their rows with `message_row` here.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Generator, Iterable, Iterator
from datetime import datetime

from django.contrib.auth.models import User
from django.utils import timezone
from django.utils.text import slugify

from chat import events, selectors
from chat.frames import MessagePayload
from chat.interchange import gptoss, markdown
from chat.interchange.records import ConversationRecord, MessageRecord, iso
from chat.interchange.zipstream import zip_stream
from chat.models import Conversation, Message, ReasoningEffort, Share

ARCHIVE_BATCH = 200  # conversations read per query while an account's archive streams


def message_record(message: Message) -> MessageRecord:
    return MessageRecord(
        role=message.role,
        content=message.content,
        reasoning=message.reasoning,
        tool_calls=list(message.tool_calls or []),
        status=message.status,
        model=message.model_name,
        effort=message.reasoning_effort,
        error=message.error,
        created_at=message.created_at,
        started_at=message.started_at,
        finished_at=message.finished_at,
    )


def conversation_record(
    conversation: Conversation, *, messages: Iterable[Message] | None = None
) -> ConversationRecord:
    """Return *conversation* as a record: its settings and *messages* (by default, those its page shows)."""
    shown = selectors.message_list(conversation=conversation) if messages is None else messages
    return ConversationRecord(
        title=conversation.title,
        model=conversation.model_name,
        effort=conversation.reasoning_effort,
        instructions=conversation.instructions,
        tools=list(conversation.enabled_tools),
        created_at=conversation.created_at,
        updated_at=conversation.updated_at,
        messages=[message_record(m) for m in shown],
    )


def conversation_json(conversation: Conversation) -> bytes:
    """Return *conversation* in this app's JSON (docs/export-format.md)."""
    document = gptoss.document(conversation_record(conversation), exported_at=timezone.now())
    return gptoss.dumps(document)


def conversation_markdown(conversation: Conversation) -> str:
    return markdown.document(conversation_record(conversation), exported_at=timezone.now())


def export_filename(title: str, extension: str) -> str:
    """Return a file name for a conversation called *title*: its words in ASCII, or "conversation"."""
    return f"{_slug(title)}.{extension}"


def _slug(title: str) -> str:
    return slugify(title)[:60].strip("-") or "conversation"


def message_row(record: MessageRecord) -> Message:
    """Return an unsaved message holding *record* (its conversation and question still to be set)."""
    assistant = record.role == Message.Role.ASSISTANT
    return Message(
        role=record.role,
        status=record.status if assistant else Message.Status.DONE,
        content=record.content,
        reasoning=record.reasoning if assistant else "",
        tool_calls=record.tool_calls if assistant else [],
        model_name=record.model[:100] if assistant else "",
        reasoning_effort=record.effort if assistant and record.effort in ReasoningEffort.values else "",
        error=record.error if assistant else "",
        created_at=record.created_at or timezone.now(),
        started_at=record.started_at if assistant else None,
        finished_at=record.finished_at if assistant else None,
    )


# --- Shares ------------------------------------------------------------------------------------------------


def share_record(share: Share) -> ConversationRecord:
    """Return the conversation *share* holds, as it was when shared."""
    return gptoss.read(share.snapshot, f"share {share.pk}")


def share_payloads(record: ConversationRecord) -> list[MessagePayload]:
    """Return a share's messages as the page renders every message (chat/_message.html), sanitized alike.

    They are numbered 1, 2, … in the page: no id of a stored row appears on a share page.
    """
    payloads = []
    for number, message in enumerate(record.messages, start=1):
        payload = events.message_payload(message_row(message))
        payload["id"], payload["reply_to"], payload["retryable"] = number, None, False
        payloads.append(payload)
    return payloads


# --- The archive of an account -----------------------------------------------------------------------------


def account_archive(*, user: User, share_url: Callable[[str], str]) -> Generator[bytes]:
    """Yield a zip of everything *user* keeps here, written as it is sent: per conversation its JSON and its
    Markdown, plus account.json (the account, its shares and API keys) and a README.

    *share_url* returns the address of a share from its token. Conversations are read ARCHIVE_BATCH at a
    time, so memory stays flat whatever the size of the account.
    """
    now = timezone.now()
    top = f"gptoss-web-{slugify(user.get_username()) or 'account'}-{now:%Y-%m-%d}"
    return zip_stream(_archive_members(user, top, now, share_url))


def _archive_members(
    user: User, top: str, now: datetime, share_url: Callable[[str], str]
) -> Iterator[tuple[str, datetime, bytes]]:
    count = selectors.conversation_list(user=user).count()
    yield f"{top}/README.md", now, _readme(user, count, now).encode()
    yield f"{top}/account.json", now, _account_json(user, now, share_url)
    for number, (conversation, messages) in enumerate(_conversations_with_messages(user), start=1):
        record = conversation_record(conversation, messages=messages)
        stem = f"{top}/conversations/{number:04d}-{_slug(conversation.title)}"
        yield f"{stem}.json", conversation.updated_at, gptoss.dumps(gptoss.document(record, exported_at=now))
        yield f"{stem}.md", conversation.updated_at, markdown.document(record, exported_at=now).encode()


def _conversations_with_messages(user: User) -> Iterator[tuple[Conversation, list[Message]]]:
    """Yield each conversation of *user*, oldest first, with the messages its page shows: two queries for
    every ARCHIVE_BATCH conversations."""
    after = 0
    while True:
        batch = list(
            selectors.conversation_list(user=user).filter(pk__gt=after).order_by("pk")[:ARCHIVE_BATCH]
        )
        if not batch:
            return
        shown: dict[int, list[Message]] = {c.pk: [] for c in batch}
        for message in selectors.shown_messages(conversation_ids=list(shown)):
            shown[message.conversation_id].append(message)
        for conversation in batch:
            yield conversation, shown[conversation.pk]
        after = batch[-1].pk


def _account_json(user: User, now: datetime, share_url: Callable[[str], str]) -> bytes:
    account = {
        "format": "gptoss-web-account",
        "version": 1,
        "exported_at": iso(now),
        "username": user.get_username(),
        "email": user.email,
        "name": user.get_full_name(),
        "date_joined": iso(user.date_joined),
        "shares": [
            {
                "title": share.title,
                "url": share_url(share.token) if share.active else None,
                "messages": share.message_count,
                "created_at": iso(share.created_at),
                "revoked_at": iso(share.revoked_at),
            }
            for share in selectors.share_list(user=user)
        ],
        "api_keys": [
            {
                "name": key.name,
                "prefix": key.prefix,
                "created_at": iso(key.created_at),
                "last_used_at": iso(key.last_used_at),
                "expires_at": iso(key.expires_at),
                "revoked_at": iso(key.revoked_at),
            }
            for key in selectors.api_key_list(user=user)
        ],
    }
    return (json.dumps(account, ensure_ascii=False, indent=2) + "\n").encode()


def _readme(user: User, count: int, now: datetime) -> str:
    return (
        f"# gptoss-web: the data of {user.get_username()}\n\n"
        f"Exported {now:%Y-%m-%d %H:%M} UTC: {count:,} conversation{'s' if count != 1 else ''}.\n\n"
        "- `conversations/NNNN-title.json`: each conversation in gptoss-web's own JSON format, version 1 "
        "(title, model, effort, instructions, tools, and every message shown: role, content, reasoning, "
        "tool calls, times). Import any of them, or this whole zip, under *Import & export* on any "
        "gptoss-web server.\n"
        "- `conversations/NNNN-title.md`: the same conversation as Markdown, to read.\n"
        "- `account.json`: your account, the links you shared, and your API keys (names and prefixes only: "
        "the keys themselves are never stored).\n\n"
        "A reply still being written is saved as far as it had got (imported, it reads as interrupted). "
        "Earlier versions of edited or regenerated messages are not included.\n"
    )
