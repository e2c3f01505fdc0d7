"""Refused when sent, not after the queue: a model not served, a question that cannot fit; and replies queued
for a model an admin takes out of service fail at once, without a Retry that could only fail again."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from chat.models import Message
from chat.services.messages import message_send
from inference.models import ServedModel
from inference.status import redis_client
from tests.factories import UserFactory, make_conversation

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client() -> Client:
    client = Client()
    client.force_login(UserFactory(username="ops", is_staff=True, is_superuser=True))
    return client


def test_sending_to_a_disabled_model_is_refused_with_the_reason_and_what_to_do(
    alice: Any, alice_client: Client
) -> None:
    ServedModel.objects.create(name="tiny", source="tiny")
    row = ServedModel.objects.create(name="retired", source="tiny")
    conversation = make_conversation(alice, model_name="retired")
    row.enabled = False
    row.save()
    response = alice_client.post(f"/c/{conversation.pk}/messages/", {"text": "Hello"})
    page = response.content.decode()
    assert response.status_code == 409
    assert "is not served on this site any more" in page and "Choose another model" in page
    assert not conversation.messages.exists()


def test_a_question_that_cannot_fit_the_context_even_alone_is_refused_when_sent(
    alice: Any, alice_client: Client, harmony_vocab_dir: Path
) -> None:
    ServedModel.objects.create(name="tiny", source="tiny", context=1024, max_answer_tokens=512)
    conversation = make_conversation(alice)
    long_question = " ".join(f"word{i}" for i in range(2000))
    response = alice_client.post(f"/c/{conversation.pk}/messages/", {"text": long_question})
    page = response.content.decode()
    assert response.status_code == 409
    assert "too long for the model&#x27;s context window" in page and "holds 1024 tokens" in page
    assert not conversation.messages.exists()
    # One that fits is sent, however close to the limit.
    response = alice_client.post(f"/c/{conversation.pk}/messages/", {"text": " ".join(["word"] * 300)})
    assert response.status_code == 302
    assert conversation.messages.filter(role="assistant", status="queued").exists()


def test_replies_queued_for_a_model_an_admin_deletes_fail_at_once_without_retry(
    alice: Any, staff_client: Client, django_capture_on_commit_callbacks: Any
) -> None:
    ServedModel.objects.create(name="tiny", source="tiny")
    row = ServedModel.objects.create(name="retired", source="tiny")
    conversation = make_conversation(alice, model_name="retired")
    with django_capture_on_commit_callbacks(execute=True):
        _, reply = message_send(conversation=conversation, text="Hello")
    other = make_conversation(alice)
    with django_capture_on_commit_callbacks(execute=True):
        _, unaffected = message_send(conversation=other, text="Hello")

    response = staff_client.post(f"/admin/inference/servedmodel/{row.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    reply.refresh_from_db()
    assert reply.status == Message.Status.FAILED and not reply.retryable
    assert "no longer served on this site" in reply.error and "Choose another model" in reply.error
    unaffected.refresh_from_db()
    assert unaffected.status == Message.Status.QUEUED

    # The page it reloads into offers no Retry: the socket's state says so too.
    from chat.selectors import conversation_state

    shown = conversation_state(conversation=conversation)["messages"][-1]
    assert (shown["status"], shown["retryable"]) == ("failed", False)


def test_a_reply_whose_only_worker_waits_for_its_database_says_so_and_still_gives_up_in_time(
    alice: Any, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """A worker that lost PostgreSQL or Redis beats `waiting` and takes no task: the reply is not told that no
    worker exists, and it does not wait forever either."""
    from chat.selectors import conversation_state
    from inference.serving import unserved_check
    from inference.status import WorkerStatus
    from inference.worker.heartbeat import Heartbeat

    settings.GPTOSS_UNSERVED_TIMEOUT_S = 5
    conversation = make_conversation(alice)
    with django_capture_on_commit_callbacks(execute=True):
        _, reply = message_send(conversation=conversation, text="Hello")
    status = WorkerStatus(
        name="gpu-w:1", model="tiny", state="waiting", error="PostgreSQL ... cannot be used"
    )
    beat = Heartbeat(status, lambda s: None).start()
    try:
        shown = conversation_state(conversation=conversation)["messages"][-1]
        assert shown["waiting"].startswith("The GPU worker for tiny cannot reach its database right now.")
        assert "keeps its place in line" in shown["waiting"]
        unserved_check()  # starts the model's clock
        Message.objects.filter(pk=reply.pk).update(created_at=reply.created_at - timedelta(seconds=10))
        redis_client().hset(f"{settings.GPTOSS_REDIS_PREFIX}:unserved-since", "tiny", time.time() - 10)
        assert unserved_check() == 1
    finally:
        beat.stop()
    reply.refresh_from_db()
    assert (reply.status, reply.retryable) == ("failed", True)
