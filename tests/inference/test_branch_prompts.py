"""The prompt of a chat reply is exactly its branch: the ancestors of its question in the conversation's tree,
whatever other versions exist, as the GPU worker renders it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from chat.models import Conversation, Message
from chat.services.branches import branch_switch
from chat.services.messages import message_edit, message_send
from chat.services.replies import reply_finish, reply_start
from inference.runtime.harmony import get_encoding
from inference.worker.plans import plan_for
from tests.factories import make_conversation

pytestmark = pytest.mark.django_db

_FINISH: dict[str, Any] = {
    "reasoning": "", "tool_calls": [], "seq": 1, "prompt_tokens": 1, "reasoning_tokens": 0,
    "answer_tokens": 1, "queue_wait_ms": 0, "ttft_ms": 1, "tokens_per_second": 1.0,
}  # fmt: skip


def _finish(reply: Message, answer: str) -> None:
    started = reply_start(message_id=reply.pk, task_id="t", worker="w")
    assert started is not None
    reply_finish(message=started, status="done", content=answer, **_FINISH)


def _three_turns(conversation: Conversation) -> list[Message]:
    messages: list[Message] = []
    for n in ("one", "two", "three"):
        question, reply = message_send(conversation=conversation, text=n.capitalize())
        _finish(reply, f"Answer {n}")
        messages += [question, reply]
    return messages


def _prompt(reply: Message) -> str:
    return str(get_encoding().decode(plan_for(reply, None).prompt([], context=8192, budget=100).tokens))


def test_the_prompt_of_a_reply_is_exactly_its_branch(alice: object, harmony_vocab_dir: Path) -> None:
    conversation = make_conversation(alice)
    _, _, q2, _, _, _ = _three_turns(conversation)
    _, reply = message_edit(conversation=conversation, message_id=q2.pk, text="Second, edited")
    text = _prompt(reply)
    assert "Answer one" in text and "Second, edited" in text
    assert "Two" not in text and "Answer two" not in text and "Answer three" not in text
    _finish(reply, "Edited answer")
    # Back on the old branch, the next question is asked after the old turns, not the edited one.
    branch_switch(conversation=conversation, message_id=q2.pk)
    conversation.refresh_from_db()
    _, later = message_send(conversation=conversation, text="Four")
    text = _prompt(later)
    assert "Answer two" in text and "Answer three" in text
    assert "Second, edited" not in text and "Edited answer" not in text
