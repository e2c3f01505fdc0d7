"""`/v1/responses` as OpenAI's own Python client sees it, on the live stack and the tiny model."""

from __future__ import annotations

import json
import time
from typing import Any, Literal

import httpx
import openai
import pydantic
import pytest

from chat.models import ApiKey, ApiRequest, Conversation, Message
from chat.services.api_keys import api_key_create, api_key_revoke
from gptoss_web.devtools.stack import Stack
from gptoss_web.devtools.tinymodel import (
    PLAIN_ANSWER,
    PYTHON_ANSWER,
    PYTHON_CALL,
    REASONING_ANALYSIS,
    REASONING_ANSWER,
    SEARCH_ANSWER,
    SEARCH_CALL,
    WEATHER_ANSWER,
    WEATHER_CALL,
)
from inference.tools.models import ToolSettings
from tests.api.test_chat_completions import client_for
from tests.factories import UserFactory
from tests.fakes import Reply, serve

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

WEATHER_TOOL = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city now.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
PYTHON_TOOL: Any = {"type": "code_interpreter", "container": {"type": "auto"}}


@pytest.fixture
def alice_key(live: Stack) -> str:
    _, plaintext = api_key_create(owner=UserFactory(username="alice"), name="laptop")
    return plaintext


@pytest.fixture
def client(live: Stack, alice_key: str) -> openai.OpenAI:
    return client_for(live, alice_key)


def _until(condition: Any, seconds: float = 15) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def test_a_response_holds_the_reasoning_and_the_answer_and_is_stored(client: openai.OpenAI) -> None:
    response = client.responses.create(model="tiny", input="Please think", reasoning={"effort": "high"})
    assert response.status == "completed"
    assert response.output_text == REASONING_ANSWER
    reasoning = response.output[0]
    assert reasoning.type == "reasoning"
    assert reasoning.content is not None and reasoning.content[0].text == REASONING_ANALYSIS
    assert response.usage is not None and response.usage.output_tokens_details.reasoning_tokens > 0
    assert response.usage.input_tokens > 0
    # Stored by default: fetched again by id, and a conversation of the user's marked as coming from the API.
    again = client.responses.retrieve(response.id)
    assert again.output_text == REASONING_ANSWER and again.status == "completed"
    conversation = Conversation.objects.get()
    assert conversation.from_api and not conversation.ephemeral
    assert conversation.title == "Please think"


def test_a_stream_carries_the_spec_s_events_in_order(client: openai.OpenAI) -> None:
    kinds: list[str] = []
    numbers: list[int] = []
    reasoning = text = ""
    with client.responses.stream(model="tiny", input="Please think") as stream:
        for event in stream:
            kinds.append(event.type)
            numbers.append(event.sequence_number)
            if event.type == "response.reasoning_text.delta":
                reasoning += event.delta
            elif event.type == "response.output_text.delta":
                text += event.delta
        final = stream.get_final_response()
    assert numbers == list(range(len(numbers)))
    assert kinds[:2] == ["response.created", "response.in_progress"]
    assert kinds[-1] == "response.completed"
    assert kinds.index("response.reasoning_text.done") < kinds.index("response.output_text.delta")
    assert (reasoning, text) == (REASONING_ANALYSIS, REASONING_ANSWER)
    assert final.output_text == REASONING_ANSWER
    assert final.usage is not None and final.usage.output_tokens_details.reasoning_tokens > 0


def test_a_function_call_and_its_output_continue_a_stored_chain(client: openai.OpenAI) -> None:
    first = client.responses.create(model="tiny", input="What is the weather like?", tools=[WEATHER_TOOL])
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather"
    assert json.loads(calls[0].arguments) == json.loads(WEATHER_CALL)
    second = client.responses.create(
        model="tiny",
        previous_response_id=first.id,
        input=[{"type": "function_call_output", "call_id": calls[0].call_id, "output": '{"celsius": 22}'}],
        tools=[WEATHER_TOOL],
    )
    assert second.output_text == WEATHER_ANSWER
    assert second.previous_response_id == first.id
    # One conversation in the chat page: the question and both replies.
    conversation = Conversation.objects.get()
    assert [m.role for m in conversation.messages.all()] == ["user", "assistant", "assistant"]
    # A new question after the answer continues the chain with the earlier turn in the prompt.
    third = client.responses.create(model="tiny", previous_response_id=second.id, input="Hi")
    assert third.output_text == PLAIN_ANSWER
    prompt = ApiRequest.objects.get(response_id=third.id).prompt
    assert prompt["history"] == [{"user": "What is the weather like?", "final": WEATHER_ANSWER}]


