"""The GPU worker's task, on real llama.cpp with the tiny model: what ends up stored for the user."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from celery.fixups.django import DjangoWorkerFixup
from django.conf import settings as django_settings
from django.contrib.auth.models import Group
from django.db import connections
from django.test import Client

from chat.models import Conversation, Message
from chat.rendering import message_sources, render_markdown
from chat.services.conversations import conversation_update_settings
from chat.services.messages import message_send
from gptoss_web.celery import app
from gptoss_web.devtools.tinymodel import PYTHON_CALL, SCRIPTS, SEARCH_CALL, WEATHER_CALL
from inference.runtime.catalog import queue_for_model
from inference.runtime.engine.engine import Engine, Generation
from inference.runtime.engine.settings import SamplingParams
from inference.tools.models import Function, ToolSettings
from inference.worker.tasks import generate_reply_task, limit_notice
from tests.factories import make_conversation, make_exchange
from tests.fakes import Hit, Reply, serve
from tests.live import test_database_url as database_url_of_tests

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


def test_a_reply_the_model_derails_on_fails_at_once_instead_of_spending_its_budget_unseen(
    alice: object, caplog: pytest.LogCaptureFixture
) -> None:
    """Pasted HTML sends the scripted model off its script: it writes tokens that never begin a message.
    The user is told within MAX_HEADER_TOKENS tokens, in a plain sentence with an error id (harmony's own
    words are in the log under that id), and the slot is free again."""
    pasted = "\n".join(f'<img src=x onerror="alert({i})"> line {i}' for i in range(30))
    reply = _reply_to(pasted, alice)
    with caplog.at_level(logging.WARNING, logger="inference.worker.tasks"):
        generate_reply_task.run(reply.pk)
    reply.refresh_from_db()
    assert (reply.status, reply.notice, reply.retryable) == ("failed", "", True)
    shown = re.fullmatch(
        r"The model's reply came out garbled, so it was stopped \(error ([0-9a-f]{8})\)\. "
        r"Retry, or rephrase your message; an admin can look up the error id\.",
        reply.error,
    )
    assert shown, reply.error
    [logged] = [r.getMessage() for r in caplog.records if shown.group(1) in r.getMessage()]
    assert f"reply {reply.pk}" in logged and "no message began within 128 tokens" in logged


def test_an_unexpected_failure_shows_a_plain_sentence_and_an_id_whose_traceback_is_in_the_log(
    alice: object, alice_client: Client, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The user never reads the exception's text; an admin finds it, with its traceback, by the error id."""

    def broken(conversation: object) -> None:
        raise RuntimeError("password authentication failed for user 'gptoss' on 10.0.0.5")

    monkeypatch.setattr("inference.worker.plans.toolset_for", broken)  # a bug anywhere in the task
    reply = _reply_to("Hello", alice)
    with caplog.at_level(logging.INFO, logger="inference.worker.tasks"):
        generate_reply_task.run(reply.pk)
    reply.refresh_from_db()
    assert reply.status == "failed"
    found = re.fullmatch(
        r"Something went wrong while writing this reply \(error ([0-9a-f]{8})\)\. "
        r"Retry, or give an admin the error id\.",
        reply.error,
    )
    assert found, reply.error
    page = alice_client.get(f"/c/{reply.conversation_id}/").content.decode()
    assert f"(error {found[1]})" in page and "10.0.0.5" not in page
    [logged] = [r for r in caplog.records if found[1] in r.getMessage()]
    assert f"reply {reply.pk}" in logged.getMessage()
    assert logged.exc_info is not None and "Traceback" in caplog.text and "10.0.0.5" in caplog.text


def test_a_question_that_no_longer_fits_fails_in_the_worker_without_retry(alice: object) -> None:
    reply = _reply_to("Hello there", alice)
    # While it waits, its owner adds instructions the context cannot hold next to any question.
    reply.conversation.instructions = " ".join(f"rule{i}" for i in range(20000))
    reply.conversation.save(update_fields=["instructions"])
    generate_reply_task.run(reply.pk)
    reply.refresh_from_db()
    assert reply.status == "failed" and "too long for the model's context window" in reply.error
    assert not reply.retryable  # Retry would fail the same way: the page offers none


