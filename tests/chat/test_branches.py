"""Branches: edits and regenerations of any message of the branch on screen keep every version, the branch on
screen is stored (a reload, another tab and the next prompt follow it), and a stranger learns nothing."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.test import Client

from chat import selectors
from chat.errors import ReplyInFlight, StaleEdit
from chat.interchange.records import ConversationRecord, MessageRecord
from chat.models import ApiPrompt, ApiRequest, ApiSampling, Conversation, Message
from chat.services.api_requests import api_reply_queue, api_response_delete
from chat.services.branches import branch_switch
from chat.services.messages import message_edit, message_regenerate, message_send
from chat.services.replies import reply_cancel, reply_finish, reply_start
from chat.services.transfers import records_store
from inference.selectors import model_budget_get
from tests.factories import make_conversation
from tests.sockets import connected, cookie_header, socket

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.usefixtures("close_thread_connections")]

_FINISH: dict[str, Any] = {
    "reasoning": "",
    "tool_calls": [],
    "seq": 1,
    "queue_wait_ms": 0,
    "prompt_tokens": 40,
    "reasoning_tokens": 0,
    "answer_tokens": 5,
    "ttft_ms": 1,
    "tokens_per_second": 1.0,
}


def _finish(reply: Message, answer: str) -> Message:
    """Finish the queued *reply* with *answer*, as a GPU worker would."""
    started = reply_start(message_id=reply.pk, task_id="t", worker="w")
    assert started is not None
    reply_finish(message=started, status="done", content=answer, **_FINISH)
    reply.refresh_from_db()
    return reply


def _answered(conversation: Conversation, text: str, answer: str) -> tuple[Message, Message]:
    question, reply = message_send(conversation=conversation, text=text)
    return question, _finish(reply, answer)


def _shown(conversation: Conversation) -> list[str]:
    return [m.content for m in selectors.message_list(conversation=conversation)]


def _three_turns(conversation: Conversation) -> list[Message]:
    """One, Answer one, Two, Answer two, Three, Answer three: the messages, in order."""
    messages: list[Message] = []
    for n in ("one", "two", "three"):
        messages.extend(_answered(conversation, n.capitalize(), f"Answer {n}"))
    return messages


# --- Services ----------------------------------------------------------------------------------------------


def test_editing_an_earlier_question_starts_a_branch_there_and_keeps_the_old_one(alice: object) -> None:
    conversation = make_conversation(alice)
    _, a1, q2, a2, q3, a3 = _three_turns(conversation)
    edited, reply = message_edit(conversation=conversation, message_id=q2.pk, text="Two, better")
    assert edited.parent_id == a1.pk and reply.parent_id == edited.pk
    assert _shown(conversation) == ["One", "Answer one", "Two, better", ""]
    conversation.refresh_from_db()
    assert conversation.current_leaf_id == reply.pk
    # Nothing is lost: the old question and all that followed it are the other version.
    assert set(Message.objects.filter(on_branch=False).values_list("pk", flat=True)) == {
        q2.pk, a2.pk, q3.pk, a3.pk,
    }  # fmt: skip
    state = selectors.conversation_state(conversation=conversation)
    versions = [m.get("branch") for m in state["messages"]]
    assert versions[2] == {"index": 2, "count": 2, "previous": q2.pk, "next": None}
    assert versions[0] == {"index": 1, "count": 1, "previous": None, "next": None}


def test_regenerating_an_earlier_answer_adds_a_version_of_it_and_leaves_the_later_turns_on_the_old_one(
    alice: object,
) -> None:
    conversation = make_conversation(alice)
    q1, a1, *_ = _three_turns(conversation)
    again = message_regenerate(conversation=conversation, message_id=a1.pk)
    assert again.parent_id == q1.pk == again.reply_to_id
    assert _shown(conversation) == ["One", ""]
    assert selectors.finished_turns(reply=again) == []


def test_switching_shows_the_newest_leaf_under_the_other_version(alice: object) -> None:
    conversation = make_conversation(alice)
    _, _, q2, a2, _, _ = _three_turns(conversation)
    _finish(message_edit(conversation=conversation, message_id=q2.pk, text="Two, better")[1], "Better")
    # Under the old question, its second answer is the newest child: the switch follows it.
    branch_switch(conversation=conversation, message_id=q2.pk)
    assert _shown(conversation) == ["One", "Answer one", "Two", "Answer two", "Three", "Answer three"]
    _finish(message_regenerate(conversation=conversation, message_id=a2.pk), "Answer two, again")
    edited = Message.objects.get(content="Two, better")
    branch_switch(conversation=conversation, message_id=edited.pk)
    assert _shown(conversation) == ["One", "Answer one", "Two, better", "Better"]
    branch_switch(conversation=conversation, message_id=q2.pk)
    assert _shown(conversation) == ["One", "Answer one", "Two", "Answer two, again"]
    # The branch on screen is stored: it is what every later read, and the next send, follows.
    conversation.refresh_from_db()
    _, reply = _answered(conversation, "Four", "Answer four")
    assert _shown(conversation)[-2:] == ["Four", "Answer four"]
    assert selectors.finished_turns(reply=reply) == [
        ("One", "Answer one"), ("Two", "Answer two, again"),
    ]  # fmt: skip


def test_edits_regenerates_and_switches_wait_while_a_reply_is_in_flight(alice: object) -> None:
    conversation = make_conversation(alice)
    q1, a1, _, a2, *_ = _three_turns(conversation)
    message_regenerate(conversation=conversation, message_id=a2.pk)  # queued
    before = list(Message.objects.order_by("pk").values_list("pk", "on_branch"))
    with pytest.raises(ReplyInFlight, match="still answering"):
        branch_switch(conversation=conversation, message_id=a2.pk)
    with pytest.raises(ReplyInFlight):
        message_edit(conversation=conversation, message_id=q1.pk, text="Other")
    with pytest.raises(ReplyInFlight):
        message_regenerate(conversation=conversation, message_id=a1.pk)
    assert list(Message.objects.order_by("pk").values_list("pk", "on_branch")) == before
    reply_cancel(conversation=conversation)
    branch_switch(conversation=conversation, message_id=a2.pk)
    assert _shown(conversation)[-1] == "Answer three"


def test_a_message_of_another_conversation_is_switched_to_as_if_it_did_not_exist(
    alice: object, bob: object
) -> None:
    mine = make_conversation(alice)
    _answered(mine, "Mine", "My answer")
    theirs = make_conversation(bob)
    question, _ = _answered(theirs, "Theirs", "Their answer")
    errors = []
    for message_id in (question.pk, 999_999_999):
        with pytest.raises(StaleEdit) as refused:
            branch_switch(conversation=mine, message_id=message_id)
        errors.append(str(refused.value))
        with pytest.raises(StaleEdit):
            message_edit(conversation=mine, message_id=message_id, text="x")
    assert errors[0] == errors[1]
    assert _shown(mine) == ["Mine", "My answer"] and _shown(theirs) == ["Theirs", "Their answer"]


def test_the_context_meter_counts_the_last_reply_of_the_branch_on_screen(alice: object) -> None:
    conversation = make_conversation(alice)
    _, first = _answered(conversation, "One", "Answer one")
    meter = selectors.conversation_state(conversation=conversation)["context"]
    budget = model_budget_get(name=conversation.model_name)
    assert meter == {"used": 45, "window": budget.context, "reserve": budget.answer_tokens}
    again = message_regenerate(conversation=conversation, message_id=first.pk)
    started = reply_start(message_id=again.pk, task_id="t", worker="w")
    assert started is not None
    reply_finish(message=started, status="done", content="Longer", **{**_FINISH, "answer_tokens": 60})
    assert selectors.conversation_state(conversation=conversation)["context"]["used"] == 100
    branch_switch(conversation=conversation, message_id=first.pk)
    assert selectors.conversation_state(conversation=conversation)["context"]["used"] == 45


# --- The socket and the page -------------------------------------------------------------------------------


async def test_a_switch_is_shown_in_every_tab_of_the_conversation(alice: object) -> None:
    conversation = await sync_to_async(make_conversation)(alice)
    _, a1, *_ = await sync_to_async(_three_turns)(conversation)
    again = await sync_to_async(message_regenerate)(conversation=conversation, message_id=a1.pk)
    await sync_to_async(_finish)(again, "Answer one, again")
    one, shown = await connected(alice, conversation.pk)
    two, _ = await connected(alice, conversation.pk)
    try:
        assert [m["content"] for m in shown["messages"]] == ["One", "Answer one, again"]
        assert shown["messages"][1]["branch"] == {"index": 2, "count": 2, "previous": a1.pk, "next": None}
        await one.send_json_to({"action": "switch", "message": a1.pk, "client_id": "s1"})
        frames = [await one.receive_json_from() for _ in range(2)]
        assert {f["type"] for f in frames} == {"ack", "state"}
        other = await two.receive_json_from()
        for state in (other, next(f for f in frames if f["type"] == "state")):
            assert [m["content"] for m in state["messages"]][-2:] == ["Three", "Answer three"]
            assert state["messages"][1]["branch"] == {
                "index": 1,
                "count": 2,
                "previous": None,
                "next": again.pk,
            }
    finally:
        await one.disconnect()
        await two.disconnect()
    # A reload shows the same branch.
    conversation_state = await sync_to_async(selectors.conversation_state)(conversation=conversation)
    assert [m["content"] for m in conversation_state["messages"]][-1] == "Answer three"


@pytest.mark.parametrize("action", ["switch", "edit", "regenerate"])
async def test_a_strangers_action_on_anothers_message_is_answered_as_for_a_message_that_does_not_exist(
    alice: object, bob: object, action: str
) -> None:
    theirs = await sync_to_async(make_conversation)(alice)
    question, answer = await sync_to_async(_answered)(theirs, "Alice's question", "Alice's answer")
    own = await sync_to_async(make_conversation)(bob)
    await sync_to_async(_answered)(own, "Bob's question", "Bob's answer")
    target = answer.pk if action == "regenerate" else question.pk
    communicator, _ = await connected(bob, own.pk)
    try:
        answers = []
        for message_id in (target, 999_999_999):
            await communicator.send_json_to({"action": action, "message": message_id, "text": "x"})
            error = await communicator.receive_json_from()
            assert error["type"] == "error"
            answers.append(error["message"])
            assert (await communicator.receive_json_from())["type"] == "state"
        assert answers[0] == answers[1]
    finally:
        await communicator.disconnect()
    assert await sync_to_async(Message.objects.filter(conversation=theirs).count)() == 2
    refused = socket(theirs.pk, await sync_to_async(cookie_header)(bob))
    accepted, _ = await refused.connect()
    assert not accepted


def test_the_page_switches_without_javascript_and_a_stranger_gets_404(
    alice: object, alice_client: Client, bob_client: Client
) -> None:
    conversation = make_conversation(alice)
    _, a1, *_ = _three_turns(conversation)
    again = _finish(message_regenerate(conversation=conversation, message_id=a1.pk), "Answer one, again")
    page = alice_client.get(f"/c/{conversation.pk}/").content.decode()
    assert 'aria-label="Version 2 of 2"' in page and f'value="{a1.pk}"' in page
    assert bob_client.post(f"/c/{conversation.pk}/branch/", {"message": a1.pk}).status_code == 404
    assert bob_client.post("/c/999999999/branch/", {"message": a1.pk}).status_code == 404
    assert _shown(conversation) == ["One", "Answer one, again"]
    response = alice_client.post(f"/c/{conversation.pk}/branch/", {"message": a1.pk})
    assert response.status_code == 302
    assert _shown(conversation)[-1] == "Answer three"
    page = alice_client.get(f"/c/{conversation.pk}/").content.decode()
    assert f'value="{again.pk}"' in page and "Answer three" in page


def test_an_imported_conversation_is_one_branch_ending_at_its_last_message(alice: object) -> None:
    record = ConversationRecord(
        title="Imported",
        messages=[
            MessageRecord(role="user", content="First"),
            MessageRecord(role="assistant", content="Reply one"),
            MessageRecord(role="user", content="Second"),
            MessageRecord(role="assistant", content="Reply two"),
        ],
    )
    [conversation] = records_store(owner=alice, records=[record])  # type: ignore[arg-type]
    conversation.refresh_from_db()
    shown = list(selectors.message_list(conversation=conversation))
    assert [m.content for m in shown] == ["First", "Reply one", "Second", "Reply two"]
    assert [m.parent_id for m in shown] == [None, *(m.pk for m in shown[:-1])]
    assert conversation.current_leaf_id == shown[-1].pk
    # Its next message follows the last one, and the prompt holds the imported turns.
    _, reply = message_send(conversation=conversation, text="Third")
    assert selectors.finished_turns(reply=reply) == [("First", "Reply one"), ("Second", "Reply two")]


def _api_turn(owner: object, text: str, after: ApiRequest | None, response_id: str) -> ApiRequest:
    prompt: ApiPrompt = {"instructions": "", "history": [], "user": text, "steps": [], "functions": []}
    sampling: ApiSampling = {"temperature": 1.0, "top_p": 1.0, "seed": None, "stop": []}
    reply = api_reply_queue(
        owner=owner,  # type: ignore[arg-type]
        kind="responses",
        model_name="tiny",
        effort="low",
        prompt=prompt,
        sampling=sampling,
        max_tokens=None,
        store=True,
        after=after,
        response_id=response_id,
    )
    _finish(reply, f"Answer to {text}")
    return ApiRequest.objects.select_related("reply").get(reply=reply)


def test_a_response_chained_to_an_older_one_is_a_branch_and_deleting_one_keeps_the_turns_after_it(
    alice: object,
) -> None:
    first = _api_turn(alice, "One", None, "resp_1")
    _api_turn(alice, "Two", first, "resp_2")
    third = _api_turn(alice, "Two, otherwise", first, "resp_3")  # previous_response_id: the first again
    conversation = Conversation.objects.get(pk=first.reply.conversation_id)
    assert _shown(conversation) == ["One", "Answer to One", "Two, otherwise", "Answer to Two, otherwise"]
    state = selectors.conversation_state(conversation=conversation)
    assert state["messages"][2].get("branch", {}).get("count") == 2
    api_response_delete(owner=alice, response_id="resp_1")  # type: ignore[arg-type]
    assert _shown(conversation) == ["Two, otherwise", "Answer to Two, otherwise"]
    conversation.refresh_from_db()
    assert conversation.current_leaf_id == third.reply_id
    branch_switch(conversation=conversation, message_id=Message.objects.get(content="Two").pk)
    assert _shown(conversation) == ["Two", "Answer to Two"]
