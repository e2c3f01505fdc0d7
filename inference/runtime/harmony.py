"""Render conversations into harmony prompt tokens and parse the model's reply tokens into events.

gpt-oss only works with the harmony format. Prompts leave this module as token ids, never as
strings: harmony encodes user, tool and page text as ordinary text, so nobody can inject control
tokens such as ``<|start|>`` by typing them.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace
from functools import cache
from itertools import accumulate
from typing import Any

from openai_harmony import (
    Author,
    Conversation,
    DeveloperContent,
    HarmonyEncoding,
    HarmonyEncodingName,
    HarmonyError,
    Message,
    ReasoningEffort,
    RenderConversationConfig,
    RenderOptions,
    Role,
    StreamableParser,
    SystemContent,
    ToolDescription,
    ToolNamespaceConfig,
    load_harmony_encoding,
)

from inference.runtime.tokens import CALL, END, MESSAGE, RETURN

logger = logging.getLogger(__name__)

STOP_TOKENS = frozenset({RETURN, CALL})
"""Stop generating at these: ``<|return|>`` ends the answer, ``<|call|>`` hands over to a tool.

``<|end|>`` is deliberately absent: the model writes it between its own messages.
"""

PYTHON_TOOL_DESCRIPTION = (
    "Use this tool to execute Python code in your chain of thought. The code will not be shown to the "
    "user. This tool should be used for internal reasoning, but not for code that is intended to be "
    "visible to the user (e.g. when creating plots, tables, or files).\n\n"
    "When you send a message containing Python code to python, it is run as a fresh script with python3 "
    "and the standard library only: nothing is kept between calls, there is no network access, and files "
    "can be written only under the working directory, which is discarded afterwards. python will respond "
    "with what the script printed (stdout and stderr) or time out after {timeout} seconds."
)
"""Declared instead of harmony's default, which promises a stateful notebook and a persistent drive."""

_MESSAGE_END_TOKENS = frozenset({END, RETURN, CALL})
# A message header (role, channel, recipient, content type) takes a dozen tokens; a function name at most
# 64 characters. A model that has gone off the rails can write tokens that never reach <|message|>:
# openai-harmony then keeps reading a "header" to the end of the answer's budget, and the user sees nothing
# for minutes.
MAX_HEADER_TOKENS = 128

_EFFORTS: dict[str, ReasoningEffort] = {
    "low": ReasoningEffort.LOW,
    "medium": ReasoningEffort.MEDIUM,
    "high": ReasoningEffort.HIGH,
}

# History is built by hand (finished turns keep only user + final), so harmony must not drop
# anything on its own: its auto_drop_analysis would also be wrong for more than one turn.
_RENDER_CONFIG = RenderConversationConfig(auto_drop_analysis=False)


class HarmonyUnavailable(RuntimeError):
    """openai-harmony cannot load its vocabulary, so no prompt can be rendered or parsed."""


class PromptTooLong(Exception):
    """The prompt does not fit the context window even with all earlier turns dropped."""

    def __init__(self, *, prompt_tokens: int, reserve: int, n_ctx: int) -> None:
        self.prompt_tokens = prompt_tokens
        self.reserve = reserve
        self.n_ctx = n_ctx
        super().__init__(
            f"This message is too long for the model's context window: without any earlier turns the "
            f"prompt takes {prompt_tokens} tokens and the reply needs {reserve} more, but the context "
            f"holds {n_ctx} tokens. Shorten the message, the instructions or the tool results."
        )


@cache
def _load_encoding() -> HarmonyEncoding:
    try:
        encoding = load_harmony_encoding(HarmonyEncodingName.HARMONY_GPT_OSS)
    except HarmonyError as exc:
        raise HarmonyUnavailable(
            "openai-harmony could not load the o200k_base vocabulary "
            f"({exc}). Call inference.runtime.vocab.configure_vocab(model_path, cache_dir) before using "
            "the harmony layer: it derives the vocabulary from the gpt-oss model file and sets "
            "TIKTOKEN_ENCODINGS_BASE."
        ) from exc
    stops = frozenset(encoding.stop_tokens_for_assistant_actions())
    if stops != STOP_TOKENS:
        raise HarmonyUnavailable(
            f"openai-harmony reports stop tokens {sorted(stops)}, not {sorted(STOP_TOKENS)}; "
            "this module was written for openai-harmony 0.0.8."
        )
    return encoding