def test_a_reply_queued_before_its_owner_was_deactivated_is_not_generated(alice: Any) -> None:
    reply = _reply_to("Hello there", alice)
    alice.is_active = False
    alice.save()
    generate_reply_task.run(reply.pk)
    reply.refresh_from_db()
    assert reply.status == "failed"
    assert reply.error == "This reply was not written: the account that asked for it is deactivated."
    assert reply.content == "" and reply.answer_tokens == 0


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
    with serve(lambda hit: Reply(200, b"{}")) as endpoint:
        _weather_function(endpoint.url, groups=[])  # defined, but alice's groups may not use it
        reply = _reply_to("What is the weather like?", alice, enabled_tools=["functions.get_weather"])
        generate_reply_task.run(reply.pk)
    reply.refresh_from_db()
    assert reply.status == "done", reply.error
    [call] = reply.tool_calls
    assert (call["recipient"], call["arguments"], call["error"]) == (
        "functions.get_weather",
        WEATHER_CALL,
        True,
    )
    assert call["result"] == "Error: the tool 'functions.get_weather' is not available in this conversation."
    assert reply.content == SCRIPTS["function"].after_tool.final  # type: ignore[union-attr]
    assert endpoint.hits == []


def _weather_function(url: str, *, groups: list[Group], timeout_s: float = 5.0) -> Function:
    function = Function.objects.create(
        name="get_weather",
        description="Get the current weather in a city.",
        parameters={"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        url=f"{url}/weather",
        timeout_s=timeout_s,
        secret_header="X-Api-Key",
        secret_value="s3cret",
    )
    function.groups.set(groups)
    return function


@pytest.fixture
def team(alice: object) -> Group:
    group = Group.objects.create(name="team")
    alice.groups.add(group)  # type: ignore[attr-defined]
    return group


def test_a_function_call_reaches_the_endpoint_and_its_result_reaches_the_model(
    alice: object, team: Group
) -> None:
    answer = b'{"temperature_c": 22, "sky": "sunny"}'
    with serve(lambda hit: Reply(200, answer, {"Content-Type": "application/json"})) as endpoint:
        _weather_function(endpoint.url, groups=[team])
        reply = _reply_to("What is the weather like?", alice, enabled_tools=["functions.get_weather"])
        generate_reply_task.run(reply.pk)
    reply.refresh_from_db()
    assert reply.status == "done", reply.error
    [hit] = endpoint.hits
    assert (hit.method, hit.path, json.loads(hit.body)) == ("POST", "/weather", {"city": "Paris"})
    assert hit.headers["x-api-key"] == "s3cret" and hit.headers["content-type"] == "application/json"
    [call] = reply.tool_calls
    assert (call["recipient"], call["arguments"], call["result"], call["error"]) == (
        "functions.get_weather",
        WEATHER_CALL,
        answer.decode(),
        False,
    )
    assert call["started_at"] <= call["finished_at"]
    assert reply.content == SCRIPTS["function"].after_tool.final  # type: ignore[union-attr]


def test_a_slow_function_times_out_and_the_model_is_told(alice: object, team: Group) -> None:
    with serve(lambda hit: Reply(200, b"{}", delay_s=3)) as endpoint:
        _weather_function(endpoint.url, groups=[team], timeout_s=0.5)
        reply = _reply_to("What is the weather like?", alice, enabled_tools=["functions.get_weather"])
        started = time.monotonic()
        generate_reply_task.run(reply.pk)
        elapsed = time.monotonic() - started
    reply.refresh_from_db()
    assert reply.status == "done", reply.error
    [call] = reply.tool_calls
    assert call["error"] is True
    assert call["result"] == "Error: The function get_weather did not answer within 0.5 s."
    assert reply.content == SCRIPTS["function"].after_tool.final  # type: ignore[union-attr]
    assert elapsed < 3


def test_python_code_runs_in_the_sandbox_and_its_output_reaches_the_model(alice: object) -> None:
    reply = _reply_to("Run some python", alice, enabled_tools=["python"])
    generate_reply_task.run(reply.pk)
    reply.refresh_from_db()
    assert reply.status == "done", reply.error
    [call] = reply.tool_calls
    assert (call["recipient"], call["arguments"], call["result"], call["error"]) == (
        "python",
        PYTHON_CALL,
        "42\n",
        False,
    )
    assert reply.content == SCRIPTS["python"].after_tool.final  # type: ignore[union-attr]


def test_a_browser_search_reaches_the_search_endpoint_and_the_answer_cites_it(alice: object) -> None:
    results = {
        "results": [{"url": "https://gpt-oss.example/", "title": "GPT OSS", "content": "Open weight models."}]
    }
    body = json.dumps(results).encode()
    with serve(lambda hit: Reply(200, body, {"Content-Type": "application/json"})) as searx:
        ToolSettings.objects.update_or_create(pk=1, defaults={"search_url": f"{searx.url}/search"})
        reply = _reply_to("Please search the web", alice, enabled_tools=["browser"])
        generate_reply_task.run(reply.pk)
    reply.refresh_from_db()
    assert reply.status == "done", reply.error
    assert [h.path for h in searx.hits] == ["/search?q=gpt-oss&format=json"]
    [call] = reply.tool_calls
    assert (call["recipient"], call["arguments"], call["error"]) == ("browser.search", SEARCH_CALL, False)
    assert (
        "L0: 【0†GPT OSS†gpt-oss.example】" in call["result"] and "L1: Open weight models." in call["result"]
    )
    assert call["sources"][0]["cursor"] == 0
    assert reply.content == SCRIPTS["search"].after_tool.final  # type: ignore[union-attr]
    html = render_markdown(reply.content, sources=message_sources(reply.tool_calls))
    assert 'href="https://gpt-oss.example/"' in html and 'rel="noopener noreferrer nofollow"' in html
    assert ">gpt-oss.example</a>" in html and "【0" not in html


def test_a_search_endpoint_that_is_down_is_a_tool_error_and_the_answer_goes_on(alice: object) -> None:
    with serve(lambda hit: Reply(503, b"down")) as searx:
        ToolSettings.objects.update_or_create(pk=1, defaults={"search_url": f"{searx.url}/search"})
        reply = _reply_to("Please search the web", alice, enabled_tools=["browser"])
        generate_reply_task.run(reply.pk)
    reply.refresh_from_db()
    assert reply.status == "done", reply.error
    [call] = reply.tool_calls
    assert call["error"] is True and call["result"] == "Error: The search service answered HTTP 503."
    assert reply.content == SCRIPTS["search"].after_tool.final  # type: ignore[union-attr]


def test_other_streams_keep_decoding_while_a_tool_call_is_slow(
    alice: object, bob: object, team: Group
) -> None:
    release = threading.Event()
    called = threading.Event()

    def slow(hit: Hit) -> Reply:
        called.set()
        release.wait(60)
        return Reply(200, b'{"sky": "sunny"}')

    with serve(slow) as endpoint:
        _weather_function(endpoint.url, groups=[team], timeout_s=60)
        waiting = _reply_to("What is the weather like?", alice, enabled_tools=["functions.get_weather"])

        def run_waiting() -> None:
            try:
                generate_reply_task.run(waiting.pk)
            finally:
                connections.close_all()

        thread = threading.Thread(target=run_waiting)
        thread.start()
        try:
            assert called.wait(60), "the function was never called"
            # The first reply's task thread is blocked in its tool call; another reply streams meanwhile.
            other = _reply_to("Hello there", bob)
            generate_reply_task.run(other.pk)
            other.refresh_from_db()
            assert other.status == "done" and other.content == SCRIPTS["plain"].first.final
            assert other.answer_tokens > 5
            waiting.refresh_from_db()
            assert waiting.status == "streaming" and waiting.tool_calls == []
        finally:
            release.set()
            thread.join(60)
    waiting.refresh_from_db()
    assert waiting.status == "done", waiting.error
    assert waiting.content == SCRIPTS["function"].after_tool.final  # type: ignore[union-attr]


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
        # A tool call through the real worker: the sandbox starts from a Celery task thread.
        replies.append(_reply_to("Run some python", alice, enabled_tools=["python"]))
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
            SCRIPTS["python"].after_tool.final,  # type: ignore[union-attr]
        ]
        assert stored[replies[3].pk].tool_calls[0]["result"] == "42\n"
        assert all(m.task_id for m in stored.values())
    finally:
        worker.terminate()
        output, _ = worker.communicate(timeout=30)
    assert output.count("model tiny ready") == 1, output


