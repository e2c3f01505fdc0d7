"""Chat Completions (`POST /v1/chat/completions`): the request read into the services' terms, the reply
written back in OpenAI's.

The messages become the prompt as chat.api.prompts says. Reasoning follows OpenRouter's convention that
gpt-oss's guide asks Chat Completions servers to use: a `reasoning` field on the message and on stream
deltas, left out when the request says `reasoning: {"exclude": true}`; a previous assistant message's
`reasoning` goes back into the prompt only before its tool calls (harmony drops it after a final answer).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from chat.api.errors import invalid, unsupported
from chat.api.params import (
    body_object,
    bool_param,
    cache_key_param,
    effort_param,
    function_param,
    json_schema_format,
    max_tokens_param,
    model_param,
    number_param,
    object_param,
    refuse_unknown,
    seed_param,
    stops_param,
    text_param,
    tool_choice_param,
)
from chat.api.prompts import PromptBuilder, client_calls
from chat.frames import MessagePayload
from chat.models import ApiFunction, ApiJsonFormat, ApiPrompt, ApiSampling, ReasoningEffort

# Accepted and left aside: they do not change the answer.
IGNORED = {"user", "metadata", "store", "service_tier", "parallel_tool_calls", "stream_options"}
# Refused by name when set to anything but their neutral value: each would change the answer.
NEUTRAL: dict[str, Any] = {
    "frequency_penalty": 0,
    "presence_penalty": 0,
    "logprobs": False,
    "top_logprobs": None,
    "logit_bias": None,
    "n": 1,
    "modalities": None,
    "audio": None,
    "prediction": None,
    "web_search_options": None,
    "functions": None,
    "function_call": None,
    "verbosity": None,
}
KNOWN = {
    "model",
    "messages",
    "stream",
    "max_tokens",
    "max_completion_tokens",
    "temperature",
    "top_p",
    "seed",
    "stop",
    "reasoning_effort",
    "reasoning",
    "tools",
    "tool_choice",
    "response_format",
    "prompt_cache_key",
}


@dataclass(frozen=True)
class CompletionRequest:
    """A Chat Completions request, checked: what the services queue and how the answer goes back."""

    model: str
    effort: str
    prompt: ApiPrompt
    sampling: ApiSampling
    max_tokens: int | None
    stream: bool
    include_usage: bool
    exclude_reasoning: bool


def parse(body: bytes, *, default_effort: str = ReasoningEffort.MEDIUM) -> CompletionRequest:
    """Read a request body; raise ApiError naming the parameter at fault."""
    data = body_object(body)
    refuse_unknown(data, known=KNOWN, ignored=IGNORED, neutral=NEUTRAL, endpoint="Chat Completions")
    model = model_param(data)
    reasoning = object_param(data, "reasoning")
    effort = effort_param(
        data.get("reasoning_effort", reasoning.get("effort", default_effort)), "reasoning_effort"
    )
    functions, call = tool_choice_param(data.get("tool_choice"), _functions(data.get("tools")))
    return CompletionRequest(
        model=model,
        effort=effort,
        prompt=_prompt(data.get("messages"), functions),
        sampling=ApiSampling(
            temperature=number_param(data, "temperature", 1.0, low=0.0, high=2.0),
            top_p=number_param(data, "top_p", 1.0, low=0.0, high=1.0, low_open=True),
            seed=seed_param(data.get("seed")),
            stop=stops_param(data.get("stop")),
            json=_response_format(data.get("response_format")),
            cache_key=cache_key_param(data.get("prompt_cache_key")),
            call=call,
        ),
        max_tokens=max_tokens_param(data, ("max_completion_tokens", "max_tokens")),
        stream=bool_param(data, "stream"),
        include_usage=bool(object_param(data, "stream_options").get("include_usage", False)),
        exclude_reasoning=bool(reasoning.get("exclude", False)),
    )


def _response_format(value: object) -> ApiJsonFormat | None:
    """Return the JSON the answer must be, or None for free text."""
    if value is None:
        return None
    if not isinstance(value, dict) or value.get("type") not in ("text", "json_object", "json_schema"):
        raise invalid("response_format", "response_format.type must be text, json_object or json_schema.")
    if value["type"] == "text":
        return None
    if value["type"] == "json_object":
        return ApiJsonFormat(name="", schema=None)
    spec = value.get("json_schema")
    if not isinstance(spec, dict):
        raise invalid("response_format.json_schema", "json_schema must be an object with a name and schema.")
    return json_schema_format(spec, "response_format.json_schema")


def _functions(tools: object) -> list[ApiFunction]:
    if tools is None:
        return []
    if not isinstance(tools, list):
        raise invalid("tools", "tools must be a list.")
    functions: list[ApiFunction] = []
    for i, tool in enumerate(tools):
        param = f"tools[{i}]"
        if not isinstance(tool, dict) or tool.get("type") != "function":
            raise unsupported(f"{param}.type", 'only tools of type "function" are supported')
        functions.append(function_param(tool.get("function"), f"{param}.function"))
    return functions


def _prompt(messages: object, functions: list[ApiFunction]) -> ApiPrompt:
    """Return the harmony prompt the messages ask for (chat.api.prompts)."""
    if not isinstance(messages, list) or not messages:
        raise invalid("messages", "messages must be a non-empty list.")
    builder = PromptBuilder("messages")
    for i, message in enumerate(messages):
        param = f"messages[{i}]"
        if not isinstance(message, dict):
            raise invalid(param, "Each message must be an object with a role.")
        role = message.get("role")
        text = text_param(message.get("content"), f"{param}.content")
        if role in ("system", "developer"):
            builder.instruct(text)
        elif role == "user":
            builder.ask(text, param)
        elif role == "assistant":
            calls = message.get("tool_calls") or []
            if not isinstance(calls, list):
                raise invalid(f"{param}.tool_calls", "tool_calls must be a list.")
            if not calls:
                builder.answer(text)
                continue
            builder.reason(str(message.get("reasoning") or message.get("reasoning_content") or ""))
            for j, call in enumerate(calls):
                function = call.get("function") if isinstance(call, dict) else None
                if not isinstance(function, dict) or not isinstance(function.get("name"), str):
                    raise invalid(
                        f"{param}.tool_calls[{j}].function", "Each tool call needs a function name."
                    )
                arguments = function.get("arguments", "")
                builder.call(
                    str(call.get("id") or f"call_{i}_{j}"),
                    function["name"],
                    arguments if isinstance(arguments, str) else json.dumps(arguments),
                )
        elif role == "tool":
            builder.output(message.get("tool_call_id"), text, f"{param}.tool_call_id")
        else:
            raise invalid(f"{param}.role", "role must be system, developer, user, assistant or tool.")
    return builder.build(instructions="", functions=functions, builtins=[])


# --- The reply, in OpenAI's words -------------------------------------------------------------------------


def completion_id(reply_id: int) -> str:
    return f"chatcmpl-{reply_id}"


def call_id(reply_id: int, index: int) -> str:
    return f"call_{reply_id}_{index}"


def tool_calls(reply_id: int, message: MessagePayload) -> list[dict[str, Any]]:
    """Return the client function calls a finished reply ends with (the server's own tools are not shown)."""
    return [
        {
            "id": call_id(reply_id, index),
            "type": "function",
            "function": {"name": step["name"], "arguments": step["arguments"]},
        }
        for index, step in client_calls(message["tool_calls"])
    ]


def usage(message: MessagePayload) -> dict[str, Any]:
    stats = message["stats"]
    generated = stats["reasoning_tokens"] + stats["answer_tokens"]
    return {
        "prompt_tokens": stats["prompt_tokens"],
        "completion_tokens": generated,
        "total_tokens": stats["prompt_tokens"] + generated,
        "completion_tokens_details": {"reasoning_tokens": stats["reasoning_tokens"]},
    }


def completion(request: CompletionRequest, message: MessagePayload, finish_reason: str) -> dict[str, Any]:
    """Return the whole `chat.completion` object of a finished reply."""
    calls = tool_calls(message["id"], message)
    body: dict[str, Any] = {"role": "assistant", "content": message["content"] or (None if calls else "")}
    if not request.exclude_reasoning:
        body["reasoning"] = message["reasoning"]
    if calls:
        body["tool_calls"] = calls
    return {
        "id": completion_id(message["id"]),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.model,
        "choices": [{"index": 0, "message": body, "finish_reason": finish_reason, "logprobs": None}],
        "usage": usage(message),
    }


def chunk(
    request: CompletionRequest, reply_id: int, delta: dict[str, Any], finish: str | None = None
) -> dict[str, Any]:
    """Return one `chat.completion.chunk` of a stream."""
    return {
        "id": completion_id(reply_id),
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": request.model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
    }
