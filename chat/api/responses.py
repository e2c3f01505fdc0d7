"""The Responses API (`/v1/responses`): the request read into the services' terms, the reply written back as
a response object, or as the spec's stream of events.

Output items follow gpt-oss's guide: the raw reasoning is a `reasoning` item whose content is
`[{"type": "reasoning_text", ...}]` (sealed in `encrypted_content` when the request asks, for a client that
stores nothing: chat.api.sealing), the answer a `message`, a call to the client's functions a
`function_call`, and the server's own tools `web_search_call` (gpt-oss's browser) and
`code_interpreter_call` (its python tool).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from chat.api.completions import call_id
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
    text_param,
    tool_choice_param,
)
from chat.api.prompts import PromptBuilder, client_calls
from chat.api.sealing import Unreadable, seal, unseal
from chat.frames import MessagePayload
from chat.models import (
    ApiFunction,
    ApiJsonFormat,
    ApiPrompt,
    ApiSampling,
    ApiToolStep,
    Message,
    ReasoningEffort,
)
from inference.tools.records import ToolCallRecord

# Accepted and left aside: they do not change the answer.
IGNORED = {
    "user",
    "metadata",
    "client_metadata",
    "service_tier",
    "parallel_tool_calls",
    "safety_identifier",
    "prompt_cache_retention",
    "stream_options",
}
# Refused by name when set to anything but their neutral value: each would change the answer.
NEUTRAL: dict[str, Any] = {
    "truncation": "disabled",
    "top_logprobs": 0,
    "prompt": None,
    "conversation": None,
    "max_tool_calls": None,
}
KNOWN = {
    "model",
    "input",
    "instructions",
    "stream",
    "store",
    "background",
    "previous_response_id",
    "reasoning",
    "tools",
    "tool_choice",
    "max_output_tokens",
    "temperature",
    "top_p",
    "text",
    "prompt_cache_key",
    "seed",
    "include",  # read: "reasoning.encrypted_content" seals the reasoning; the rest only adds detail
}
# The server's own tools, by the Responses tool type that asks for them.
BUILTINS = {"web_search": "browser", "web_search_preview": "browser", "code_interpreter": "python"}
SERVER_NAMESPACES = {"functions", "browser", "python", "container"}
STATUS: dict[str, str] = {
    Message.Status.QUEUED: "queued",
    Message.Status.STREAMING: "in_progress",
    Message.Status.DONE: "completed",
    Message.Status.CANCELLED: "cancelled",
    Message.Status.FAILED: "failed",
    Message.Status.INTERRUPTED: "failed",
}


@dataclass(frozen=True)
class ResponsesRequest:
    """A Responses request, checked: what the services queue and how the answer goes back.

    The prompt is built later (`prompt_for`), once the stored response it follows and the server tools the
    user may use are known.
    """

    model: str
    effort: str
    instructions: str
    items: list[Any]
    functions: list[ApiFunction]
    builtins: dict[str, str]  # harmony tool -> the tool type that asked for it
    sampling: ApiSampling
    max_tokens: int | None
    stream: bool
    store: bool
    background: bool
    previous_response_id: str | None
    sealed_reasoning: bool  # include: ["reasoning.encrypted_content"]
    options: dict[str, Any] = field(default_factory=dict)  # what the response object echoes back


def parse(body: bytes, *, default_effort: str = ReasoningEffort.MEDIUM) -> ResponsesRequest:
    """Read a request body; raise ApiError naming the parameter at fault."""
    data = body_object(body)
    refuse_unknown(data, known=KNOWN, ignored=IGNORED, neutral=NEUTRAL, endpoint="Responses")
    model = model_param(data)
    reasoning = object_param(data, "reasoning")
    effort = effort_param(reasoning.get("effort") or default_effort, "reasoning.effort")
    instructions = data.get("instructions") or ""
    if not isinstance(instructions, str):
        raise invalid("instructions", "instructions must be a string.")
    items = data.get("input")
    if isinstance(items, str):
        items = [{"role": "user", "content": items}]
    if not isinstance(items, list):
        raise invalid("input", "input must be a string or a list of items.")
    tool_choice = data.get("tool_choice", "auto")
    functions, builtins = _tools(data.get("tools"))
    functions, call = tool_choice_param(tool_choice, functions)
    if tool_choice == "none":
        builtins = {}
    store = bool_param(data, "store", default=True)
    background = bool_param(data, "background")
    if background and not store:
        raise invalid("background", "A background response must be stored: leave store out or set it true.")
    previous = data.get("previous_response_id")
    if previous is not None and (not isinstance(previous, str) or not previous):
        raise invalid("previous_response_id", "previous_response_id must be a response id.")
    include = data.get("include") or []
    if not isinstance(include, list) or not all(isinstance(i, str) for i in include):
        raise invalid("include", "include must be a list of strings.")
    text_format = _text_format(object_param(data, "text"))
    sampling = ApiSampling(
        temperature=number_param(data, "temperature", 1.0, low=0.0, high=2.0),
        top_p=number_param(data, "top_p", 1.0, low=0.0, high=1.0, low_open=True),
        seed=seed_param(data.get("seed")),
        stop=[],
        json=text_format,
        cache_key=cache_key_param(data.get("prompt_cache_key")),
        call=call,
    )
    max_tokens = max_tokens_param(data, ("max_output_tokens",))
    metadata = data.get("metadata") or {}
    options = {
        "instructions": instructions or None,
        "tools": data.get("tools") or [],
        "tool_choice": tool_choice,
        "text": {"format": data.get("text", {}).get("format") or {"type": "text"}},
        "max_output_tokens": max_tokens,
        "previous_response_id": previous,
        "store": store,
        "background": background,
        "metadata": metadata if isinstance(metadata, dict) else {},
        "sealed_reasoning": "reasoning.encrypted_content" in include,
    }
    return ResponsesRequest(
        model=model,
        effort=effort,
        instructions=instructions,
        items=items,
        functions=functions,
        builtins=builtins,
        sampling=sampling,
        max_tokens=max_tokens,
        stream=bool_param(data, "stream"),
        store=store,
        background=background,
        previous_response_id=previous,
        sealed_reasoning="reasoning.encrypted_content" in include,
        options=options,
    )


def _text_format(text: dict[str, Any]) -> ApiJsonFormat | None:
    if text.get("verbosity") not in (None, "medium"):
        raise unsupported("text.verbosity")
    spec = text.get("format")
    if spec is None:
        return None
    if not isinstance(spec, dict) or spec.get("type") not in ("text", "json_object", "json_schema"):
        raise invalid("text.format", "text.format.type must be text, json_object or json_schema.")
    if spec["type"] == "text":
        return None
    if spec["type"] == "json_object":
        return ApiJsonFormat(name="", schema=None)
    return json_schema_format(spec, "text.format")


def _tools(tools: object) -> tuple[list[ApiFunction], dict[str, str]]:
    """Return the client's functions (a `namespace` tool's in their own harmony namespace) and the server
    tools asked for."""
    if tools is None:
        return [], {}
    if not isinstance(tools, list):
        raise invalid("tools", "tools must be a list.")
    functions: list[ApiFunction] = []
    builtins: dict[str, str] = {}
    for i, tool in enumerate(tools):
        param = f"tools[{i}]"
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind == "function":
            functions.append(function_param(tool, param))
        elif kind == "namespace":
            name = tool.get("name")
            if not isinstance(name, str) or not name.isidentifier() or name in SERVER_NAMESPACES:
                raise invalid(
                    f"{param}.name",
                    "A namespace needs a name of letters, digits and underscores "
                    f"other than {', '.join(sorted(SERVER_NAMESPACES))}.",
                )
            members = tool.get("tools")
            if not isinstance(members, list):
                raise invalid(f"{param}.tools", "A namespace's tools must be a list of functions.")
            for j, member in enumerate(members):
                if not isinstance(member, dict) or member.get("type", "function") != "function":
                    raise unsupported(f"{param}.tools[{j}].type", "a namespace holds only functions")
                function = function_param(member, f"{param}.tools[{j}]", namespace=name)
                description = tool.get("description")
                if isinstance(description, str) and description:
                    function["namespace_description"] = description
                functions.append(function)
        elif kind in BUILTINS:
            builtins[BUILTINS[kind]] = kind
        else:
            raise unsupported(
                f"{param}.type",
                f"tools of type {kind!r} are not available on this server; "
                "use function, namespace, web_search or code_interpreter",
            )
    return functions, builtins


# --- The prompt --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Previous:
    """The stored response a request follows: its prompt and what its reply wrote."""

    prompt: ApiPrompt
    reply: MessagePayload


def prompt_for(
    request: ResponsesRequest, *, previous: Previous | None, builtins: list[str], user_id: int
) -> ApiPrompt:
    """Return the harmony prompt of *request*'s reply: the chain of *previous* (its instructions not carried
    over, as the spec says), then the request's input items."""
    if previous is None:
        builder = PromptBuilder("input")
    else:
        reply = previous.reply
        calls = [(call_id(reply["id"], index), step) for index, step in client_calls(reply["tool_calls"])]
        builder = PromptBuilder.continuing(
            "input", previous.prompt, reasoning=reply["reasoning"], answer=reply["content"], calls=calls
        )
    for i, item in enumerate(request.items):
        _fold(builder, item, f"input[{i}]", user_id)
    return builder.build(instructions=request.instructions, functions=request.functions, builtins=builtins)