def get_encoding() -> HarmonyEncoding:
    """Return the gpt-oss harmony encoding, loaded once per process.

    A failed load is not cached, so a caller can configure the vocabulary and try again.
    """
    return _load_encoding()


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FunctionSpec:
    """A developer-defined function the model may call as ``NAMESPACE.NAME`` (``functions.NAME`` unless an
    API client groups its functions in a namespace of their own)."""

    name: str
    description: str
    parameters: dict[str, Any]
    namespace: str = "functions"
    namespace_description: str | None = None


@dataclass(frozen=True)
class Turn:
    """A finished turn: what the user asked and the final answer they got."""

    user: str
    final: str


@dataclass(frozen=True)
class ToolStep:
    """One tool call of the turn in progress, with what led to it and what came back.

    *analysis* is the reasoning the model wrote before the call (may be empty); it must go back
    into the prompt while the turn is unfinished. *result_author* defaults to *recipient*, which
    is what the gpt-oss reference tools use (``functions.NAME``, ``python``, ``browser.search``).
    """

    channel: str
    recipient: str
    content_type: str | None
    arguments: str
    analysis: str
    result: str
    result_author: str | None = None


@dataclass(frozen=True)
class PromptSpec:
    """Everything a prompt is rendered from: settings, earlier turns and the turn in progress."""

    effort: str
    date: str
    browser: bool
    python: bool
    instructions: str
    functions: list[FunctionSpec]
    history: list[Turn]
    user: str
    tool_steps: list[ToolStep] = field(default_factory=list)
    python_timeout_s: int = 10


@dataclass(frozen=True)
class FittedPrompt:
    """Prompt tokens that fit the context window, and how many of the oldest turns were left out."""

    tokens: list[int]
    dropped_turns: int


def _system_message(spec: PromptSpec) -> Message:
    try:
        effort = _EFFORTS[spec.effort]
    except KeyError:
        choices = ", ".join(_EFFORTS)
        raise ValueError(f"Unknown reasoning effort {spec.effort!r}; use one of {choices}.") from None
    content = SystemContent.new().with_reasoning_effort(effort).with_conversation_start_date(spec.date)
    if spec.browser:
        content = content.with_browser_tool()
    if spec.python:
        description = PYTHON_TOOL_DESCRIPTION.format(timeout=spec.python_timeout_s)
        content = content.with_tools(ToolNamespaceConfig(name="python", description=description, tools=[]))
    return Message.from_role_and_content(Role.SYSTEM, content)


def _developer_message(spec: PromptSpec) -> Message | None:
    if not spec.instructions and not spec.functions:
        return None
    content = DeveloperContent.new()
    if spec.instructions:
        content = content.with_instructions(spec.instructions)
    namespaces: dict[str, list[FunctionSpec]] = {}
    for function in spec.functions:
        namespaces.setdefault(function.namespace, []).append(function)
    for namespace, functions in namespaces.items():
        tools = [ToolDescription.new(f.name, f.description, parameters=f.parameters) for f in functions]
        description = next((f.namespace_description for f in functions if f.namespace_description), None)
        content = content.with_tools(
            ToolNamespaceConfig(name=namespace, description=description, tools=tools)
        )
    return Message.from_role_and_content(Role.DEVELOPER, content)


def _turn_messages(turn: Turn) -> list[Message]:
    return [
        Message.from_role_and_content(Role.USER, turn.user),
        Message.from_role_and_content(Role.ASSISTANT, turn.final).with_channel("final"),
    ]


def _tool_step_messages(step: ToolStep) -> list[Message]:
    messages: list[Message] = []
    if step.analysis:
        messages.append(Message.from_role_and_content(Role.ASSISTANT, step.analysis).with_channel("analysis"))
    call = (
        Message.from_role_and_content(Role.ASSISTANT, step.arguments)
        .with_channel(step.channel)
        .with_recipient(step.recipient)
    )
    if step.content_type:
        call = call.with_content_type(step.content_type)
    messages.append(call)
    author = Author.new(Role.TOOL, step.result_author or step.recipient)
    result = Message.from_author_and_content(author, step.result)
    messages.append(result.with_recipient("assistant").with_channel(step.channel))
    return messages


