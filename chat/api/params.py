"""Readers of request parameters shared by the API's endpoints: each checks one value and raises the 400 that
names it (chat.api.errors), or returns it in the services' terms."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from chat.api.errors import ApiError, invalid, unsupported
from chat.models import ApiForcedCall, ApiFunction, ApiJsonFormat, ReasoningEffort

MAX_STOPS = 4


def body_object(body: bytes) -> dict[str, Any]:
    """Return the request body's JSON object."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as error:
        raise ApiError(400, f"The request body is not valid JSON: {error}.") from None
    if not isinstance(data, dict):
        raise ApiError(400, "The request body must be a JSON object.")
    return data


def refuse_unknown(
    data: dict[str, Any], *, known: set[str], ignored: set[str], neutral: dict[str, Any], endpoint: str
) -> None:
    """Refuse, by name, a parameter that would change the answer and is not supported (set to anything but
    its neutral value), and any parameter *endpoint* does not have; *ignored* ones change nothing."""
    for name, value in neutral.items():
        if name in data and data[name] is not None and data[name] != value:
            raise unsupported(name)
    for name in data:
        if name not in known and name not in ignored and name not in neutral:
            raise unsupported(name, f"it is not a {endpoint} parameter this server knows")


def model_param(data: dict[str, Any]) -> str:
    model = data.get("model")
    if not isinstance(model, str) or not model:
        raise invalid(
            "model", 'Name the model, for example "model": "gpt-oss-20b" (GET /v1/models lists them).'
        )
    return model


def effort_param(value: object, param: str) -> str:
    if value not in ReasoningEffort.values:
        raise invalid(param, f"{param} must be one of {', '.join(ReasoningEffort.values)}.")
    return str(value)


def object_param(data: dict[str, Any], name: str) -> dict[str, Any]:
    value = data.get(name) or {}
    if not isinstance(value, dict):
        raise invalid(name, f"{name} must be an object.")
    return value


def bool_param(data: dict[str, Any], name: str, default: bool = False) -> bool:
    value = data.get(name, default)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise invalid(name, f"{name} must be true or false.")
    return value


def number_param(
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


def seed_param(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid("seed", "seed must be an integer.")
    return value % 2**32


def cache_key_param(value: object) -> str:
    if value is None:
        return ""
    if not isinstance(value, str) or len(value) > 200:
        raise invalid("prompt_cache_key", "prompt_cache_key must be a string of at most 200 characters.")
    return value


def max_tokens_param(data: dict[str, Any], names: Iterable[str]) -> int | None:
    """Return the first of *names* the request sets (the answer's token limit), or None."""
    for name in names:
        value = data.get(name)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise invalid(name, f"{name} must be a whole number of at least 1.")
        return value
    return None


def stops_param(value: object) -> list[str]:
    if value is None:
        return []
    stops = [value] if isinstance(value, str) else value
    if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
        raise invalid("stop", "stop must be a non-empty string or a list of them.")
    if len(stops) > MAX_STOPS:
        raise invalid("stop", f"stop takes at most {MAX_STOPS} sequences.")
    return stops


def json_schema_format(spec: dict[str, Any], param: str) -> ApiJsonFormat:
    """Return the JSON Schema format *spec* names (`name`, `schema`, `strict`), checked for shape only.

    The worker turns the schema into llama.cpp's grammar (the converter lives in the llama_cpp package, which
    the web side never loads) and fails the reply naming what it cannot express.
    """
    name = spec.get("name")
    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
        raise invalid(
            f"{param}.name", "The schema's name must be 1 to 64 letters, digits, underscores or dashes."
        )
    schema = spec.get("schema", {"type": "object"})
    if not isinstance(schema, dict):
        raise invalid(f"{param}.schema", "schema must be a JSON Schema object.")
    if not isinstance(spec.get("strict", False), bool | None):
        raise invalid(f"{param}.strict", "strict must be true or false.")
    return ApiJsonFormat(name=name, schema=schema)


def function_param(spec: object, param: str, *, namespace: str = "functions") -> ApiFunction:
    """Return the function *spec* declares (`name`, `description`, `parameters`), in *namespace*."""
    if not isinstance(spec, dict) or not isinstance(spec.get("name"), str) or not spec["name"]:
        raise invalid(f"{param}.name", "Each function needs a name.")
    if not re.fullmatch(r"[A-Za-z0-9_-]{1,128}", spec["name"]):
        raise invalid(f"{param}.name", "A function's name must be letters, digits, underscores or dashes.")
    parameters = spec.get("parameters") or {"type": "object", "properties": {}}
    if not isinstance(parameters, dict):
        raise invalid(f"{param}.parameters", "parameters must be a JSON Schema object.")
    description = spec.get("description", "")
    function = ApiFunction(
        name=spec["name"],
        description=description if isinstance(description, str) else "",
        parameters=parameters,
    )
    if namespace != "functions":
        function["namespace"] = namespace
    return function


def text_param(content: object, param: str, *, kinds: tuple[str, ...] = ("text",)) -> str:
    """Return a message's text: a string, or the text parts of a list (parts of other *kinds* refused)."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise invalid(param, "content must be a string or a list of text parts.")
    texts = []
    for j, part in enumerate(content):
        if (
            not isinstance(part, dict)
            or part.get("type") not in kinds
            or not isinstance(part.get("text"), str)
        ):
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            raise unsupported(f"{param}[{j}]", f"content parts of type {kind!r} are not supported, only text")
        texts.append(part["text"])
    return "".join(texts)


def recipient(function: ApiFunction) -> str:
    """Return the harmony recipient of a call to *function* (`functions.NAME`, or its namespace's)."""
    return f"{function.get('namespace', 'functions')}.{function['name']}"


def tool_choice_param(
    value: object, functions: list[ApiFunction]
) -> tuple[list[ApiFunction], ApiForcedCall | None]:
    """Return the functions to declare and the call the reply is forced to make, if any.

    `auto` (the default) lets the model choose, `none` declares no function, `required` forces a call to one
    of them, and a named function (`{"type": "function", "name": ...}`, or Chat Completions' nested
    `function.name`) a call to that one: llama.cpp's grammar sampling holds the reply to it.
    """
    if value is None or value == "auto":
        return functions, None
    if value == "none":
        return [], None
    if value == "required":
        if not functions:
            raise invalid("tool_choice", 'tool_choice "required" needs at least one function in tools.')
        schema = functions[0]["parameters"] if len(functions) == 1 else None
        return functions, ApiForcedCall(recipients=[recipient(f) for f in functions], schema=schema)
    if isinstance(value, dict) and value.get("type") == "function":
        nested = value.get("function")
        name = nested.get("name") if isinstance(nested, dict) else value.get("name")
        chosen = [f for f in functions if f["name"] == name]
        if not chosen:
            raise invalid("tool_choice", f"tool_choice names the function {name!r}, which is not in tools.")
        return functions, ApiForcedCall(recipients=[recipient(chosen[0])], schema=chosen[0]["parameters"])
    raise unsupported("tool_choice", 'use "auto", "none", "required" or {"type": "function", "name": ...}')