def _fold(builder: PromptBuilder, item: object, param: str, user_id: int) -> None:
    if not isinstance(item, dict):
        raise invalid(param, "Each input item must be an object.")
    kind = item.get("type", "message")
    if kind == "message":
        role = item.get("role")
        text = text_param(
            item.get("content"), f"{param}.content", kinds=("input_text", "output_text", "text")
        )
        if role in ("system", "developer"):
            builder.instruct(text)
        elif role == "user":
            builder.ask(text, param)
        elif role == "assistant":
            builder.answer(text)
        else:
            raise invalid(f"{param}.role", "role must be user, assistant, system or developer.")
    elif kind == "reasoning":
        sealed = item.get("encrypted_content")
        if isinstance(sealed, str) and sealed:
            try:
                builder.reason(unseal(sealed, user_id=user_id))
            except Unreadable as why:
                raise invalid(f"{param}.encrypted_content", f"The reasoning cannot be read: {why}.") from None
        else:
            parts = item.get("content") or []
            builder.reason(text_param(parts, f"{param}.content", kinds=("reasoning_text",)))
    elif kind == "function_call":
        name, arguments = item.get("name"), item.get("arguments", "")
        if not isinstance(name, str) or not isinstance(arguments, str):
            raise invalid(param, "A function_call item needs a name and its arguments as a string.")
        namespace = item.get("namespace") or "functions"
        builder.call(
            str(item.get("call_id") or item.get("id") or param), name, arguments, namespace=namespace
        )
    elif kind == "function_call_output":
        output = item.get("output", "")
        text = (
            output
            if isinstance(output, str)
            else text_param(output, f"{param}.output", kinds=("input_text", "output_text", "text"))
        )
        builder.output(item.get("call_id"), text, f"{param}.call_id")
    elif kind in ("web_search_call", "code_interpreter_call"):
        pass  # the server's own tool calls, run on an earlier request: the answer after them carries on
    else:
        raise unsupported(f"{param}.type", f"input items of type {kind!r} are not supported")