def test_a_stateless_client_gets_its_reasoning_sealed_and_nothing_is_stored(client: openai.OpenAI) -> None:
    first = client.responses.create(
        model="tiny",
        input=[{"role": "developer", "content": "Be brief."}, {"role": "user", "content": "Please think"}],
        store=False,
        include=["reasoning.encrypted_content"],
    )
    reasoning = first.output[0]
    assert reasoning.type == "reasoning" and reasoning.encrypted_content
    assert REASONING_ANALYSIS not in reasoning.encrypted_content
    _until(lambda: not Conversation.objects.exists())
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)
    # Sent back, the sealed reasoning is read; altered, it is refused naming the item.
    items: list[Any] = [
        {"role": "user", "content": "Please think"},
        *[item.model_dump(exclude_none=True) for item in first.output],
        {"role": "user", "content": "Hi"},
    ]
    follow_up = client.responses.create(model="tiny", input=items, store=False)
    assert follow_up.output_text == PLAIN_ANSWER
    items[1]["encrypted_content"] = items[1]["encrypted_content"][:-8] + "AAAAAAAA"
    with pytest.raises(openai.BadRequestError) as bad:
        client.responses.create(model="tiny", input=items, store=False)
    assert bad.value.param == "input[1].encrypted_content"  # type: ignore[attr-defined]


class Mood(pydantic.BaseModel):
    mood: Literal["happy", "sad"]


def test_a_json_schema_text_format_is_parsed_by_the_client(client: openai.OpenAI) -> None:
    parsed = client.responses.parse(model="tiny", input="How do you feel?", text_format=Mood)
    assert isinstance(parsed.output_parsed, Mood)


def test_a_background_response_runs_on_and_can_be_cancelled(client: openai.OpenAI) -> None:
    started = client.responses.create(model="tiny", input="Tell an endless story", background=True)
    assert started.status in ("queued", "in_progress")
    _until(lambda: len(client.responses.retrieve(started.id).output_text) > 40)
    cancelled = client.responses.cancel(started.id)
    assert cancelled.status in ("cancelled", "in_progress")
    _until(lambda: client.responses.retrieve(started.id).status == "cancelled")
    reply = Message.objects.get(role="assistant")
    assert reply.status == Message.Status.CANCELLED and reply.content  # the text so far is kept
    # Only a background response can be cancelled.
    done = client.responses.create(model="tiny", input="Hi")
    with pytest.raises(openai.BadRequestError, match="background"):
        client.responses.cancel(done.id)


def test_a_client_that_leaves_a_stream_frees_its_slot(client: openai.OpenAI) -> None:
    received = 0
    with client.responses.stream(model="tiny", input="Tell an endless story") as stream:
        for event in stream:
            if event.type == "response.output_text.delta":
                received += len(event.delta)
            if received > 40:
                break
    _until(lambda: not Message.objects.filter(status__in=Message.IN_FLIGHT).exists(), 10)
    assert Message.objects.get(role="assistant").status == Message.Status.CANCELLED


def test_a_deleted_response_is_gone_and_a_stranger_gets_404_everywhere(
    live: Stack, client: openai.OpenAI
) -> None:
    response = client.responses.create(model="tiny", input="Hi")
    _, bob_key = api_key_create(owner=UserFactory(username="bob"), name="bob's")
    bob = client_for(live, bob_key)
    with pytest.raises(openai.NotFoundError):
        bob.responses.retrieve(response.id)
    with pytest.raises(openai.NotFoundError):
        bob.responses.delete(response.id)
    with pytest.raises(openai.NotFoundError):
        bob.responses.cancel(response.id)
    with pytest.raises(openai.NotFoundError):
        bob.responses.create(model="tiny", previous_response_id=response.id, input="Hi")
    assert client.responses.retrieve(response.id).output_text == PLAIN_ANSWER  # untouched
    client.responses.delete(response.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)
    assert not Conversation.objects.exists()


