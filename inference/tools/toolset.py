"""The model's tools: which ones a conversation declares, and running a call to one of them.

Public API: :class:`Toolset`, :func:`toolset_for`, :func:`tool_run`, :class:`ToolResult`. A call runs
in the calling thread (the reply's Celery task thread, never the engine's), so other streams keep
decoding while a tool works. Nothing here raises on a bad call: unknown or disabled tools, invalid
arguments, timeouts and unreachable services all come back as an error result the model can read.

The tool runners (python, browser, net, functions) are plain Python; the admin's settings and functions are
read through inference/tools/selectors.py.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.cache import cache
from django.utils import timezone

from inference.runtime.harmony import FunctionSpec, ToolCall
from inference.tools import browser
from inference.tools.functions import FunctionError, function_call
from inference.tools.python import SandboxLimits, SandboxUnavailable, python_run
from inference.tools.records import ToolCallRecord, ToolSource
from inference.tools.selectors import browser_config, function_endpoint, tools_available

if TYPE_CHECKING:
    from chat.models import Conversation

logger = logging.getLogger(__name__)

BROWSER_ACTIONS = ("search", "open", "find")


@dataclass(frozen=True)
class Toolset:
    """What is declared to the model for one conversation (and so what it may call)."""

    browser: bool = False
    python: bool = False
    functions: tuple[FunctionSpec, ...] = ()

    def allows(self, recipient: str) -> bool:
        if recipient == "python":
            return self.python
        if recipient.startswith("browser."):
            return self.browser and recipient.removeprefix("browser.") in BROWSER_ACTIONS
        if recipient.startswith("functions."):
            return any(f.name == recipient.removeprefix("functions.") for f in self.functions)
        return False


@dataclass(frozen=True)
class ToolResult:
    """What a call produced: *text* goes back to the model; *record* is stored with the message."""

    text: str
    error: bool
    record: ToolCallRecord


@dataclass(frozen=True)
class _Output:
    """What one tool runner returns: its text for the model, whether it is an error, the pages it showed."""

    text: str
    error: bool = False
    sources: list[ToolSource] = field(default_factory=list)


def toolset_for(conversation: Conversation) -> Toolset:
    """Return the tools to declare: switched on here ∩ allowed for the owner's groups ∩ configured."""
    available = tools_available(user=conversation.owner)
    enabled = set(conversation.enabled_tools)
    return Toolset(
        browser="browser" in enabled and available.browser,
        python="python" in enabled and available.python,
        functions=tuple(
            FunctionSpec(name=f.name, description=f.description, parameters=f.parameters)
            for f in available.functions
            if f"functions.{f.name}" in enabled
        ),
    )


def _cap(text: str) -> str:
    limit: int = settings.GPTOSS_TOOL_OUTPUT_CHARS
    if len(text) <= limit:
        return text
    return text[:limit] + f"\n[output truncated: more than {limit} characters]"


def tool_run(*, call: ToolCall, toolset: Toolset, conversation_id: int) -> ToolResult:
    """Run *call* if *toolset* declares its tool and return the result; never raise."""
    started = timezone.now()
    try:
        if not toolset.allows(call.recipient):
            logger.info("conversation %s called %s, which is not available", conversation_id, call.recipient)
            unavailable = f"Error: the tool {call.recipient!r} is not available in this conversation."
            output = _Output(unavailable, True)
        elif call.recipient == "python":
            output = _python(call.arguments)
        elif call.recipient.startswith("browser."):
            output = _browser(call.recipient.removeprefix("browser."), call.arguments, conversation_id)
        else:
            output = _function(call.recipient.removeprefix("functions."), call.arguments)
    except Exception as unexpected:  # a tool must never take the reply down with it
        logger.exception("conversation %s: the tool %s failed", conversation_id, call.recipient)
        output = _Output(f"Error: the tool failed unexpectedly ({type(unexpected).__name__}).", True)
    text, error = _cap(output.text), output.error
    record = ToolCallRecord(
        recipient=call.recipient,
        channel=call.channel,
        arguments=call.arguments,
        result=text,
        error=error,
        started_at=started.isoformat(),
        finished_at=timezone.now().isoformat(),
    )
    if output.sources:
        record["sources"] = output.sources
    return ToolResult(text=text, error=error, record=record)


def python_limits() -> SandboxLimits:
    """Return the limits of one Python run, from the GPTOSS_PYTHON_* settings."""
    return SandboxLimits(
        wall_seconds=settings.GPTOSS_PYTHON_TIMEOUT_S,
        cpu_seconds=max(1, int(settings.GPTOSS_PYTHON_TIMEOUT_S)),
        memory_bytes=settings.GPTOSS_PYTHON_MEMORY_MB * 1024 * 1024,
        processes=settings.GPTOSS_PYTHON_PROCESSES,
        # Room for the truncation marker within the output cap of every tool.
        output_bytes=max(50, settings.GPTOSS_TOOL_OUTPUT_CHARS - 100),
        tmpfs_bytes=settings.GPTOSS_PYTHON_DISK_MB * 1024 * 1024,
        file_bytes=settings.GPTOSS_PYTHON_DISK_MB * 1024 * 1024,
    )


def _python(code: str) -> _Output:
    limits = python_limits()
    try:
        run = python_run(code, limits=limits)
    except SandboxUnavailable as error:
        logger.error("python tool: %s", error)
        return _Output(f"Error: {error}", True)
    text = run.output
    if run.timed_out:
        text += f"\n[timed out after {limits.wall_seconds:g} seconds: the run was stopped]"
    elif run.truncated:
        return _Output(text, False)  # stopped by us once the output cap was reached; the output is what it is
    elif run.exit_code is not None and run.exit_code < 0:
        text += f"\n[the run was killed by signal {-run.exit_code} (a resource limit)]"
    return _Output(text or "[no output]", run.timed_out or run.exit_code != 0)


def _browser(action: str, arguments: str, conversation_id: int) -> _Output:
    try:
        args = json.loads(arguments) if arguments.strip() else {}
    except ValueError as error:
        return _Output(f"Error: the arguments are not valid JSON ({error}).", True)
    if not isinstance(args, dict):
        return _Output("Error: the arguments must be a JSON object.", True)
    key = f"tools:browser:{conversation_id}"
    session = browser.Session.from_json(cache.get(key))
    try:
        output = browser.ACTIONS[action](session, args, browser_config())
    except browser.BrowserError as error:
        return _Output(f"Error: {error}", True)
    cache.set(key, session.to_json(), timeout=24 * 3600)
    return _Output(output.text, False, output.sources)


def _function(name: str, arguments: str) -> _Output:
    endpoint = function_endpoint(name=name)
    if endpoint is None:
        return _Output(f"Error: the function {name!r} no longer exists.", True)
    try:
        return _Output(function_call(endpoint, arguments, max_bytes=settings.GPTOSS_TOOL_OUTPUT_CHARS), False)
    except FunctionError as error:
        logger.info("function %s failed: %s", name, error)
        return _Output(f"Error: {error}", True)
