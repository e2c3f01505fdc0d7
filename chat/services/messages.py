"""Messages: the user's side of a send (validate, send, edit, regenerate), each in one transaction.

A send continues the branch on screen; an edit or a regenerate starts a new version of a message of it
(chat.services.branches).

Each send ends by creating a queued reply (chat.services.replies), which a worker's task then writes.
"""

from __future__ import annotations

import logging

from django.conf import settings
from django.contrib.auth.models import User
from django.core.cache import cache
from django.db import connection, transaction

from chat import events, selectors
from chat.errors import ChatError, ReplyInFlight, StaleEdit, TooManyInFlight
from chat.models import Conversation, Message
from chat.services.conversations import conversation_create, title_from_text
from chat.services.replies import reply_create
from gptoss_web.reads import reads_once
from inference.quotas import prompt_fit_check, reply_allowed_check
from inference.selectors import limits_get

logger = logging.getLogger(__name__)

# First key of the transaction-level advisory lock that serializes one user's sends (the second is their id).
SEND_LOCK = 0x67707473  # "gpts"


def validate_message_text(text: str) -> str:
    """Return *text* if it can be sent, else raise ChatError saying what is wrong.

    The one check of a message's text, for the form post and the socket alike: PostgreSQL stores neither a NUL
    character nor a lone UTF-16 surrogate (which JSON's "\\ud800" escape can carry).
    """
    if not text.strip():
        raise ChatError("Type a message first.")
    limit = settings.GPTOSS_MAX_MESSAGE_CHARS
    if len(text) > limit:
        raise ChatError(f"This message is {len(text):,} characters long; the limit is {limit:,}.")
    if "\x00" in text:
        raise ChatError(
            "This message contains a NUL character, which cannot be stored. Remove it and send again."
        )
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ChatError(
            "This message contains an invalid character (a lone UTF-16 surrogate). Remove it and send again."
        ) from None
    return text


class AlreadySent(Exception):
    """The browser sent this message before (its acknowledgement was lost with the connection)."""


@reads_once()  # its checks and its enqueue read the model's row, the owner's profile and tools once
def message_send(*, conversation: Conversation, text: str, client_id: str = "") -> tuple[Message, Message]:
    """Store the user's message and a queued reply in one transaction; enqueue the reply on commit.

    Raises ChatError (and stores nothing) when the text is invalid, the conversation is already answering or
    the owner has too many replies in flight. A browser that resends with the same *client_id* (it never got
    the acknowledgement) gets AlreadySent instead of a second copy.
    """
    validate_message_text(text)
    sent_key = f"sent:{conversation.pk}:{client_id[:64]}" if client_id else ""
    if sent_key and _cache_get(sent_key):
        raise AlreadySent()
    _check_fits(conversation, text)
    with transaction.atomic():
        locked = _locked(conversation)
        budget = reply_queue_check(locked)
        user_message, reply = _question_create(
            conversation=locked, text=text, reserved_tokens=budget, parent_id=locked.current_leaf_id
        )
        if not locked.title:
            locked.title = title_from_text(text)
            locked.save(update_fields=["title"])
            events.title_changed(locked.pk, locked.title)
        if sent_key:
            transaction.on_commit(lambda: _cache_set(sent_key, reply.pk))
    conversation.refresh_from_db()
    return user_message, reply


@reads_once()  # the new conversation's defaults and its send's checks read the same settings
def conversation_start(
    *, owner: User, text: str, client_id: str = ""
) -> tuple[Conversation, Message, Message]:
    """Start a conversation of *owner* with *text* as its first message, titled from it; one transaction.

    The start page's socket and its no-JavaScript form both start here. A send that is refused (ChatError)
    stores nothing: no empty conversation is left behind and no other tab hears of one.
    """
    with transaction.atomic():  # a refused send (its text, its checks) rolls the new conversation back
        # Titled at once: the send then writes and announces no title (the conversation's state carries it).
        conversation = conversation_create(owner=owner, title=title_from_text(text))
        user_message, reply = message_send(conversation=conversation, text=text, client_id=client_id)
    return conversation, user_message, reply


def _cache_get(key: str) -> object:
    try:
        return cache.get(key)
    except Exception:  # Redis down: no duplicate check, the send goes on
        return None


def _cache_set(key: str, value: object) -> None:
    try:
        cache.set(key, value, timeout=3600)
    except Exception:
        logger.warning("could not remember sent message %s", key)