def _messages(spec: PromptSpec) -> list[Message]:
    messages = [_system_message(spec)]
    developer = _developer_message(spec)
    if developer is not None:
        messages.append(developer)
    for turn in spec.history:
        messages.extend(_turn_messages(turn))
    messages.append(Message.from_role_and_content(Role.USER, spec.user))
    for step in spec.tool_steps:
        messages.extend(_tool_step_messages(step))
    return messages


def render_prompt(spec: PromptSpec) -> list[int]:
    """Return the prompt token ids for the assistant's next message, ending in ``<|start|>assistant``.

    Finished turns contribute only the user message and the final answer: gpt-oss expects earlier
    reasoning to be gone. The unfinished turn keeps its analysis, calls and results, which the
    model needs to carry on after a tool call.
    """
    conversation = Conversation.from_messages(_messages(spec))
    tokens: list[int] = get_encoding().render_conversation_for_completion(
        conversation, Role.ASSISTANT, _RENDER_CONFIG
    )
    return tokens


def _turn_token_counts(spec: PromptSpec) -> list[int]:
    encoding = get_encoding()
    options = RenderOptions(conversation_has_function_tools=bool(spec.functions))
    return [sum(len(encoding.render(m, options)) for m in _turn_messages(turn)) for turn in spec.history]


def fit_prompt(spec: PromptSpec, *, n_ctx: int, reserve: int) -> FittedPrompt:
    """Render *spec*, leaving out the oldest finished turns until *reserve* tokens remain for the reply.

    Each turn is measured once and the number to drop is read off the running totals, so a long
    conversation costs two or three renders, not one per dropped turn.
    """
    budget = n_ctx - reserve
    tokens = render_prompt(spec)
    if len(tokens) <= budget:
        return FittedPrompt(tokens=tokens, dropped_turns=0)

    bare = render_prompt(replace(spec, history=[]))
    if len(bare) > budget:
        raise PromptTooLong(prompt_tokens=len(bare), reserve=reserve, n_ctx=n_ctx)

    counts = _turn_token_counts(spec)
    # kept_after[k] = tokens of the turns left when the k oldest are dropped.
    kept_after = list(accumulate(reversed(counts), initial=0))[::-1]
    dropped = next(k for k, kept in enumerate(kept_after) if len(bare) + kept <= budget)
    tokens = render_prompt(replace(spec, history=spec.history[dropped:]))
    while len(tokens) > budget:
        # Only reached if rendering messages one by one ever disagrees with rendering them together;
        # it ends at the latest with no history left, which fits (checked above).
        dropped += 1
        tokens = render_prompt(replace(spec, history=spec.history[dropped:]))
    logger.info("Dropped %d of %d earlier turns to fit a %d-token context", dropped, len(spec.history), n_ctx)
    return FittedPrompt(tokens=tokens, dropped_turns=dropped)


# --------------------------------------------------------------------------------------------
# Parsing
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReasoningDelta:
    """New chain-of-thought text (analysis channel); show it only in a collapsed Reasoning view."""

    text: str


@dataclass(frozen=True)
class FinalDelta:
    """New text of the answer (final channel)."""

    text: str


@dataclass(frozen=True)
class CommentaryDelta:
    """New text of a user-visible preamble (commentary channel, addressed to nobody)."""

    text: str


@dataclass(frozen=True)
class ToolCall:
    """A complete message addressed to a tool: stop generating, run it, and render the result back."""

    recipient: str
    channel: str
    content_type: str | None
    arguments: str


@dataclass(frozen=True)
class ParseError:
    """The model wrote something that is not harmony; nothing after it can be understood."""

    message: str


Event = ReasoningDelta | FinalDelta | CommentaryDelta | ToolCall | ParseError


@dataclass(frozen=True)
class Done:
    """How a reply ended, with token counts per channel (header tokens are not counted)."""

    stop_reason: str
    reasoning_tokens: int
    final_tokens: int
    commentary_tokens: int
    tool_call: ToolCall | None
    error: str | None = None