def test_older_turns_that_no_longer_fit_are_left_out_and_the_user_is_told(alice: object) -> None:
    conversation = make_conversation(alice)
    long_text = "lorem ipsum dolor sit amet " * 120  # about 600 tokens
    for _ in range(8):
        make_exchange(conversation, long_text, long_text)
    _, reply = message_send(conversation=conversation, text="Hello")
    generate_reply_task.run(reply.pk)
    reply.refresh_from_db()
    assert reply.status == "done", reply.error
    assert reply.content == SCRIPTS["plain"].first.final
    assert "oldest turns of this conversation were left out" in reply.notice
    assert reply.prompt_tokens <= 8192 - 4096


@pytest.mark.slow
@pytest.mark.django_db  # the worker checks the (test) database before anything else
def test_a_worker_whose_model_file_is_missing_stops_and_says_what_to_change(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "gptoss_web.settings_test",
        "DATABASE_URL": database_url_of_tests(),  # a worker checks its database first
        "GPTOSS_REDIS_PREFIX": django_settings.GPTOSS_REDIS_PREFIX,
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


@pytest.mark.slow
@pytest.mark.django_db  # the worker checks the (test) database before anything else
def test_a_worker_told_to_offload_more_layers_than_the_model_has_names_the_variable_to_change() -> None:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "gptoss_web.settings_test",
        "DATABASE_URL": database_url_of_tests(),
        "GPTOSS_REDIS_PREFIX": django_settings.GPTOSS_REDIS_PREFIX,
        "GPTOSS_MODEL": "tiny",
        "GPTOSS_N_CPU_MOE": "99",
    }
    result = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "gptoss_web", "worker", "-P", "threads", "-Q", "gpu.x"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert (
        "The GPU worker cannot start: GPTOSS_N_CPU_MOE=99 exceeds the model's 2 layers: use at most 2, "
        "or GPTOSS_CPU_MOE=true to keep every expert on CPU"
    ) in output
    assert "Traceback" not in output


