"""A Chat Completions request read into harmony's terms, and what is refused by name (no server needed)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chat.api.completions import parse
from chat.api.errors import ApiError


def read(**body: Any) -> Any:
    return parse(json.dumps({"model": "tiny", **body}).encode())


def test_roles_become_instructions_finished_turns_and_the_turn_in_progress() -> None:
    request = read(
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "developer", "content": [{"type": "text", "text": "Answer in French."}]},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Salut", "reasoning": "dropped after a final answer"},
            {"role": "user", "content": "Weather?"},
            {
                "role": "assistant",
                "content": None,
                "reasoning": "I should call the tool.",
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "w", "arguments": "{}"}}
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "sunny"},
        ]
    )
    prompt = request.prompt
    assert prompt["instructions"] == "Be brief.\n\nAnswer in French."
    assert prompt["history"] == [{"user": "Hi", "final": "Salut"}]
    assert prompt["user"] == "Weather?"
    assert prompt["steps"] == [
        {
            "call_id": "c1",
            "name": "w",
            "arguments": "{}",
            "analysis": "I should call the tool.",
            "result": "sunny",
        }
    ]


def test_sampling_and_limits_are_read_and_checked() -> None:
    request = read(
        messages=[{"role": "user", "content": "Hi"}],
        temperature=0.2,
        top_p=0.9,
        seed=7,
        stop="END",
        max_completion_tokens=64,
        reasoning={"effort": "low", "exclude": True},
        stream=True,
        stream_options={"include_usage": True},
    )
    assert request.sampling == {
        "temperature": 0.2,
        "top_p": 0.9,
        "seed": 7,
        "stop": ["END"],
        "json": None,
        "cache_key": "",
        "call": None,
    }
    assert (request.max_tokens, request.effort, request.exclude_reasoning) == (64, "low", True)
    assert request.stream and request.include_usage


def test_a_json_response_format_is_kept_for_the_worker() -> None:
    schema = {"type": "object", "properties": {"mood": {"enum": ["happy", "sad"]}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "mood", "schema": schema, "strict": True}}
    assert read(messages=[{"role": "user", "content": "Hi"}], response_format=fmt).sampling["json"] == {
        "name": "mood",
        "schema": schema,
    }
    any_object = read(messages=[{"role": "user", "content": "Hi"}], response_format={"type": "json_object"})
    assert any_object.sampling["json"] == {"name": "", "schema": None}
    text = read(messages=[{"role": "user", "content": "Hi"}], response_format={"type": "text"})
    assert text.sampling["json"] is None


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"temperature": 2.5}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"max_tokens": 0}, "max_tokens"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"n": 2}, "n"),
        ({"logprobs": True}, "logprobs"),
        ({"frequency_penalty": 0.5}, "frequency_penalty"),
        ({"tool_choice": "required"}, "tool_choice"),  # with no function to call
        ({"tool_choice": {"type": "function", "function": {"name": "nope"}}}, "tool_choice"),
        ({"response_format": {"type": "xml"}}, "response_format"),
        ({"response_format": {"type": "json_schema"}}, "response_format.json_schema"),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"schema": {}}}},
            "response_format.json_schema.name",
        ),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": []}}},
            "response_format.json_schema.schema",
        ),
        ({"reasoning_effort": "extreme"}, "reasoning_effort"),
        ({"mystery": 1}, "mystery"),
        (
            {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
            "messages[0].content[0]",
        ),
        ({"messages": [{"role": "assistant", "content": "Hi"}]}, "messages"),
        ({"messages": [{"role": "tool", "tool_call_id": "x", "content": "?"}]}, "messages[0].tool_call_id"),
    ],
)
def test_a_refusal_names_the_parameter(body: dict[str, Any], param: str) -> None:
    with pytest.raises(ApiError) as refused:
        read(**{"messages": [{"role": "user", "content": "Hi"}], **body})
    assert refused.value.status == 400
    assert refused.value.param == param


def test_fields_that_do_not_change_the_answer_are_accepted() -> None:
    request = read(
        messages=[{"role": "user", "content": "Hi"}],
        user="me",
        metadata={"a": "b"},
        n=1,
        parallel_tool_calls=True,
    )
    assert request.prompt["user"] == "Hi"


def test_prompt_cache_key_names_the_cache_the_engine_reuses() -> None:
    assert (
        read(messages=[{"role": "user", "content": "Hi"}], prompt_cache_key="repo-a").sampling["cache_key"]
        == "repo-a"
    )
    with pytest.raises(ApiError) as refused:
        read(messages=[{"role": "user", "content": "Hi"}], prompt_cache_key=7)
    assert refused.value.param == "prompt_cache_key"


def test_a_body_that_is_not_json_says_so() -> None:
    with pytest.raises(ApiError, match="not valid JSON"):
        parse(b"{nope")
