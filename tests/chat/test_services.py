"""Services: what each write leaves in the database, and what it refuses."""

from __future__ import annotations

import json
import re
from collections import Counter

import pytest
import redis
from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext

from chat import consumers, selectors
from chat.errors import ChatError, ReplyInFlight, StaleEdit, TooManyInFlight
from chat.models import Conversation, Message
from chat.services.conversations import (
    conversation_delete,
    conversation_rename,
    conversation_update_settings,
    title_from_text,
)
from chat.services.messages import message_edit, message_regenerate, message_send
from chat.services.replies import reply_cancel, reply_finish, reply_start
from inference.quotas import reply_model_refusal
from inference.runtime.catalog import queue_for_model
from inference.worker.plans import plan_for
from tests.factories import make_conversation

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _empty_queue() -> None:
    redis.Redis.from_url(settings.REDIS_URL).delete(
        f"{settings.GPTOSS_REDIS_PREFIX}:celery:{queue_for_model('tiny')}"
    )


def _queued_task_message_ids(model_name: str) -> list[int]:
    """Return the message ids of the tasks waiting in the model's real Redis queue."""
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
    with pytest.raises(ReplyInFlight):
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
def test_a_user_with_too_many_replies_in_flight_is_told_to_wait(alice: object) -> None:
    for _ in range(2):
        message_send(conversation=make_conversation(alice), text="busy")
    third = make_conversation(alice)
    with pytest.raises(TooManyInFlight, match="already have 2 replies"):
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


# --- Stop, regenerate, edit ---------------------------------------------------------------------------------


_FINISH: dict = {
    "reasoning": "", "tool_calls": [], "seq": 1, "prompt_tokens": 1, "reasoning_tokens": 0,
    "answer_tokens": 1, "queue_wait_ms": 0, "ttft_ms": 1, "tokens_per_second": 1.0,
}  # fmt: skip


def _answered(conversation: Conversation, text: str, answer: str) -> Message:
    """Send *text* and finish its reply with *answer*, as a worker would."""
    _, reply = message_send(conversation=conversation, text=text)
    started = reply_start(message_id=reply.pk, task_id="t", worker="w")
    assert started is not None
    reply_finish(message=started, status="done", content=answer, **_FINISH)
    reply.refresh_from_db()
    return reply


def test_stop_ends_a_queued_reply_at_once_and_keeps_the_question(alice: object) -> None:
    conversation = make_conversation(alice)
    question, reply = message_send(conversation=conversation, text="Hello")
    assert reply_cancel(conversation=conversation) == reply
    reply.refresh_from_db()
    assert reply.status == "cancelled" and reply.finished_at is not None
    assert Message.objects.get(pk=question.pk).content == "Hello"
    # Nothing in flight any more: the user may send again.
    message_send(conversation=conversation, text="Again")


def test_stop_of_a_streaming_reply_keeps_its_partial_text_when_the_worker_finishes(alice: object) -> None:
    conversation = make_conversation(alice)
    _, reply = message_send(conversation=conversation, text="Hello")
    started = reply_start(message_id=reply.pk, task_id="t", worker="w")
    assert started is not None
    reply_cancel(conversation=conversation)
    final = reply_finish(message=started, status="done", content="Half an ans", **_FINISH)
    assert final is not None and (final.status, final.content) == ("cancelled", "Half an ans")


def test_stop_with_nothing_in_flight_does_nothing(alice: object) -> None:
    conversation = make_conversation(alice)
    _answered(conversation, "Hi", "Hello!")
    assert reply_cancel(conversation=conversation) is None
    assert list(Message.objects.values_list("status", flat=True)) == ["done", "done"]


def test_regenerate_keeps_the_old_answer_as_another_version_and_answers_the_same_question(
    alice: object,
) -> None:
    conversation = make_conversation(alice)
    first = _answered(conversation, "Hi", "First answer")
    second = message_regenerate(conversation=conversation, message_id=first.pk)
    first.refresh_from_db()
    assert not first.on_branch and first.content == "First answer"
    assert second.reply_to_id == first.reply_to_id == second.parent_id and second.status == "queued"
    visible = list(selectors.message_list(conversation=conversation))
    assert [m.pk for m in visible] == [first.reply_to_id, second.pk]


def test_edit_replaces_the_latest_question_and_leaves_it_out_of_the_prompt(alice: object) -> None:
    conversation = make_conversation(alice)
    _answered(conversation, "One", "Answer one")
    old_reply = _answered(conversation, "Two with a typo", "Answer two")
    assert old_reply.reply_to is not None
    _, reply = message_edit(conversation=conversation, message_id=old_reply.reply_to.pk, text="Two")
    assert [m.content for m in selectors.message_list(conversation=conversation)] == [
        "One", "Answer one", "Two", "",
    ]  # fmt: skip
    assert selectors.finished_turns(reply=reply) == [("One", "Answer one")]
    assert Message.objects.filter(on_branch=False).count() == 2  # kept, not deleted


