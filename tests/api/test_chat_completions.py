"""`POST /v1/chat/completions` as OpenAI's own Python client sees it, on the live stack and the tiny model."""

from __future__ import annotations

import json
import time
from typing import Any, Literal

import httpx
import jsonschema
import openai
import pydantic
import pytest

from chat.models import Conversation, Message
from chat.services.api_keys import api_key_create, api_key_revoke
from gptoss_web.devtools.stack import Stack
from gptoss_web.devtools.tinymodel import (
    PLAIN_ANSWER,
    REASONING_ANALYSIS,
    REASONING_ANSWER,
    WEATHER_ANSWER,
    WEATHER_CALL,
)
from inference.models import Quota, UsageDay
from tests.factories import UserFactory

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city now.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def client_for(live: Stack, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{live.base_url}/v1", api_key=key, max_retries=0, timeout=60)


@pytest.fixture
def key(live: Stack) -> str:
    _, plaintext = api_key_create(owner=UserFactory(username="alice"), name="laptop")
    return plaintext


@pytest.fixture
def client(live: Stack, key: str) -> openai.OpenAI:
    return client_for(live, key)


def test_the_models_list_names_what_the_key_s_user_may_use(client: openai.OpenAI) -> None:
    assert [m.id for m in client.models.list()] == ["tiny"]
    assert client.models.retrieve("tiny").id == "tiny"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-oss-999b")


def test_a_completion_answers_with_the_model_s_words_and_its_usage(client: openai.OpenAI) -> None:
    completion = client.chat.completions.create(
        model="tiny", messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    )
    choice = completion.choices[0]
    assert choice.message.content == PLAIN_ANSWER
    assert choice.finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens > 0
    assert completion.usage.completion_tokens > 0
    # Nothing is kept but the usage figures.
    assert not Conversation.objects.exists()
    assert UsageDay.objects.get().answer_tokens == completion.usage.completion_tokens


def test_reasoning_is_a_field_of_the_message_unless_excluded(client: openai.OpenAI) -> None:
    messages = [{"role": "user", "content": "Please think"}]
    shown = client.chat.completions.create(model="tiny", messages=messages, reasoning_effort="high")
    assert shown.choices[0].message.content == REASONING_ANSWER
    assert shown.choices[0].message.reasoning == REASONING_ANALYSIS  # type: ignore[attr-defined]
    assert shown.usage is not None and shown.usage.completion_tokens_details is not None
    assert shown.usage.completion_tokens_details.reasoning_tokens > 0
    hidden = client.chat.completions.create(
        model="tiny", messages=messages, extra_body={"reasoning": {"exclude": True}}
    )
    assert hidden.choices[0].message.content == REASONING_ANSWER
    assert getattr(hidden.choices[0].message, "reasoning", None) is None


def test_a_stream_carries_the_answer_in_order_and_ends_with_usage(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "Please think"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    content = reasoning = ""
    finish = None
    usage = None
    for chunk in stream:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            content += choice.delta.content or ""
            reasoning += getattr(choice.delta, "reasoning", None) or ""
            finish = choice.finish_reason or finish
    assert content == REASONING_ANSWER
    assert reasoning == REASONING_ANALYSIS
    assert finish == "stop"
    assert usage is not None and usage.total_tokens > usage.prompt_tokens


def test_a_function_call_goes_to_the_client_and_its_result_comes_back(client: openai.OpenAI) -> None:
    messages: list[Any] = [{"role": "user", "content": "What is the weather like?"}]
    first = client.chat.completions.create(model="tiny", messages=messages, tools=[WEATHER_TOOL])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == json.loads(WEATHER_CALL)
    messages += [
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": '{"sky": "sunny", "celsius": 22}'},
    ]
    second = client.chat.completions.create(model="tiny", messages=messages, tools=[WEATHER_TOOL])
    assert second.choices[0].message.content == WEATHER_ANSWER
    assert second.choices[0].finish_reason == "stop"


def test_a_streamed_function_call_arrives_whole(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "weather?"}], tools=[WEATHER_TOOL], stream=True
    )
    calls: dict[int, dict[str, str]] = {}
    finish = None
    for chunk in stream:
        for choice in chunk.choices:
            for call in choice.delta.tool_calls or []:
                entry = calls.setdefault(call.index, {"name": "", "arguments": "", "id": ""})
                entry["id"] += call.id or ""
                entry["name"] += (call.function and call.function.name) or ""
                entry["arguments"] += (call.function and call.function.arguments) or ""
            finish = choice.finish_reason or finish
    assert finish == "tool_calls"
    assert calls[0]["name"] == "get_weather"
    assert json.loads(calls[0]["arguments"]) == json.loads(WEATHER_CALL)


