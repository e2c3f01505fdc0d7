"""The GPU worker's task, on real llama.cpp with the tiny model: what ends up stored for the user."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings as django_settings

from chat.models import Message
from chat.services import message_send
from inference.dispatch import queue_for_model
from inference.tasks import generate_reply_task
from inference.tinymodel import SCRIPTS
from tests.factories import make_conversation

pytestmark = pytest.mark.django_db(transaction=True)
ROOT = Path(__file__).resolve().parents[2]


def _reply_to(text: str, owner: object, **conversation: object) -> Message:
    c = make_conversation(owner, **conversation)
    _, reply = message_send(conversation=c, text=text)
    return reply


def test_a_queued_reply_is_generated_and_stored_with_its_statistics(alice: object) -> None:
    reply = _reply_to("Hello there", alice)
    generate_reply_task.run(reply.pk)
    reply.refresh_from_db()
    assert reply.status == "done", reply.error
    assert reply.content == SCRIPTS["plain"].first.final
    assert reply.reasoning == ""
    assert reply.prompt_tokens > 20 and reply.answer_tokens > 5
    assert reply.ttft_ms is not None and reply.queue_wait_ms is not None
    assert reply.tokens_per_second and reply.tokens_per_second > 0
    assert reply.started_at and reply.finished_at and reply.task_id == ""


def test_reasoning_is_stored_apart_from_the_answer(alice: object) -> None:
    reply = _reply_to("Please think about it", alice, reasoning_effort="high")
    generate_reply_task.run(reply.pk)
    reply.refresh_from_db()
    assert (reply.status, reply.reasoning, reply.content) == (
        "done",
        SCRIPTS["reasoning"].first.analysis,
        SCRIPTS["reasoning"].first.final,
    )
    assert reply.reasoning_effort == "high"
    assert reply.reasoning_tokens > 0


def test_a_second_turn_answers_with_the_first_in_its_history(alice: object) -> None:
    first = _reply_to("Hello", alice)
    generate_reply_task.run(first.pk)
    _, second = message_send(conversation=first.conversation, text="And again")
    generate_reply_task.run(second.pk)
    second.refresh_from_db()
    assert second.status == "done"
    assert second.content == SCRIPTS["plain"].first.final
    # The history (first question and answer) is part of the second prompt.
    first.refresh_from_db()
    assert second.prompt_tokens > first.prompt_tokens + first.answer_tokens


def test_a_redelivered_task_for_a_finished_reply_does_nothing(alice: object) -> None:
    reply = _reply_to("Hello", alice)
    generate_reply_task.run(reply.pk)
    reply.refresh_from_db()
    finished = (reply.finished_at, reply.content, reply.answer_tokens)
    generate_reply_task.run(reply.pk)
    reply.refresh_from_db()
    assert (reply.finished_at, reply.content, reply.answer_tokens) == finished


def test_a_task_for_a_deleted_reply_does_nothing(alice: object) -> None:
    reply = _reply_to("Hello", alice)
    reply.conversation.delete()
    generate_reply_task.run(reply.pk)
    assert not Message.objects.exists()


def test_a_tool_that_is_not_enabled_runs_nothing_and_the_model_is_told(alice: object) -> None:
    reply = _reply_to("What is the weather like?", alice)
    generate_reply_task.run(reply.pk)
    reply.refresh_from_db()
    assert reply.status == "done", reply.error
    assert reply.tool_calls == [
        {
            "recipient": "functions.get_weather",
            "arguments": '{"city":"Paris"}',
            "result": "Error: the tool 'functions.get_weather' is not available in this conversation.",
        }
    ]
    assert reply.content == SCRIPTS["function"].after_tool.final  # type: ignore[union-attr]


@pytest.mark.slow
def test_the_worker_loads_the_model_once_and_serves_its_queue(alice: object, settings: object) -> None:
    settings.GPTOSS_MAX_IN_FLIGHT_PER_USER = 5  # type: ignore[attr-defined]
    db = django_settings.DATABASES["default"]
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "DJANGO_SETTINGS_MODULE": "gptoss_web.settings_test",
        "GPTOSS_REDIS_PREFIX": django_settings.GPTOSS_REDIS_PREFIX,
        "GPTOSS_MODEL": "tiny",
        "GPTOSS_SLOTS": "2",
        "GPTOSS_CONTEXT": "2048",
    }
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "gptoss_web", "worker", "--pool", "threads",
         "--concurrency", "2",
         "--queues", queue_for_model("tiny"), "--without-gossip", "--without-mingle", "--loglevel", "INFO"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    try:
        replies = [_reply_to(text, alice) for text in ("Hello", "Please think", "Hi again")]
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            statuses = set(
                Message.objects.filter(pk__in=[r.pk for r in replies]).values_list("status", flat=True)
            )
            if statuses == {"done"}:
                break
            assert worker.poll() is None, "worker died"
            time.sleep(0.3)
        stored = {r.pk: Message.objects.get(pk=r.pk) for r in replies}
        assert [stored[r.pk].content for r in replies] == [
            SCRIPTS["plain"].first.final,
            SCRIPTS["reasoning"].first.final,
            SCRIPTS["plain"].first.final,
        ]
        assert all(m.task_id for m in stored.values())
    finally:
        worker.terminate()
        output, _ = worker.communicate(timeout=30)
    assert output.count("model tiny ready") == 1, output


def test_older_turns_that_no_longer_fit_are_left_out_and_the_user_is_told(alice: object) -> None:
    conversation = make_conversation(alice)
    long_text = "lorem ipsum dolor sit amet " * 120  # about 600 tokens
    for _ in range(8):
        question = Message.objects.create(conversation=conversation, role="user", content=long_text)
        Message.objects.create(
            conversation=conversation, role="assistant", status="done", reply_to=question, content=long_text
        )
    _, reply = message_send(conversation=conversation, text="Hello")
    generate_reply_task.run(reply.pk)
    reply.refresh_from_db()
    assert reply.status == "done", reply.error
    assert reply.content == SCRIPTS["plain"].first.final
    assert "oldest turns of this conversation were left out" in reply.notice
    assert reply.prompt_tokens <= 8192 - 4096


@pytest.mark.slow
def test_a_worker_whose_model_file_is_missing_stops_and_says_what_to_change(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "gptoss_web.settings_test",
        "GPTOSS_MODEL_PATH": str(tmp_path / "nope.gguf"),
    }
    result = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "gptoss_web", "worker", "-P", "threads", "-Q", "gpu.x"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert (
        f"GPTOSS_MODEL_PATH={tmp_path / 'nope.gguf'} does not name a readable file"
        in result.stdout + result.stderr
    )


def test_an_answer_cut_at_its_length_limit_is_kept_and_the_user_is_told(alice: object) -> None:
    reply = _reply_to("Tell me an endless story", alice)
    generate_reply_task.run(reply.pk)
    reply.refresh_from_db()
    assert reply.status == "done" and reply.error == ""
    assert reply.content.startswith(SCRIPTS["endless"].first.final)
    assert reply.notice == "The answer stopped at its length limit."
    assert reply.answer_tokens == 4096 - 3  # the budget, less the channel header tokens