def test_an_edit_or_regenerate_of_a_message_off_the_branch_is_refused_and_changes_nothing(
    alice: object,
) -> None:
    conversation = make_conversation(alice)
    first = _answered(conversation, "One", "Answer one")
    message_regenerate(conversation=conversation, message_id=first.pk)  # `first` is another version now
    reply_cancel(conversation=conversation)
    before = list(Message.objects.order_by("pk").values_list("pk", "content", "on_branch"))
    assert first.reply_to is not None
    with pytest.raises(StaleEdit):
        message_regenerate(conversation=conversation, message_id=first.pk)
    with pytest.raises(StaleEdit):
        message_edit(conversation=conversation, message_id=first.pk, text="an answer is no question")
    assert list(Message.objects.order_by("pk").values_list("pk", "content", "on_branch")) == before


def test_edit_while_an_answer_is_generating_is_refused(alice: object) -> None:
    conversation = make_conversation(alice)
    question, _ = message_send(conversation=conversation, text="One")
    with pytest.raises(ReplyInFlight):
        message_edit(conversation=conversation, message_id=question.pk, text="Other")
    assert Message.objects.get(pk=question.pk).on_branch
    assert Message.objects.count() == 2


def test_queue_positions_are_first_come_first_served_per_model(alice: object, bob: object) -> None:
    replies = []
    for owner in (alice, bob, alice):
        _, reply = message_send(conversation=make_conversation(owner), text="Hi")
        replies.append(reply)
    assert [selectors.queue_position_get(message=r) for r in replies] == [1, 2, 3]
    reply_start(message_id=replies[0].pk, task_id="t", worker="w")
    assert [p for _, _, p in selectors.queue_positions(model_name="tiny")] == [1, 2]
    replies[2].refresh_from_db()
    assert selectors.queue_position_get(message=replies[2]) == 2


def _tables_read(queries: list[dict[str, str]]) -> Counter[str]:
    return Counter(m.group(1) for q in queries if (m := re.match(r'SELECT .*? FROM "(\w+)"', q["sql"])))


def test_a_first_message_reads_each_setting_once_for_its_conversation_and_its_send(alice: object) -> None:
    """The start page's first message creates its conversation and sends it in one call on the way to the
    GPU: the owner's profile and the model's registry row, which the defaults, the fit check, the quota and
    the enqueue all ask for, are read once for all of them (gptoss_web.reads)."""
    client = Client()
    client.force_login(alice)  # type: ignore[arg-type]
    with CaptureQueriesContext(connection) as start:
        joined: list[str] = []
        state = consumers._start(
            client.session.session_key or "",
            alice,
            {"action": "send", "text": "Plan a picnic"},
            joined.append,
        )
    conversation_id = state["conversation"]
    assert joined == [f"conversation.{conversation_id}"]  # its group, before its state was read
    assert [m["role"] for m in state["messages"]] == ["user", "assistant"]
    tables = _tables_read(start.captured_queries)
    assert tables["chat_profile"] == 1, tables
    assert tables["inference_servedmodel"] == 2, tables  # whether the registry has rows, and the model's row


def test_a_send_and_its_claim_stay_within_their_query_budgets(alice: object) -> None:
    """Every round trip to PostgreSQL between Send and the engine delays the first token, most on a busy
    server: a send (checks, writes, the place in the queue after the commit), the worker's claim and the reads
    before the prompt each keep to a fixed number of queries, however the conversation is set up."""
    first = make_conversation(alice)
    message_send(conversation=first, text="First ever")  # creates the tool settings row
    reply_cancel(conversation=first)
    conversation = make_conversation(alice, enabled_tools=["python", "browser"])
    with CaptureQueriesContext(connection) as send:
        _, reply = message_send(conversation=conversation, text="Plan a picnic for six")
    with CaptureQueriesContext(connection) as claim:
        claimed = reply_start(message_id=reply.pk, task_id="t", worker="w")
    assert claimed is not None and claimed.pk == reply.pk
    with CaptureQueriesContext(connection) as plan:
        api = selectors.api_request_get(reply=claimed)
        assert claimed.conversation.owner.is_active
        assert reply_model_refusal(owner=claimed.conversation.owner, model_name=claimed.model_name) == ""
        plan_for(claimed, api).prompt([], context=4096, budget=256)
    assert len(send) <= 16, [q["sql"][:80] for q in send.captured_queries]
    # From the socket: its session is checked against the owner's row read with the conversation.
    reply_cancel(conversation=conversation)
    tab = Client()
    tab.force_login(alice)  # type: ignore[arg-type]
    with CaptureQueriesContext(connection) as socket_send:
        consumers._act(
            tab.session.session_key or "", alice, conversation.pk, {"action": "send", "text": "And 8?"}
        )
    assert len(socket_send) <= 17, [q["sql"][:80] for q in socket_send.captured_queries]
    assert len(claim) <= 2, [q["sql"][:80] for q in claim.captured_queries]
    assert len(plan) <= 4, [q["sql"][:80] for q in plan.captured_queries]
