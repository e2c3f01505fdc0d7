"""Chat Completions (`POST /v1/chat/completions`): the request read into the services' terms, the reply
written back in OpenAI's.

Roles map onto harmony as gpt-oss's guide says: `system` and `developer` messages become the developer
instructions, earlier user/assistant pairs the finished turns (their reasoning dropped, as harmony wants
after a final answer), and the assistant's tool calls after the last user message, with the `tool` results
that answer them, the turn in progress (their reasoning kept). Reasoning follows OpenRouter's convention
that gpt-oss's guide asks Chat Completions servers to use: a `reasoning` field on the message and on stream
deltas, left out when the request says `reasoning: {"exclude": true}`.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass
from typing import Any

from chat.api.errors import ApiError, invalid, unsupported
from chat.frames import MessagePayload
from chat.models import (
    ApiFunction,
    ApiJsonFormat,
    ApiPrompt,
    ApiSampling,
    ApiToolStep,
    ApiTurn,
    ReasoningEffort,
)

MAX_STOPS = 4
# Accepted and left aside: they do not change the answer.
IGNORED = {
    "user",
    "metadata",
    "store",
    "service_tier",
    "parallel_tool_calls",
    "stream_options",
}
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
KNOWN = {"model", "messages", "stream", "max_tokens", "max_completion_tokens", "temperature", "top_p", "seed",
         "stop", "reasoning_effort", "reasoning", "tools", "tool_choice", "response_format",
         "prompt_cache_key"}  # fmt: skip


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
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise ApiError(400, f"The request body is not valid JSON: {error}.") from None
    if not isinstance(data, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    for name, neutral in NEUTRAL.items():
        if name in data and data[name] != neutral and not (name == "n" and data[name] is None):
            raise unsupported(name)
    for name in data:
        if name not in KNOWN and name not in IGNORED and name not in NEUTRAL:
            raise unsupported(name, "it is not a Chat Completions parameter this server knows")
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise invalid(
            "model", 'Name the model, for example "model": "gpt-oss-20b" (GET /v1/models lists them).'
        )
    reasoning = _object(data, "reasoning")
    effort = data.get("reasoning_effort", reasoning.get("effort", default_effort))
    if effort not in ReasoningEffort.values:
        raise invalid(
            "reasoning_effort", f"reasoning_effort must be one of {', '.join(ReasoningEffort.values)}."
        )
    tool_choice = data.get("tool_choice", "auto")
    if tool_choice not in ("auto", "none"):
        raise unsupported("tool_choice", 'only "auto" and "none" are supported yet')
    functions = [] if tool_choice == "none" else _functions(data.get("tools"))
    stream_options = _object(data, "stream_options")
    json_format = _response_format(data.get("response_format"))
    return CompletionRequest(
        model=model,
        effort=str(effort),
        prompt=_prompt(data.get("messages"), functions),
        sampling=ApiSampling(
            temperature=_number(data, "temperature", 1.0, low=0.0, high=2.0),
            top_p=_number(data, "top_p", 1.0, low=0.0, high=1.0, low_open=True),
            seed=_seed(data.get("seed")),
            stop=_stops(data.get("stop")),
            json=json_format,
            cache_key=_cache_key(data.get("prompt_cache_key")),
        ),
        max_tokens=_max_tokens(data),
        stream=_bool(data, "stream"),
        include_usage=bool(stream_options.get("include_usage", False)),
        exclude_reasoning=bool(reasoning.get("exclude", False)),
    )


def _object(data: dict[str, Any], name: str) -> dict[str, Any]:
    value = data.get(name) or {}
    if not isinstance(value, dict):
        raise invalid(name, f"{name} must be an object.")
    return value


def _bool(data: dict[str, Any], name: str) -> bool:
    value = data.get(name, False)
    if not isinstance(value, bool):
        raise invalid(name, f"{name} must be true or false.")
    return value


def _number(
    data: dict[str, Any], name: str, default: float, *, low: float, high: float, low_open: bool = False
) -> float:
    value = data.get(name)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise invalid(name, f"{name} must be a number.")
    if value > high or value < low or (low_open and value == low):
        bounds = f"{'above' if low_open else 'at least'} {low:g} and at most {high:g}"
        raise invalid(name, f"{name} must be {bounds}; it is {value:g}.")
    return float(value)


def _seed(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid("seed", "seed must be an integer.")
    return value % 2**32


def _cache_key(value: object) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > 200:
        raise invalid("prompt_cache_key", "prompt_cache_key must be a string of at most 200 characters.")
    return value


def _max_tokens(data: dict[str, Any]) -> int | None:
    for name in ("max_completion_tokens", "max_tokens"):
        value = data.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise invalid(name, f"{name} must be a whole number of at least 1.")
        return value
    return None


def _stops(value: object) -> list[str]:
    if value is None:
        return []
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
        raise invalid("stop", "stop must be a non-empty string or a list of them.")
    if len(stops) > MAX_STOPS:
        raise invalid("stop", f"stop takes at most {MAX_STOPS} sequences.")
    return stops


def _response_format(value: object) -> ApiJsonFormat | None:
    """Return the JSON the answer must be, or None for free text.

    Only the shape is checked here: the worker turns the schema into llama.cpp's grammar (the converter
    lives in the llama_cpp package, which the web side never loads) and fails the reply naming what it
    cannot express.
    """
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
    name = spec.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
        raise invalid(
            "response_format.json_schema.name",
            "json_schema.name must be 1 to 64 letters, digits, underscores or dashes.",
        )
    schema = spec.get("schema", {"type": "object"})
    if not isinstance(schema, dict):
        raise invalid("response_format.json_schema.schema", "json_schema.schema must be a JSON Schema.")
    if not isinstance(spec.get("strict", False), bool | None):
        raise invalid("response_format.json_schema.strict", "json_schema.strict must be true or false.")
    return ApiJsonFormat(name=name, schema=schema)


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
        function = tool.get("function")
        if (
            not isinstance(function, dict)
            or not isinstance(function.get("name"), str)
            or not function["name"]
        ):
            raise invalid(f"{param}.function.name", "Each function needs a name.")
        parameters = function.get("parameters", {"type": "object", "properties": {}})
        if not isinstance(parameters, dict):
            raise invalid(f"{param}.function.parameters", "parameters must be a JSON Schema object.")
        description = function.get("description", "")
        functions.append(
            ApiFunction(
                name=function["name"],
                description=description if isinstance(description, str) else "",
                parameters=parameters,
            )
        )
    return functions


def _text(content: object, param: str) -> str:
    """Return a message's text: a string, or the text parts of a list (anything else is refused by name)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise invalid(param, "content must be a string or a list of text parts.")
    texts = []
    for j, part in enumerate(content):
        if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            raise unsupported(f"{param}[{j}]", f"content parts of type {kind!r} are not supported, only text")
        texts.append(part["text"])
    return "".join(texts)