# --- The response, in OpenAI's words -----------------------------------------------------------------------


def usage(message: MessagePayload) -> dict[str, Any]:
    stats = message["stats"]
    output = stats["reasoning_tokens"] + stats["answer_tokens"]
    return {
        "input_tokens": stats["prompt_tokens"],
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": stats["reasoning_tokens"]},
        "total_tokens": stats["prompt_tokens"] + output,
    }


def reasoning_item(item_id: str, text: str, *, sealed_for: int | None) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": item_id,
        "type": "reasoning",
        "summary": [],
        "content": [{"type": "reasoning_text", "text": text}],
        "status": "completed",
    }
    if sealed_for is not None:
        item["encrypted_content"] = seal(text, user_id=sealed_for)
    return item


def message_item(item_id: str, text: str, status: str = "completed") -> dict[str, Any]:
    return {
        "id": item_id,
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}],
    }


def function_call_item(reply_id: int, index: int, step: ApiToolStep) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": f"fc_{reply_id}_{index}",
        "type": "function_call",
        "call_id": call_id(reply_id, index),
        "name": step["name"],
        "arguments": step["arguments"],
        "status": "completed",
    }
    if "namespace" in step:
        item["namespace"] = step["namespace"]
    return item


def server_tool_item(reply_id: int, index: int, call: ToolCallRecord) -> dict[str, Any]:
    """Return a call of the server's own tools as the spec's item: `web_search_call` (the browser) or
    `code_interpreter_call` (python)."""
    status = "in_progress" if "result" not in call else ("failed" if call.get("error") else "completed")
    if call["recipient"] == "python":
        outputs = [{"type": "logs", "logs": call["result"]}] if "result" in call else []
        return {
            "id": f"ci_{reply_id}_{index}",
            "type": "code_interpreter_call",
            "status": status,
            "code": call["arguments"],
            "container_id": "server",
            "outputs": outputs,
        }
    try:
        arguments = json.loads(call["arguments"] or "{}")
    except ValueError:
        arguments = {}
    command = call["recipient"].removeprefix("browser.")
    action: dict[str, Any] = {"type": "search" if command == "search" else "open_page"}
    if command == "search":
        action["query"] = arguments.get("query", "") if isinstance(arguments, dict) else ""
    if call.get("sources"):
        action["sources"] = [{"type": "url", "url": s.get("url", "")} for s in call.get("sources", [])]
    return {"id": f"ws_{reply_id}_{index}", "type": "web_search_call", "status": status, "action": action}


