"""Reading a Responses request into the services' terms (no server needed)."""

from __future__ import annotations

import json
from typing import Any

import pytest

from chat.api import responses
from chat.api.errors import ApiError
from chat.api.sealing import Unreadable, seal, unseal

pytestmark = pytest.mark.django_db

WEATHER = {"type": "function", "name": "get_weather", "parameters": {"type": "object"}}


def _prompt(body: dict[str, Any], user_id: int = 1) -> Any:
    parsed = responses.parse(json.dumps({"model": "tiny", **body}).encode())
    return parsed, responses.prompt_for(parsed, previous=None, builtins=[], user_id=user_id)


def test_a_string_input_is_the_user_s_message_and_instructions_come_first() -> None:
    _, prompt = _prompt({"input": "Hi", "instructions": "Be brief."})
    assert (prompt["user"], prompt["instructions"], prompt["history"]) == ("Hi", "Be brief.", [])


def test_items_become_turns_and_the_turn_in_progress_keeps_its_reasoning() -> None:
    parsed, prompt = _prompt(
        {
            "instructions": "Be brief.",
            "tools": [WEATHER],
            "input": [
                {
                    "type": "message",
                    "role": "developer",
                    "content": [{"type": "input_text", "text": "Use SI."}],
                },
                {"role": "user", "content": "Hello"},
                {"role": "assistant", "content": [{"type": "output_text", "text": "Hi!"}]},
                {"role": "user", "content": "<environment_context/>"},
                {"role": "user", "content": "Weather?"},
                {
                    "type": "reasoning",
                    "summary": [],
                    "content": [{"type": "reasoning_text", "text": "Need it."}],
                },
                {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{}"},
                {"type": "function_call_output", "call_id": "c1", "output": "sunny"},
            ],
        }
    )
    assert prompt["instructions"] == "Be brief.\n\nUse SI."
    assert prompt["carried"] == "Use SI."  # a chained response keeps it, but not the instructions parameter
    assert prompt["history"] == [{"user": "Hello", "final": "Hi!"}]
    assert prompt["user"] == "<environment_context/>\n\nWeather?"  # consecutive user messages join
    [step] = prompt["steps"]
    assert (step["name"], step["analysis"], step["result"]) == ("get_weather", "Need it.", "sunny")
    assert [f["name"] for f in parsed.functions] == ["get_weather"]


def test_namespace_tools_and_the_server_s_own_tools_are_told_apart() -> None:
    parsed = responses.parse(
        json.dumps(
            {
                "model": "tiny",
                "input": "Hi",
                "tools": [
                    WEATHER,
                    {"type": "namespace", "name": "agents", "description": "Helpers.", "tools": [
                        {"type": "function", "name": "spawn", "parameters": {"type": "object"}}
                    ]},
                    {"type": "web_search", "external_web_access": False},
                    {"type": "code_interpreter", "container": {"type": "auto"}},
                ],
            }
        ).encode()
    )  # fmt: skip
    assert [(f["name"], f.get("namespace", "functions")) for f in parsed.functions] == [
        ("get_weather", "functions"),
        ("spawn", "agents"),
    ]
    assert parsed.builtins == {"browser": "web_search", "python": "code_interpreter"}


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "Hi", "tools": [{"type": "file_search"}]}, "tools[0].type"),
        (
            {"input": "Hi", "tools": [{"type": "namespace", "name": "functions", "tools": []}]},
            "tools[0].name",
        ),
        ({"input": "Hi", "tool_choice": "required"}, "tool_choice"),
        ({"input": "Hi", "tool_choice": {"type": "web_search"}}, "tool_choice"),
        ({"input": "Hi", "background": True, "store": False}, "background"),
        ({"input": "Hi", "reasoning": {"effort": "extreme"}}, "reasoning.effort"),
        ({"input": "Hi", "truncation": "auto"}, "truncation"),
        ({"input": "Hi", "text": {"verbosity": "low"}}, "text.verbosity"),
        ({"input": [{"type": "function_call_output", "call_id": "x", "output": "?"}]}, "input[0].call_id"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "x"}]}]},
            "input[0].content[0]",
        ),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "input[0].type"),
        ({"input": 7}, "input"),
    ],
)
def test_a_refusal_names_the_parameter(body: dict[str, Any], param: str) -> None:
    with pytest.raises(ApiError) as refused:
        _prompt(body)
    assert refused.value.param == param


def test_fields_that_do_not_change_the_answer_are_accepted() -> None:
    parsed, _ = _prompt(
        {
            "input": "Hi",
            "store": False,
            "stream": True,
            "include": ["reasoning.encrypted_content"],
            "reasoning": {"summary": "auto"},
            "parallel_tool_calls": True,
            "prompt_cache_key": "thread-1",
            "client_metadata": {"session_id": "s"},
            "metadata": {"team": "infra"},
            "user": "someone",
        }
    )
    assert parsed.sealed_reasoning and not parsed.store and parsed.stream
    assert parsed.sampling["cache_key"] == "thread-1"


def test_sealed_reasoning_opens_only_here_and_only_for_its_user() -> None:
    sealed = seal("Need the weather first.", user_id=7)
    assert "weather" not in sealed
    assert unseal(sealed, user_id=7) == "Need the weather first."
    with pytest.raises(Unreadable):
        unseal(sealed, user_id=8)
    with pytest.raises(Unreadable):
        unseal(sealed[:-4] + "AAAA", user_id=7)
    item = {"type": "reasoning", "summary": [], "encrypted_content": sealed}
    call = {"type": "function_call", "call_id": "c1", "name": "get_weather", "arguments": "{}"}
    output = {"type": "function_call_output", "call_id": "c1", "output": "sunny"}
    _, prompt = _prompt({"input": [{"role": "user", "content": "Weather?"}, item, call, output]}, user_id=7)
    assert prompt["steps"][0]["analysis"] == "Need the weather first."
    with pytest.raises(ApiError) as refused:
        _prompt({"input": [{"role": "user", "content": "Weather?"}, item, call, output]}, user_id=8)
    assert refused.value.param == "input[1].encrypted_content"


def test_tool_choice_required_or_named_forces_a_call() -> None:
    spawn = {"type": "function", "name": "spawn", "parameters": {"type": "object"}}
    agents = {"type": "namespace", "name": "agents", "tools": [spawn]}
    parsed, _ = _prompt({"input": "Hi", "tools": [WEATHER, agents], "tool_choice": "required"})
    assert parsed.sampling["call"] == {
        "recipients": ["functions.get_weather", "agents.spawn"],
        "schema": None,
    }
    named = {"type": "function", "name": "get_weather"}
    parsed, _ = _prompt({"input": "Hi", "tools": [WEATHER, agents], "tool_choice": named})
    assert parsed.sampling["call"] == {"recipients": ["functions.get_weather"], "schema": {"type": "object"}}
    parsed, _ = _prompt({"input": "Hi", "tools": [WEATHER], "tool_choice": "none"})
    assert parsed.functions == [] and parsed.sampling["call"] is None
