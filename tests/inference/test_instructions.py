"""The developer message of a chat reply: the user's custom instructions and the conversation's own, in the
fixed order docs/architecture.md gives, as the GPU worker renders it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from chat.services.conversations import conversation_move
from chat.services.messages import message_send
from chat.services.profiles import profile_update
from chat.services.projects import project_create, project_update
from inference.quotas import instruction_sources, instructions_text, prompt_spec
from inference.runtime.harmony import get_encoding, render_prompt
from inference.tools.toolset import Toolset
from inference.worker.plans import plan_for
from tests.factories import make_conversation

pytestmark = pytest.mark.django_db

PROFILE = {
    "model_name": "",
    "reasoning_effort": "",
    "enabled_tools": [],
    "theme": "system",
    "notifications": False,
}


def _rendered(conversation: Any, **spec: Any) -> str:
    return str(
        get_encoding().decode(render_prompt(prompt_spec(conversation, Toolset(), question="Hi", **spec)))
    )


def _developer(text: str) -> str:
    """Return the developer message's text, from its header to its end."""
    start = text.index("<|start|>developer<|message|>")
    return text[start : text.index("<|end|>", start)]


def test_the_users_instructions_come_first_then_the_conversations(
    alice: Any, harmony_vocab_dir: Path
) -> None:
    profile_update(user=alice, about_me="I run billing.", answer_style="Be brief.", **PROFILE)
    conversation = make_conversation(alice, instructions="Answer in French.")
    assert _developer(_rendered(conversation)) == (
        "<|start|>developer<|message|># Instructions\n\n"
        "## About the user\n\nI run billing.\n\n"
        "## How to answer\n\nBe brief.\n\n"
        "## Instructions for this conversation\n\nAnswer in French."
    )


def test_only_what_the_user_wrote_is_in_the_prompt(alice: Any, harmony_vocab_dir: Path) -> None:
    conversation = make_conversation(alice)
    assert "<|start|>developer" not in _rendered(conversation)  # nothing written: no developer message
    profile_update(user=alice, about_me="", answer_style="Use metric units.", **PROFILE)
    assert _developer(_rendered(conversation)) == (
        "<|start|>developer<|message|># Instructions\n\n## How to answer\n\nUse metric units."
    )
    assert [s.heading for s in instruction_sources(conversation)] == ["How to answer"]


def test_the_worker_fixes_the_instructions_once_per_turn(alice: Any, harmony_vocab_dir: Path) -> None:
    """A profile saved while a reply runs its tool calls does not change what the model was told."""
    profile_update(user=alice, about_me="Before.", answer_style="", **PROFILE)
    conversation = make_conversation(alice, instructions="Mine.")
    _, reply = message_send(conversation=conversation, text="Hi")
    plan = plan_for(reply, None)
    assert plan.instructions == instructions_text(instruction_sources(conversation))
    profile_update(user=alice, about_me="After.", answer_style="", **PROFILE)
    text = str(get_encoding().decode(plan.prompt([], context=8192, budget=100).tokens))
    assert "Before." in text and "After." not in text and "Mine." in text


def test_a_projects_instructions_go_between_the_users_and_the_conversations(
    alice: Any, harmony_vocab_dir: Path
) -> None:
    """The order docs/architecture.md gives: about the user, how to answer, the project, the conversation."""
    profile_update(user=alice, about_me="I run billing.", answer_style="Be brief.", **PROFILE)
    project = project_create(owner=alice, name="Migration", instructions="We move billing from PHP to Go.")
    conversation = make_conversation(alice, instructions="Answer in French.", project=project)
    assert _developer(_rendered(conversation)) == (
        "<|start|>developer<|message|># Instructions\n\n"
        "## About the user\n\nI run billing.\n\n"
        "## How to answer\n\nBe brief.\n\n"
        "## Instructions for this project\n\nWe move billing from PHP to Go.\n\n"
        "## Instructions for this conversation\n\nAnswer in French."
    )


def test_a_project_is_read_at_each_reply_and_leaves_with_a_move(alice: Any, harmony_vocab_dir: Path) -> None:
    project = project_create(owner=alice, name="Docs", instructions="Cite the handbook.")
    conversation = make_conversation(alice, project=project)
    assert _developer(_rendered(conversation)).endswith(
        "## Instructions for this project\n\nCite the handbook."
    )
    project_update(
        project=project, name="Docs", instructions="Cite the wiki.", model_name="", reasoning_effort="",
        enabled_tools=[],
    )  # fmt: skip
    conversation.refresh_from_db()
    assert "Cite the wiki." in _developer(_rendered(conversation))
    conversation_move(conversation=conversation, project=None)
    conversation.refresh_from_db()
    assert "<|start|>developer" not in _rendered(conversation)  # nothing else written: no developer message