def test_stop_sequences_and_max_tokens_end_the_answer(client: openai.OpenAI) -> None:
    stopped = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "Hi"}], stop=["friendly"]
    )
    assert stopped.choices[0].message.content == PLAIN_ANSWER.split("friendly")[0]
    assert stopped.choices[0].finish_reason == "stop"
    short = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "Hi"}], max_tokens=4
    )
    assert short.choices[0].finish_reason == "length"
    assert PLAIN_ANSWER.startswith(short.choices[0].message.content or "")


MOOD_SCHEMA = {
    "type": "object",
    "properties": {"mood": {"enum": ["happy", "sad"]}},
    "required": ["mood"],
    "additionalProperties": False,
}


class Mood(pydantic.BaseModel):
    mood: Literal["happy", "sad"]


def test_a_json_schema_response_format_makes_the_answer_valid_json_and_keeps_the_reasoning(
    client: openai.OpenAI,
) -> None:
    completion = client.chat.completions.create(
        model="tiny",
        messages=[{"role": "user", "content": "Please think"}],
        response_format={"type": "json_schema", "json_schema": {"name": "mood", "schema": MOOD_SCHEMA}},
    )
    message = completion.choices[0].message
    assert message.content is not None
    jsonschema.validate(json.loads(message.content), MOOD_SCHEMA)
    assert completion.choices[0].finish_reason == "stop"
    assert message.reasoning == REASONING_ANALYSIS  # type: ignore[attr-defined]


def test_the_client_s_parse_helper_returns_its_pydantic_model(client: openai.OpenAI) -> None:
    parsed = client.chat.completions.parse(
        model="tiny", messages=[{"role": "user", "content": "How do you feel?"}], response_format=Mood
    )
    assert isinstance(parsed.choices[0].message.parsed, Mood)


def test_a_schema_the_grammar_cannot_express_fails_the_reply_saying_so(client: openai.OpenAI) -> None:
    remote = {"type": "object", "properties": {"a": {"$ref": "https://example.com/a.json"}}}
    with pytest.raises(openai.InternalServerError, match="response_format"):
        client.chat.completions.create(
            model="tiny",
            messages=[{"role": "user", "content": "Hi"}],
            response_format={"type": "json_schema", "json_schema": {"name": "remote", "schema": remote}},
        )


def test_each_refusal_is_the_client_s_own_exception(live: Stack, client: openai.OpenAI, key: str) -> None:
    hi = [{"role": "user", "content": "Hi"}]
    with pytest.raises(openai.AuthenticationError):
        client_for(live, "gok_00000000_nope").chat.completions.create(model="tiny", messages=hi)
    with pytest.raises(openai.NotFoundError):
        client.chat.completions.create(model="gpt-oss-999b", messages=hi)
    with pytest.raises(openai.BadRequestError) as bad:
        client.chat.completions.create(model="tiny", messages=hi, temperature=3)
    assert bad.value.param == "temperature"  # type: ignore[attr-defined]
    with pytest.raises(openai.BadRequestError, match="'n' is not supported"):
        client.chat.completions.create(model="tiny", messages=hi, n=2)
    with pytest.raises(openai.BadRequestError):
        client.chat.completions.create(model="tiny", messages=[{"role": "assistant", "content": "Hi"}])
    # A session cookie never authorizes the API.
    response = httpx.post(f"{live.base_url}/v1/chat/completions", json={"model": "tiny", "messages": hi})
    assert response.status_code == 401
    assert response.json()["error"]["type"] == "authentication_error"