def _prompt(messages: object, functions: list[ApiFunction]) -> ApiPrompt:
    """Return the harmony prompt the messages ask for (see the module's docstring)."""
    if not isinstance(messages, list) or not messages:
        raise invalid("messages", "messages must be a non-empty list.")
    instructions: list[str] = []
    turns: list[tuple[str, str]] = []  # finished (user, final answer) pairs
    user: str | None = None
    final = ""
    steps: list[ApiToolStep] = []
    results: dict[str, int] = {}  # tool call id -> its step, waiting for a `tool` message
    for i, message in enumerate(messages):
        param = f"messages[{i}]"
        if not isinstance(message, dict):
            raise invalid(param, "Each message must be an object with a role.")
        role = message.get("role")
        text = _text(message.get("content"), f"{param}.content")
        if role in ("system", "developer"):
            instructions.append(text)
        elif role == "user":
            if steps and any(not s["result"] for s in steps):
                raise invalid(param, "A tool call has no `tool` message with its result before this message.")
            if user is not None:
                turns.append((user, final))
            user, final, steps, results = text, "", [], {}
        elif role == "assistant":
            calls = message.get("tool_calls") or []
            if not isinstance(calls, list):
                raise invalid(f"{param}.tool_calls", "tool_calls must be a list.")
            if not calls:
                final = text if not final else final + "\n\n" + text
                continue
            reasoning = message.get("reasoning") or message.get("reasoning_content") or ""
            for j, call in enumerate(calls):
                function = call.get("function") if isinstance(call, dict) else None
                if not isinstance(function, dict) or not isinstance(function.get("name"), str):
                    raise invalid(
                        f"{param}.tool_calls[{j}].function", "Each tool call needs a function name."
                    )
                arguments = function.get("arguments", "")
                call_id = call.get("id") or f"call_{i}_{j}"
                results[str(call_id)] = len(steps)
                steps.append(
                    ApiToolStep(
                        call_id=str(call_id),
                        name=function["name"],
                        arguments=arguments if isinstance(arguments, str) else json.dumps(arguments),
                        analysis=str(reasoning) if j == 0 else "",
                        result="",
                    )
                )
        elif role == "tool":
            call_id = message.get("tool_call_id")
            if not isinstance(call_id, str) or call_id not in results:
                raise invalid(
                    f"{param}.tool_call_id",
                    "A `tool` message must answer a tool call of an assistant message.",
                )
            steps[results[call_id]]["result"] = text
        else:
            raise invalid(f"{param}.role", "role must be system, developer, user, assistant or tool.")
    if user is None:
        raise invalid("messages", "The messages need at least one user message.")
    if final and not steps:
        raise invalid(
            "messages", "The last message is the assistant's answer: end with a user or tool message."
        )
    if any(not s["result"] for s in steps):
        raise invalid("messages", "Every tool call of the last assistant message needs a `tool` message.")
    return ApiPrompt(
        instructions="\n\n".join(i for i in instructions if i),
        history=[ApiTurn(user=u, final=f) for u, f in turns],
        user=user,
        steps=steps,
        functions=functions,
    )


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
            "function": {
                "name": call["recipient"].removeprefix("functions."),
                "arguments": call["arguments"],
            },
        }
        for index, call in enumerate(message["tool_calls"])
        if "result" not in call and call["recipient"].startswith("functions.")
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
