"""Admin-defined functions: validate the model's JSON arguments, POST them to the function's endpoint."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

import jsonschema
import urllib3

logger = logging.getLogger(__name__)


class FunctionError(Exception):
    """The call did not produce a result; the message goes back to the model."""


@dataclass(frozen=True)
class Endpoint:
    name: str
    url: str
    timeout_s: float
    parameters: dict[str, Any]
    secret_header: str = ""
    secret_value: str = ""


def check_parameters_schema(schema: Any) -> None:
    """Raise ValueError unless *schema* is a valid JSON schema for an object of arguments."""
    if not isinstance(schema, dict):
        raise ValueError("The parameters must be a JSON object (a JSON schema).")
    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as error:
        raise ValueError(f"Not a valid JSON schema: {error.message}") from error
    if schema and schema.get("type", "object") != "object":
        raise ValueError('The arguments are an object: use "type": "object".')


def parse_arguments(arguments: str, schema: dict[str, Any]) -> dict[str, Any]:
    """Return the model's arguments as an object valid under *schema*; raise FunctionError otherwise."""
    try:
        value = json.loads(arguments) if arguments.strip() else {}
    except ValueError as error:
        raise FunctionError(f"The arguments are not valid JSON ({error}).") from error
    if not isinstance(value, dict):
        raise FunctionError("The arguments must be a JSON object.")
    if schema:
        validator = jsonschema.Draft202012Validator(schema)
        problems = sorted(validator.iter_errors(value), key=lambda e: list(e.path))
        if problems:
            where = "/".join(str(p) for p in problems[0].path) or "arguments"
            raise FunctionError(f"Invalid arguments ({where}: {problems[0].message}).")
    return value


def function_call(endpoint: Endpoint, arguments: str, *, max_bytes: int) -> str:
    """POST the validated *arguments* to *endpoint* and return its answer as text."""
    value = parse_arguments(arguments, endpoint.parameters)
    headers = {"Content-Type": "application/json", "User-Agent": "gptoss-web function call"}
    if endpoint.secret_header and endpoint.secret_value:
        headers[endpoint.secret_header] = endpoint.secret_value
    http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(total=endpoint.timeout_s))
    try:
        response = http.request(
            "POST",
            endpoint.url,
            body=json.dumps(value).encode(),
            headers=headers,
            redirect=False,
            preload_content=False,
        )
        body = response.read(max_bytes + 1, decode_content=True)
        response.release_conn()
    except urllib3.exceptions.NewConnectionError as error:
        # Checked first: urllib3 counts a refused connection (or an unknown host) as a connect timeout.
        message = f"The function {endpoint.name} could not be reached (connection failed)."
        raise FunctionError(message) from error
    except urllib3.exceptions.TimeoutError as error:
        raise FunctionError(
            f"The function {endpoint.name} did not answer within {endpoint.timeout_s:g} s."
        ) from error
    except urllib3.exceptions.HTTPError as error:
        raise FunctionError(
            f"The function {endpoint.name} could not be reached ({type(error).__name__})."
        ) from error
    finally:
        http.clear()
    text = body[:max_bytes].decode("utf-8", "replace")
    if len(body) > max_bytes:
        text += f"\n[output truncated at {max_bytes} bytes]"
    if response.status >= 400:
        raise FunctionError(f"The function {endpoint.name} answered HTTP {response.status}: {text[:500]}")
    return text