def test_the_daily_quota_is_the_chat_page_s(client: openai.OpenAI) -> None:
    user = UserFactory(username="alice")
    Quota.objects.create(user=user, daily_tokens=5)
    with pytest.raises(openai.RateLimitError) as limited:
        client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "Hi"}])
    assert "quota" in str(limited.value)
    assert int(limited.value.response.headers["Retry-After"]) > 0


def test_a_revoked_key_stops_at_once(live: Stack, key: str) -> None:
    from chat.models import ApiKey

    client = client_for(live, key)
    client.models.list()
    api_key_revoke(key=ApiKey.objects.get(), by=UserFactory(username="alice"))
    with pytest.raises(openai.AuthenticationError, match="revoked"):
        client.models.list()


def test_a_client_that_leaves_mid_stream_frees_its_slot(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "Tell an endless story"}], stream=True
    )
    received = 0
    for chunk in stream:
        received += len(chunk.choices[0].delta.content or "") if chunk.choices else 0
        if received > 40:
            break
    stream.close()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if not Message.objects.filter(role="assistant", status__in=Message.IN_FLIGHT).exists():
            break
        time.sleep(0.1)
    reply = Message.objects.get(role="assistant")
    assert reply.status == Message.Status.CANCELLED  # stopped, not run to its 2,000-token limit
    assert reply.answer_tokens < 1000


def test_a_key_revoked_during_a_stream_ends_it(live: Stack, key: str) -> None:
    from chat.models import ApiKey

    stream = client_for(live, key).chat.completions.create(
        model="tiny", messages=[{"role": "user", "content": "Tell an endless story"}], stream=True
    )
    with pytest.raises(openai.APIError, match="revoked"):
        for chunk in stream:
            if chunk.choices and chunk.choices[0].delta.content:
                api_key_revoke(key=ApiKey.objects.get(), by=UserFactory(username="alice"))
    deadline = time.monotonic() + 10
    while Message.objects.filter(role="assistant", status__in=Message.IN_FLIGHT).exists():
        assert time.monotonic() < deadline, "the reply still runs"
        time.sleep(0.1)


UNITS_TOOL = {
    "type": "function",
    "function": {
        "name": "set_units",
        "description": "Choose the units of the answer.",
        "parameters": {
            "type": "object",
            "properties": {"unit": {"enum": ["celsius", "fahrenheit"]}},
            "required": ["unit"],
            "additionalProperties": False,
        },
    },
}


def test_tool_choice_forces_a_call_the_model_would_not_have_made(client: openai.OpenAI) -> None:
    think = [{"role": "user", "content": "Please think"}]
    tools = [WEATHER_TOOL, UNITS_TOOL]
    free = client.chat.completions.create(model="tiny", messages=think, tools=tools)
    assert free.choices[0].message.content == REASONING_ANSWER  # left to itself, the model answers
    for choice in ("required", {"type": "function", "function": {"name": "set_units"}}):
        forced = client.chat.completions.create(
            model="tiny", messages=think, tools=[UNITS_TOOL] if choice == "required" else tools,
            tool_choice=choice, max_tokens=300, temperature=0,
        )  # fmt: skip
        message = forced.choices[0].message
        assert forced.choices[0].finish_reason == "tool_calls", forced
        assert message.reasoning == REASONING_ANALYSIS  # type: ignore[attr-defined]  # it still reasons first
        assert message.tool_calls is not None and message.tool_calls[0].function.name == "set_units"
        assert json.loads(message.tool_calls[0].function.arguments)["unit"] in ("celsius", "fahrenheit")