def is_server_tool(recipient: str) -> bool:
    return recipient == "python" or recipient.startswith("browser.")


def output_items(message: MessagePayload, *, sealed_for: int | None) -> list[dict[str, Any]]:
    """Return a reply's output items: its reasoning, its server tool calls, its answer, its function calls."""
    reply_id = message["id"]
    items: list[dict[str, Any]] = []
    if message["reasoning"]:
        items.append(reasoning_item(f"rs_{reply_id}", message["reasoning"], sealed_for=sealed_for))
    items.extend(
        server_tool_item(reply_id, index, call)
        for index, call in enumerate(message["tool_calls"])
        if is_server_tool(call["recipient"])
    )
    if message["content"]:
        items.append(message_item(f"msg_{reply_id}", message["content"]))
    items.extend(
        function_call_item(reply_id, index, step) for index, step in client_calls(message["tool_calls"])
    )
    return items


def response_object(
    response_id: str,
    *,
    model: str,
    effort: str,
    sampling: ApiSampling,
    options: dict[str, Any],
    created_at: float,
    message: MessagePayload | None,
    finish_reason: str = "",
    sealed_for: int | None = None,
) -> dict[str, Any]:
    """Return the response object, as it stands: *message* is its reply (None before it exists)."""
    response = {
        "id": response_id,
        "object": "response",
        "created_at": int(created_at),
        "status": "queued",
        "background": options.get("background", False),
        "error": None,
        "incomplete_details": None,
        "instructions": options.get("instructions"),
        "max_output_tokens": options.get("max_output_tokens"),
        "metadata": options.get("metadata", {}),
        "model": model,
        "output": [],
        "parallel_tool_calls": True,
        "previous_response_id": options.get("previous_response_id"),
        "reasoning": {"effort": effort, "summary": None},
        "store": options.get("store", True),
        "temperature": sampling["temperature"],
        "text": options.get("text", {"format": {"type": "text"}}),
        "tool_choice": options.get("tool_choice", "auto"),
        "tools": options.get("tools", []),
        "top_p": sampling["top_p"],
        "truncation": "disabled",
        "usage": None,
        "user": None,
    }
    if message is None:
        return response
    return response_object_update(
        response, message, finish_reason, output_items(message, sealed_for=sealed_for)
    )


