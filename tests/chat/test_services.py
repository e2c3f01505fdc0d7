"""Services: what each write leaves in the database, and what it refuses."""

from __future__ import annotations

import json

import pytest
import redis
from django.conf import settings
from django.db import IntegrityError, transaction
from django.test import override_settings

from chat.models import Conversation, Message
from chat.services import (
    ChatError,
    GenerationInFlight,
    TooManyInFlight,
    conversation_delete,
    conversation_rename,
    conversation_update_settings,
    message_send,
    title_from_text,
)
from inference.dispatch import queue_for_model
from tests.factories import make_conversation

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _empty_queue() -> None:
    redis.Redis.from_url(settings.REDIS_URL).delete(
        f"{settings.GPTOSS_REDIS_PREFIX}:celery:{queue_for_model('tiny')}"
    )


def _queued_task_message_ids(model_name: str) -> list[int]:
    """Return the message ids of generation tasks waiting in the model's real Redis queue."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    key = f"{settings.GPTOSS_REDIS_PREFIX}:celery:{queue_for_model(model_name)}"
    ids = []
    for raw in client.lrange(key, 0, -1):
        envelope = json.loads(raw)
        assert envelope["headers"]["task"] == "inference.tasks.generate_reply_task"
        ids.append(int(envelope["headers"]["argsrepr"].strip("[]()").rstrip(",")))
    return ids


def test_sending_stores_the_message_and_a_queued_reply_and_enqueues_it_after_commit(alice: object) -> None:
    conversation = make_conversation(alice)
    user_message, reply = message_send(conversation=conversation, text="Plan a picnic for six")

    assert user_message.role == "user" and user_message.content == "Plan a picnic for six"
    assert reply.role == "assistant" and reply.status == "queued" and reply.reply_to_id == user_message.pk
    assert reply.reasoning_effort == "medium"
    assert reply.pk in _queued_task_message_ids(conversation.model_name)
    conversation.refresh_from_db()
    assert conversation.title == "Plan a picnic for six"


def test_a_rolled_back_send_enqueues_nothing(alice: object) -> None:
    conversation = make_conversation(alice)
    with pytest.raises(RuntimeError), transaction.atomic():
        message_send(conversation=conversation, text="never mind")
        raise RuntimeError("roll back")
    assert not Message.objects.exists()
    assert _queued_task_message_ids(conversation.model_name) == []


def test_a_second_send_while_answering_is_refused_and_stores_nothing(alice: object) -> None:
    conversation = make_conversation(alice)
    message_send(conversation=conversation, text="first")
    with pytest.raises(GenerationInFlight):
        message_send(conversation=conversation, text="second")
    assert list(Message.objects.values_list("content", flat=True).filter(role="user")) == ["first"]


def test_the_database_itself_refuses_two_replies_in_flight_in_one_conversation(alice: object) -> None:
    conversation = make_conversation(alice)
    Message.objects.create(conversation=conversation, role="assistant", status="streaming")
    with pytest.raises(IntegrityError), transaction.atomic():
        Message.objects.create(conversation=conversation, role="assistant", status="queued")
    # A finished reply does not count.
    Message.objects.filter(conversation=conversation).update(status="done")
    Message.objects.create(conversation=conversation, role="assistant", status="queued")


def test_the_database_refuses_a_user_message_that_is_not_done(alice: object) -> None:
    conversation = make_conversation(alice)
    with pytest.raises(IntegrityError), transaction.atomic():
        Message.objects.create(conversation=conversation, role="user", status="queued")


@override_settings(GPTOSS_MAX_IN_FLIGHT_PER_USER=2)
def test_a_user_with_too_many_answers_in_flight_is_told_to_wait(alice: object) -> None:
    for _ in range(2):
        message_send(conversation=make_conversation(alice), text="busy")
    third = make_conversation(alice)
    with pytest.raises(TooManyInFlight, match="already have 2 answers"):
        message_send(conversation=third, text="one more")
    assert not third.messages.exists()


@pytest.mark.parametrize(
    ("text", "error"),
    [("", "Type a message first"), ("   \n ", "Type a message first"), ("x" * 40, "limit is 32")],
)
@override_settings(GPTOSS_MAX_MESSAGE_CHARS=32)
def test_empty_or_oversized_messages_are_refused(alice: object, text: str, error: str) -> None:
    conversation = make_conversation(alice)
    with pytest.raises(ChatError, match=error):
        message_send(conversation=conversation, text=text)
    assert not conversation.messages.exists()


def test_the_title_comes_from_the_first_line_of_the_first_message() -> None:
    assert title_from_text("\n  Hello there \nsecond line") == "Hello there"
    long = title_from_text("word " * 40)
    assert long.endswith("…") and len(long) <= 61


def test_rename_settings_and_delete(alice: object) -> None:
    conversation = make_conversation(alice)
    conversation_rename(conversation=conversation, title="  Trip  ")
    conversation_update_settings(
        conversation=conversation,
        reasoning_effort="high",
        enabled_tools=["python", "python"],
        instructions="Be brief",
    )
    conversation.refresh_from_db()
    assert conversation.title == "Trip"
    assert (conversation.reasoning_effort, conversation.enabled_tools) == ("high", ["python"])
    assert conversation.instructions == "Be brief"
    message_send(conversation=conversation, text="hi")
    conversation_delete(conversation=conversation)
    assert not Conversation.objects.exists()
    assert not Message.objects.exists()