class ReplyParser:
    """Turn the model's reply, one token at a time, into typed events.

    One parser per generation. Text written to a tool (a message with a recipient) never comes out
    as a delta: it arrives whole in the ToolCall once the message is complete, at ``<|call|>``.

    The parser never raises on odd model output. The first token openai-harmony rejects (text
    after ``<|end|>`` without ``<|start|>``, an unknown role, ...), or a header that runs past
    MAX_HEADER_TOKENS without reaching ``<|message|>``, yields one ParseError event;
    later tokens are ignored and finish() reports stop_reason ``"error"`` with the same message.
    The caller should stop generating when it sees a ParseError or a ToolCall. Text already
    emitted stays as it was, which is also what happens to a reply cut off by cancel or the token
    limit. Text in a message with no channel or an unknown one counts as reasoning: what cannot be
    placed must not leak into the answer.
    """

    def __init__(self, encoding: HarmonyEncoding | None = None) -> None:
        self._parser = StreamableParser(encoding or get_encoding(), role=Role.ASSISTANT)
        self._in_content = False
        self._header_tokens = 0
        self._messages_seen = 0
        self._tool_call: ToolCall | None = None
        self._error: str | None = None
        self._analysis: list[str] = []
        self._final: list[str] = []
        self._commentary: list[str] = []
        self._reasoning_tokens = 0
        self._final_tokens = 0
        self._commentary_tokens = 0

    @property
    def analysis_text(self) -> str:
        """Return all reasoning text so far, as the ReasoningDelta events spelled it."""
        return "".join(self._analysis)

    @property
    def final_text(self) -> str:
        """Return the answer text so far, as the FinalDelta events spelled it."""
        return "".join(self._final)

    @property
    def commentary_text(self) -> str:
        """Return the user-visible preamble text so far."""
        return "".join(self._commentary)

    @property
    def tool_call(self) -> ToolCall | None:
        """Return the first completed tool call, if any."""
        return self._tool_call

    def feed(self, token: int) -> list[Event]:
        """Process one generated token and return what it revealed."""
        if self._error is not None:
            return []
        try:
            self._parser.process(token)
        except HarmonyError as exc:
            self._error = f"The model's reply broke the harmony format: {exc}"
            logger.warning("Stopped parsing a reply at token %d: %s", token, exc)
            return [ParseError(self._error)]

        if token == MESSAGE:
            self._in_content, self._header_tokens = True, 0
            return []
        if token in _MESSAGE_END_TOKENS:
            self._in_content = False
            return self._completed_tool_calls()
        if not self._in_content:
            self._header_tokens += 1
            if self._header_tokens > MAX_HEADER_TOKENS:
                self._error = (
                    f"The model's reply broke the harmony format: no message began within "
                    f"{MAX_HEADER_TOKENS} tokens"
                )
                logger.warning("Stopped parsing a reply: %d tokens without a message", self._header_tokens)
                return [ParseError(self._error)]
            return []

        channel = self._parser.current_channel
        recipient = self._parser.current_recipient
        self._count(channel)
        delta = self._parser.last_content_delta
        if not delta or recipient is not None:
            return []
        if channel == "final":
            self._final.append(delta)
            return [FinalDelta(delta)]
        if channel == "commentary":
            self._commentary.append(delta)
            return [CommentaryDelta(delta)]
        self._analysis.append(delta)
        return [ReasoningDelta(delta)]

    def _count(self, channel: str | None) -> None:
        if channel == "final":
            self._final_tokens += 1
        elif channel == "commentary":
            self._commentary_tokens += 1
        else:
            self._reasoning_tokens += 1

    def _completed_tool_calls(self) -> list[Event]:
        messages = self._parser.messages
        new = messages[self._messages_seen :]
        self._messages_seen = len(messages)
        calls: list[Event] = []
        for message in new:
            if not message.recipient:
                continue
            call = ToolCall(
                recipient=message.recipient,
                channel=message.channel or "",
                content_type=message.content_type,
                arguments="".join(getattr(part, "text", "") for part in message.content),
            )
            if self._tool_call is None:
                self._tool_call = call
            calls.append(call)
        return calls

    def finish(self, stop_reason: str) -> Done:
        """Summarise the reply; safe to call on a stream cut off anywhere, even mid-character."""
        return Done(
            stop_reason="error" if self._error is not None else stop_reason,
            reasoning_tokens=self._reasoning_tokens,
            final_tokens=self._final_tokens,
            commentary_tokens=self._commentary_tokens,
            tool_call=self._tool_call,
            error=self._error,
        )