class EventWriter:
    """Writes a reply's stream events as the spec's server-sent events, in order, each with its
    `sequence_number`: output items open and close as the reply moves from reasoning to answer to tools."""

    def __init__(self, response: dict[str, Any], reply_id: int, *, sealed_for: int | None) -> None:
        self.response = response
        self.reply_id = reply_id
        self.sealed_for = sealed_for
        self.sequence = 0
        self.items: list[dict[str, Any]] = []
        self.open: dict[str, Any] | None = None  # the item receiving deltas (reasoning or message)
        self.texts: list[str] = []  # the open item's text so far
        self.tools: dict[int, int] = {}  # server tool call index -> its output index
        self.answer = ""

    def event(self, kind: str, **fields: Any) -> bytes:
        data = {"type": kind, "sequence_number": self.sequence, **fields}
        self.sequence += 1
        return f"event: {kind}\ndata: {json.dumps(data)}\n\n".encode()

    def begin(self) -> list[bytes]:
        return [
            self.event("response.created", response=self.response),
            self.event("response.in_progress", response={**self.response, "status": "in_progress"}),
        ]

    def _add(self, item: dict[str, Any]) -> bytes:
        self.items.append(item)
        return self.event("response.output_item.added", output_index=len(self.items) - 1, item=item)

    def _ids(self) -> dict[str, Any]:
        assert self.open is not None
        return {"item_id": self.open["id"], "output_index": len(self.items) - 1, "content_index": 0}

    def close(self) -> list[bytes]:
        """End the open item (its `.done` events)."""
        if self.open is None:
            return []
        item, text, ids = self.open, "".join(self.texts), self._ids()
        self.open, self.texts = None, []
        if item["type"] == "reasoning":
            done = reasoning_item(item["id"], text, sealed_for=self.sealed_for)
            events = [
                self.event("response.reasoning_text.done", **ids, text=text),
                self.event("response.content_part.done", **ids, part=done["content"][0]),
            ]
        else:
            done = message_item(item["id"], text)
            part = done["content"][0]
            events = [
                self.event("response.output_text.done", **ids, text=text, logprobs=[]),
                self.event("response.content_part.done", **ids, part=part),
            ]
        self.items[-1] = done
        return [*events, self.event("response.output_item.done", output_index=len(self.items) - 1, item=done)]

    def _opened(self, kind: str) -> list[bytes]:
        if self.open is not None and self.open["type"] == kind:
            return []
        events = self.close()
        n = len(self.items)
        if kind == "reasoning":
            self.open = {
                "id": f"rs_{self.reply_id}_{n}",
                "type": "reasoning",
                "summary": [],
                "content": [],
                "status": "in_progress",
            }
            part: dict[str, Any] = {"type": "reasoning_text", "text": ""}
        else:
            self.open = {**message_item(f"msg_{self.reply_id}_{n}", "", "in_progress"), "content": []}
            part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        events.append(self._add(self.open))
        events.append(self.event("response.content_part.added", **self._ids(), part=part))
        return events

    def reasoning(self, text: str) -> list[bytes]:
        events = self._opened("reasoning")
        self.texts.append(text)
        return [*events, self.event("response.reasoning_text.delta", **self._ids(), delta=text)]

    def text(self, text: str) -> list[bytes]:
        events = self._opened("message")
        self.texts.append(text)
        self.answer += text
        return [*events, self.event("response.output_text.delta", **self._ids(), delta=text, logprobs=[])]

    def tool(self, index: int, call: ToolCallRecord) -> list[bytes]:
        """A call of the server's own tools started (an item opens) or returned (it is done)."""
        if not is_server_tool(call["recipient"]):
            return []  # the client's function calls are written whole at the end
        item = server_tool_item(self.reply_id, index, call)
        prefix = (
            "response.web_search_call"
            if item["type"] == "web_search_call"
            else "response.code_interpreter_call"
        )
        if index not in self.tools:
            events = self.close()
            events.append(self._add(item))
            self.tools[index] = len(self.items) - 1
            events.append(
                self.event(f"{prefix}.in_progress", output_index=self.tools[index], item_id=item["id"])
            )
            if "result" not in call:
                return events
        else:
            events = []
        position = self.tools[index]
        self.items[position] = item
        return [
            *events,
            self.event(f"{prefix}.completed", output_index=position, item_id=item["id"]),
            self.event("response.output_item.done", output_index=position, item=item),
        ]

    def finish(self, message: MessagePayload, finish_reason: str) -> list[bytes]:
        """Write what the stored reply holds beyond what was streamed, its function calls, and its end."""
        events: list[bytes] = []
        if message["content"].startswith(self.answer) and len(message["content"]) > len(self.answer):
            events += self.text(message["content"][len(self.answer) :])  # an event lost on the way
        events += self.close()
        for index, step in client_calls(message["tool_calls"]):
            item = function_call_item(self.reply_id, index, step)
            events.append(self._add({**item, "arguments": "", "status": "in_progress"}))
            position = len(self.items) - 1
            self.items[position] = item
            events.append(
                self.event(
                    "response.function_call_arguments.delta",
                    output_index=position,
                    item_id=item["id"],
                    delta=item["arguments"],
                )
            )
            events.append(
                self.event(
                    "response.function_call_arguments.done",
                    output_index=position,
                    item_id=item["id"],
                    name=item["name"],
                    arguments=item["arguments"],
                )
            )
            events.append(self.event("response.output_item.done", output_index=position, item=item))
        final = response_object_update(self.response, message, finish_reason, self.items)
        kind = {
            "completed": "response.completed",
            "incomplete": "response.incomplete",
            "cancelled": "response.failed",
        }.get(final["status"], "response.failed")
        return [*events, self.event(kind, response=final)]


def response_object_update(
    response: dict[str, Any], message: MessagePayload, finish_reason: str, output: list[dict[str, Any]]
) -> dict[str, Any]:
    """Return *response* as it stands with its reply *message*, its items *output* (usage once it ended)."""
    status = STATUS[message["status"]]
    final = {**response, "status": status, "output": output}
    if status in ("queued", "in_progress"):
        return final
    final["usage"] = usage(message)
    if status == "completed" and finish_reason == "length":
        final["status"], final["incomplete_details"] = "incomplete", {"reason": "max_output_tokens"}
    if status == "failed":
        final["error"] = {"code": "server_error", "message": message["error"] or "The reply failed."}
    if status == "cancelled":
        final["error"] = {"code": "cancelled", "message": "The response was cancelled before it finished."}
    return final