@reads_once()  # as message_send
def message_edit(*, conversation: Conversation, message_id: int, text: str) -> tuple[Message, Message]:
    """Ask *text* instead of the question *message_id* of the branch on screen, and reply to it anew.

    The new question is a sibling of the old one (same parent) and its branch becomes the one on screen;
    the old question and everything after it stay, as the other version. Refused while a reply is in
    flight; a question not on the branch on screen (or not in this conversation) gets StaleEdit.
    """
    validate_message_text(text)
    _check_fits(conversation, text)
    with transaction.atomic():
        locked = _locked(conversation)
        question = _on_branch(locked, message_id, Message.Role.USER)
        budget = reply_queue_check(locked)
        events.branch_changed(locked.pk)  # first: the new thread is sent before the new messages' events
        return _question_create(
            conversation=locked, text=text, reserved_tokens=budget, parent_id=question.parent_id
        )


@reads_once()  # as message_send
def message_regenerate(*, conversation: Conversation, message_id: int) -> Message:
    """Answer again the question of the answer *message_id* of the branch on screen.

    The new answer is a sibling of the old one and its branch becomes the one on screen; the old answer and
    everything after it stay, as the other version. Refused like an edit.
    """
    with transaction.atomic():
        locked = _locked(conversation)
        answer = _on_branch(locked, message_id, Message.Role.ASSISTANT)
        question = answer.reply_to
        if question is None or answer.parent_id != question.pk:
            raise StaleEdit()  # an imported answer without its question, or an API turn carried on
        budget = reply_queue_check(locked)
        _check_fits(locked, question.content)
        events.branch_changed(locked.pk)
        reply = reply_create(conversation=locked, reply_to=question, reserved_tokens=budget)
        return reply


def _on_branch(conversation: Conversation, message_id: int, role: str) -> Message:
    """Return the message *message_id* of *role* on the branch on screen of *conversation*; else StaleEdit
    (the same answer for a message of another branch, of another conversation, or none at all)."""
    message = (
        Message.objects.select_related("reply_to", "parent")
        .filter(pk=message_id, conversation_id=conversation.pk, role=role, on_branch=True)
        .first()
    )
    if message is None:
        raise StaleEdit()
    return message


def _question_create(
    *, conversation: Conversation, text: str, reserved_tokens: int, parent_id: int | None
) -> tuple[Message, Message]:
    """Store the question after the message *parent_id* (None: the first) and its queued reply; the reply
    becomes the current leaf."""
    user_message = Message.objects.create(
        conversation=conversation,
        role=Message.Role.USER,
        status=Message.Status.DONE,
        content=text,
        parent_id=parent_id,
    )
    reply = reply_create(
        conversation=conversation,
        reply_to=user_message,
        reserved_tokens=reserved_tokens,
        announce_question=True,
    )
    return user_message, reply


def _locked(conversation: Conversation) -> Conversation:
    """Return *conversation* locked until the transaction ends, with its owner (every check reads them)."""
    locking = Conversation.objects.select_for_update(of=("self",)).select_related("owner")
    return locking.get(pk=conversation.pk)


def _owner_lock(conversation: Conversation) -> None:
    """Wait until no other send of the conversation's owner is deciding, in any web process, until commit.

    One user's sends are serialized (not only one conversation's), so the counts that follow see every reply
    committed before: the in-flight limit and the daily quota hold however many sends arrive at once. Under
    READ COMMITTED each later statement of this transaction reads the commits made before the lock was won.
    """
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [SEND_LOCK, conversation.owner_id])


def reply_queue_check(conversation: Conversation) -> int:
    """Raise ChatError unless the conversation's owner may queue a reply now; return the tokens it may use.

    Call it in the send's transaction, with the conversation row locked, before any write. The chat page's
    sends and the API's requests both pass here: one in-flight limit, one quota, one lock per user.
    """
    _owner_lock(conversation)
    here, everywhere = selectors.replies_in_flight_counts(conversation=conversation)
    if here:
        raise ReplyInFlight()
    limits = limits_get(user=conversation.owner)
    if everywhere >= limits.max_in_flight:
        raise TooManyInFlight(limits.max_in_flight)
    return reply_allowed_check(
        user=conversation.owner,
        model_name=conversation.model_name,
        limit=conversation.max_answer_tokens,
        limits=limits,
    )


def _check_fits(conversation: Conversation, text: str) -> None:
    """Refuse now a question that cannot fit the model's context even alone, rather than after the queue."""
    prompt_fit_check(conversation=conversation, text=text)