def test_refusals_name_what_to_change(live: Stack, client: openai.OpenAI, alice_key: str) -> None:
    with pytest.raises(openai.BadRequestError) as bad:
        client.responses.create(model="tiny", input="Hi", tools=[{"type": "file_search"}])  # type: ignore[typeddict-item]
    assert bad.value.param == "tools[0].type"  # type: ignore[attr-defined]
    ToolSettings.objects.update_or_create(pk=1, defaults={"python_enabled": False})
    with pytest.raises(openai.BadRequestError, match="code_interpreter"):
        client.responses.create(model="tiny", input="Hi", tools=[PYTHON_TOOL])
    with pytest.raises(openai.BadRequestError) as bad:
        client.responses.create(model="tiny", input="Hi", temperature=5)
    assert bad.value.param == "temperature"  # type: ignore[attr-defined]
    with pytest.raises(openai.NotFoundError):
        client.responses.create(model="gpt-oss-999b", input="Hi")
    with pytest.raises(openai.AuthenticationError):
        client_for(live, "gok_00000000_nope").responses.create(model="tiny", input="Hi")
    # A web_search the server cannot run is left out, saying so, and the request is answered.
    answered = httpx.post(
        f"{live.base_url}/v1/responses",
        headers={"Authorization": f"Bearer {alice_key}"},
        json={"model": "tiny", "input": "Hi", "tools": [{"type": "web_search"}]},
        timeout=60,
    )
    assert answered.status_code == 200
    assert "web_search left out" in answered.headers["X-Gptoss-Warning"]
    assert answered.json()["output"][-1]["content"][0]["text"] == PLAIN_ANSWER


def test_the_server_s_own_tools_run_on_the_server(client: openai.OpenAI) -> None:
    ran = client.responses.create(model="tiny", input="Run some python", tools=[PYTHON_TOOL])
    call = next(item for item in ran.output if item.type == "code_interpreter_call")
    assert call.code == PYTHON_CALL and call.status == "completed"
    assert call.outputs is not None and "42" in call.outputs[0].logs  # type: ignore[union-attr]
    assert ran.output_text == PYTHON_ANSWER
    hit = {"url": "https://gpt-oss.example/", "title": "GPT OSS", "content": "Open weights."}
    results = {"results": [hit]}
    body = json.dumps(results).encode()
    with serve(lambda hit: Reply(200, body, {"Content-Type": "application/json"})) as searx:
        ToolSettings.objects.update_or_create(pk=1, defaults={"search_url": f"{searx.url}/search"})
        kinds = []
        with client.responses.stream(
            model="tiny", input="Please search the web", tools=[{"type": "web_search"}]
        ) as stream:
            kinds = [event.type for event in stream]
            searched = stream.get_final_response()
    assert len(searx.hits) == 1
    assert "response.web_search_call.completed" in kinds
    search = next(item for item in searched.output if item.type == "web_search_call")
    assert search.action.query == json.loads(SEARCH_CALL)["query"]  # type: ignore[union-attr]
    assert searched.output_text == SEARCH_ANSWER


def test_a_key_revoked_during_a_stream_ends_it(live: Stack, alice_key: str) -> None:
    client = client_for(live, alice_key)
    stream = client.responses.create(model="tiny", input="Tell an endless story", stream=True)
    with pytest.raises(openai.APIError, match="revoked"):
        for event in stream:
            if event.type == "response.output_text.delta":
                api_key_revoke(key=ApiKey.objects.get(), by=UserFactory(username="alice"))
    _until(lambda: not Message.objects.filter(status__in=Message.IN_FLIGHT).exists(), 10)