def test_an_answer_cut_at_its_length_limit_is_kept_and_the_user_is_told(alice: object) -> None:
    reply = _reply_to("Tell me an endless story", alice)
    generate_reply_task.run(reply.pk)
    reply.refresh_from_db()
    assert reply.status == "done" and reply.error == ""
    assert reply.content.startswith(SCRIPTS["endless"].first.final)
    assert reply.notice == "The answer stopped at its length limit."
    assert reply.answer_tokens == 4096 - 3  # the budget, less the channel header tokens


def test_a_conversations_temperature_top_p_and_length_limit_reach_the_engine(
    alice: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The chat reply samples as its conversation says, and its limit ends the answer before the model's own
    budget would; the user is told which limit it was."""
    generations = _spy_on_the_engine(monkeypatch)
    conversation = make_conversation(alice)
    conversation_update_settings(
        conversation=conversation,
        reasoning_effort="low",
        enabled_tools=[],
        instructions="",
        temperature=0.25,
        top_p=0.9,
        max_answer_tokens=40,
    )
    _, reply = message_send(conversation=conversation, text="Tell me an endless story")
    assert reply.reserved_tokens == 40  # only the limit is held against the quota
    generate_reply_task.run(reply.pk)
    reply.refresh_from_db()
    [generation] = generations
    assert generation.sampling == SamplingParams(temperature=0.25, top_p=0.9)
    assert generation.max_tokens == 40
    assert reply.status == "done" and reply.error == ""
    assert reply.answer_tokens == 40 - 3  # the limit, less the channel header tokens
    assert reply.content.startswith(SCRIPTS["endless"].first.final)
    assert reply.notice == limit_notice(40)
    assert "length limit of 40 tokens" in reply.notice


def test_a_length_limit_above_the_models_budget_does_not_raise_it(
    alice: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Say the admin lowered the model's budget after the limit was set: the model's budget holds."""
    generations = _spy_on_the_engine(monkeypatch)
    reply = _reply_to("Hello there", alice)
    Conversation.objects.filter(pk=reply.conversation_id).update(max_answer_tokens=100_000)
    generate_reply_task.run(reply.pk)
    reply.refresh_from_db()
    assert reply.status == "done"
    assert [g.max_tokens for g in generations] == [django_settings.GPTOSS_MAX_ANSWER_TOKENS]
    assert [g.sampling for g in generations] == [SamplingParams()]  # no settings: gpt-oss's defaults


def _spy_on_the_engine(monkeypatch: pytest.MonkeyPatch) -> list[Generation]:
    """Return the list that every generation the worker submits to the engine is added to."""
    generations: list[Generation] = []
    submit = Engine.submit

    def spy(self: Engine, prompt: list[int], **options: Any) -> Generation:
        generation = submit(self, prompt, **options)
        generations.append(generation)
        return generation

    monkeypatch.setattr(Engine, "submit", spy)
    return generations


def test_a_call_past_the_tool_call_limit_runs_nothing_and_the_model_answers_anyway(
    alice: object, team: Group, settings: object
) -> None:
    settings.GPTOSS_MAX_TOOL_CALLS = 0  # type: ignore[attr-defined]
    with serve(lambda hit: Reply(200, b'{"temperature_c": 21}')) as endpoint:
        _weather_function(endpoint.url, groups=[team])
        reply = _reply_to("What is the weather like?", alice, enabled_tools=["functions.get_weather"])
        generate_reply_task.run(reply.pk)
    reply.refresh_from_db()
    assert reply.status == "done", reply.error
    assert endpoint.hits == []
    [call] = reply.tool_calls
    assert call["result"] == (
        "Error: this answer already used its 0 tool calls. Answer now with what you have."
    )
    assert reply.content == SCRIPTS["function"].after_tool.final  # type: ignore[union-attr]


def test_replies_are_answered_oldest_first_whichever_task_comes_first(
    alice: object, bob: object, settings: object
) -> None:
    """After Redis lost the queue, a message sent just then is not answered before the older queued ones."""
    settings.GPTOSS_MAX_IN_FLIGHT_PER_USER = 5  # type: ignore[attr-defined]
    older = [_reply_to("Hello", alice), _reply_to("Hi again", alice)]
    newest = _reply_to("Hello there", bob)
    generate_reply_task.run(newest.pk)  # the new message's task reaches the worker first
    statuses = {m.pk: m.status for m in Message.objects.filter(role="assistant")}
    assert [statuses[r.pk] for r in (*older, newest)] == ["done", "queued", "queued"]
    generate_reply_task.run(newest.pk)  # the re-sent tasks follow, in any order
    generate_reply_task.run(older[0].pk)
    generate_reply_task.run(older[1].pk)  # one task too many: it finds nothing left to answer
    answered = Message.objects.filter(role="assistant").order_by("started_at")
    assert [m.pk for m in answered] == [r.pk for r in (*older, newest)]
    assert {m.status for m in answered} == {"done"}
    assert all(m.content == SCRIPTS["plain"].first.final for m in answered)


def test_a_task_thread_keeps_its_database_connection_from_one_task_to_the_next() -> None:
    """Celery's Django fixup closes the connection around every task unless told to reuse it; each reply's
    claim would then start a new PostgreSQL backend on the way to its first token."""
    app.loader.import_default_modules()
    fixup = DjangoWorkerFixup(app)
    task = SimpleNamespace(request=SimpleNamespace(is_eager=False))
    connection = connections["default"]
    connection.ensure_connection()
    opened = connection.connection
    for _ in range(5):
        fixup.on_task_postrun(sender=task)
        fixup.on_task_prerun(sender=task)
    assert connection.connection is opened
