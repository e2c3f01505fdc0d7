"""Checks before a reply is queued: may this user use this model, generate more today, and does the
question fit the model's context at all?"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Collection, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import date, datetime, time, timedelta
from pathlib import Path

from django.conf import settings
from django.contrib.auth.models import User
from django.utils import timezone

from chat.errors import ChatError
from chat.models import MIN_ANSWER_TOKENS, ApiPrompt, Conversation
from chat.selectors import profile_get
from inference import selectors
from inference.runtime.harmony import (
    FunctionSpec,
    HarmonyUnavailable,
    PromptSpec,
    PromptTooLong,
    ToolStep,
    Turn,
    fit_prompt,
    get_encoding,
    render_prompt,
)
from inference.runtime.vocab import ENV_VAR, VOCAB_FILENAME, vocab_verified
from inference.tools.toolset import Toolset, toolset_for

logger = logging.getLogger(__name__)


class ModelNotAllowed(ChatError):
    def __init__(self, model_name: str) -> None:
        super().__init__(
            f"The model {model_name!r} is not available to you. Choose another model in this "
            "conversation's settings, or ask an admin for access."
        )


class ModelNotServed(ModelNotAllowed):
    def __init__(self, model_name: str) -> None:
        ChatError.__init__(
            self,
            f"The model {model_name!r} is not served on this site any more (an admin disabled or removed it, "
            "or the server now runs another model). Choose another model in this conversation's settings.",
        )


class QuotaExceeded(ChatError):
    pass


class MessageTooLong(ChatError):
    """The question cannot fit the model's context even with every earlier turn left out."""


def quota_resets_at() -> datetime:
    """Return the next local midnight (TIME_ZONE), when daily quotas start again."""
    tomorrow = timezone.localdate() + timedelta(days=1)
    return timezone.make_aware(datetime.combine(tomorrow, time.min))


def model_access_check(*, user: User, model_name: str) -> None:
    """Raise ModelNotAllowed unless *user* may use *model_name* (enabled, and in one of its groups);
    ModelNotServed when nobody may (the model is disabled, removed, or not the one this site serves)."""
    if not selectors.model_allowed(user=user, model_name=model_name):
        if model_name not in selectors.enabled_model_names():
            raise ModelNotServed(model_name)
        raise ModelNotAllowed(model_name)


def reply_allowed_check(
    *, user: User, model_name: str, limit: int | None = None, limits: selectors.Limits | None = None
) -> int:
    """Return the tokens the next reply of *user* with *model_name* may generate, which it holds against the
    daily quota until its real count is recorded; raise ChatError with what to do when it may not be queued.

    A reply gets the model's whole answer budget (or the conversation's answer length *limit*, when lower), or
    what is left of the quota once the replies in flight hold theirs. The caller holds the owner's send lock,
    so no other send counts meanwhile; it passes the *limits* it read already.
    """
    model_access_check(user=user, model_name=model_name)
    budget = answer_budget(model_name=model_name, limit=limit)
    limit = (limits or selectors.limits_get(user=user)).daily_tokens
    if limit is None:
        return budget
    tokens = selectors.tokens_today(user=user)
    left = limit - tokens.used - tokens.reserved
    if left >= min(MIN_ANSWER_TOKENS, budget):
        return min(budget, left)
    details = [f"{tokens.used:,} generated"]
    if tokens.reserved:
        details.append(f"{tokens.reserved:,} held by replies still being written until they finish")
    if left > 0:
        details.append(f"{left:,} left, too few for an answer")
    resets = quota_resets_at()
    hours, minutes = divmod(int((resets - timezone.now()).total_seconds()) // 60, 60)
    raise QuotaExceeded(
        f"You have used your {limit:,} tokens for today ({'; '.join(details)}). Your quota resets at "
        f"{timezone.localtime(resets):%H:%M %Z} (in {hours} h {minutes} min); an admin can raise it."
    )


def reply_model_refusal(*, owner: User, model_name: str) -> str:
    """Return why the GPU worker must not generate with *model_name* for *owner* ("" when it may).

    Checked again in the task: an admin may have taken the model away after the reply was queued.
    """
    try:
        model_access_check(user=owner, model_name=model_name)
    except ModelNotAllowed as refused:
        return str(refused)
    return ""


def answer_budget(*, model_name: str, limit: int | None) -> int:
    """Return the tokens a chat reply may generate: the model's answer budget, or the conversation's answer
    length *limit* where that is lower (a limit never raises the model's own budget)."""
    return _capped(selectors.model_budget_get(name=model_name).answer_tokens, limit)


def _capped(budget: int, limit: int | None) -> int:
    return budget if limit is None else min(budget, limit)


@dataclass(frozen=True)
class InstructionSource:
    """One part of a chat reply's developer instructions: who wrote it (its heading) and what it says."""

    heading: str
    text: str


def instruction_sources(conversation: Conversation) -> list[InstructionSource]:
    """Return the instructions a chat reply's developer message carries, in the order they are written.

    Broad to narrow, so that the narrower one comes later and wins where two disagree (docs/architecture.md,
    "Instructions in a chat reply's prompt"): the owner's profile (about them, then how to answer), then a
    project's instructions (the project the conversation is in, read now: editing the project changes its
    conversations' next replies), then the conversation's own.
    Empty ones are left out: the prompt carries only what the user wrote.
    """
    profile = profile_get(user=conversation.owner)
    project = conversation.project if conversation.project_id is not None else None
    sources = [
        InstructionSource("About the user", profile.about_me),
        InstructionSource("How to answer", profile.answer_style),
        InstructionSource("Instructions for this project", project.instructions if project else ""),
        InstructionSource("Instructions for this conversation", conversation.instructions),
    ]
    return [source for source in sources if source.text.strip()]


def instructions_text(sources: Sequence[InstructionSource]) -> str:
    """Return *sources* as the developer message's instructions: one headed section each, in order."""
    return "\n\n".join(f"## {source.heading}\n\n{source.text.strip()}" for source in sources)


def prompt_spec(
    conversation: Conversation,
    toolset: Toolset,
    *,
    question: str,
    history: Sequence[Turn] = (),
    steps: Sequence[ToolStep] = (),
    instructions: str | None = None,
) -> PromptSpec:
    """Return what a reply's prompt is rendered from: the conversation's settings, *toolset*, the turns.

    *instructions* (default: read now, `instruction_sources`) are fixed once per turn by the worker, so that a
    profile saved while a turn calls its tools does not change what the model was told.
    """
    if instructions is None:
        instructions = instructions_text(instruction_sources(conversation))
    return PromptSpec(
        effort=conversation.reasoning_effort,
        date=date.today().isoformat(),
        browser=toolset.browser,
        python=toolset.python,
        python_timeout_s=settings.GPTOSS_PYTHON_TIMEOUT_S,
        instructions=instructions,
        functions=list(toolset.functions),
        history=list(history),
        user=question,
        tool_steps=list(steps),
    )


def api_prompt_spec(
    prompt: ApiPrompt, *, effort: str, steps: Sequence[ToolStep] = (), builtins: Collection[str] | None = None
) -> PromptSpec:
    """Return what an API request's prompt is rendered from: its messages, its functions, *steps* after them.

    The request declares its functions, which its client runs; of the server's own tools only *builtins*
    (default: those the request asked for and was allowed, `prompt["builtins"]`), which the worker runs.
    """
    if builtins is None:
        builtins = prompt.get("builtins", [])
    client_steps = [
        ToolStep(
            channel="commentary",
            recipient=f"{step.get('namespace', 'functions')}.{step['name']}",
            content_type="<|constrain|>json",
            arguments=step["arguments"],
            analysis=step["analysis"],
            result=step["result"],
        )
        for step in prompt["steps"]
    ]
    return PromptSpec(
        effort=effort,
        date=date.today().isoformat(),
        browser="browser" in builtins,
        python="python" in builtins,
        python_timeout_s=settings.GPTOSS_PYTHON_TIMEOUT_S,
        instructions=prompt["instructions"],
        functions=[
            FunctionSpec(
                f["name"],
                f["description"],
                f["parameters"],
                f.get("namespace", "functions"),
                f.get("namespace_description"),
            )
            for f in prompt["functions"]
        ],
        history=[Turn(user=turn["user"], final=turn["final"]) for turn in prompt["history"]],
        user=prompt["user"],
        tool_steps=[*client_steps, *steps],
    )


class ContextLengthExceeded(MessageTooLong):
    """An API request's messages and the tokens it asks for do not fit the model's context."""

    def __init__(self, *, context: int, prompt_tokens: int, wanted: int) -> None:
        super().__init__(
            f"This model's maximum context length is {context:,} tokens, but the messages take "
            f"{prompt_tokens:,} and {wanted:,} more are asked for the reply. Shorten the messages or lower "
            "max_tokens."
        )


def api_reply_budget(*, context: int, prompt_tokens: int, max_tokens: int | None, budget: int) -> int:
    """Return the tokens an API reply may generate after *prompt_tokens*, or raise ContextLengthExceeded.

    An explicit *max_tokens* must fit whole, as OpenAI's API requires; without it the reply gets its budget,
    cut to what the context has left (as long as that leaves room for a short answer).
    """
    room = context - prompt_tokens
    wanted = max_tokens if max_tokens is not None else min(budget, max(room, MIN_ANSWER_TOKENS))
    if wanted > room:
        raise ContextLengthExceeded(context=context, prompt_tokens=prompt_tokens, wanted=wanted)
    return min(wanted, budget)


def api_prompt_fit_check(*, model_name: str, effort: str, prompt: ApiPrompt, max_tokens: int | None) -> None:
    """Raise ContextLengthExceeded now when the request cannot fit (the worker checks again, where the web
    process has no vocabulary for harmony)."""
    if not _harmony_ready():
        return
    budget = selectors.model_budget_get(name=model_name)
    tokens = render_prompt(api_prompt_spec(prompt, effort=effort))
    api_reply_budget(
        context=budget.context, prompt_tokens=len(tokens), max_tokens=max_tokens, budget=budget.answer_tokens
    )


def prompt_fit_check(*, conversation: Conversation, text: str) -> None:
    """Raise MessageTooLong when *text* cannot fit the model's context even as the conversation's only turn.

    Exact: the prompt is rendered as the GPU worker renders it (effort, instructions, tools), without the
    earlier turns, which the worker leaves out first when they do not fit, and with room for the answer the
    conversation allows. Where this process has no vocabulary for harmony (it is derived from the model file
    by the worker), nothing is refused here and the worker's own check fails the reply instead, without Retry.

    The usual question is far shorter than the room left: no token is shorter than a byte, so the prompt
    without the question (rendered once per setting, `_bare_length`) plus the question's bytes bounds it, and
    only a question the bound does not clear is rendered (a send waits on this check).
    """
    if not _harmony_ready():
        return
    model = selectors.model_budget_get(name=conversation.model_name)
    reserve = _capped(model.answer_tokens, conversation.max_answer_tokens)
    spec = prompt_spec(conversation, toolset_for(conversation), question=text)
    if _bare_length(spec) + len(text.encode("utf-8")) <= model.context - reserve:
        return
    try:
        fit_prompt(spec, n_ctx=model.context, reserve=reserve)
    except PromptTooLong as too_long:
        raise MessageTooLong(str(too_long)) from None


# Prompt lengths without the question, by everything else the prompt is rendered from (bounded: cleared when
# full; a day's settings fill a few entries).
_BARE_LENGTHS: dict[str, int] = {}
_BARE_LENGTHS_MAX = 1024


def _bare_length(spec: PromptSpec) -> int:
    """Return how many tokens *spec*'s prompt takes with an empty question (and no earlier turns)."""
    bare = replace(spec, user="", history=[], tool_steps=[])
    key = json.dumps(asdict(bare), sort_keys=True, default=str)
    length = _BARE_LENGTHS.get(key)
    if length is None:
        if len(_BARE_LENGTHS) >= _BARE_LENGTHS_MAX:
            _BARE_LENGTHS.clear()
        length = _BARE_LENGTHS[key] = len(render_prompt(bare))
    return length


def _harmony_ready() -> bool:
    """Return whether harmony can render here, pointing it at the vocabulary a worker wrote under var/vocab.

    Never lets openai-harmony try a download (a web request would wait on the network).
    """
    if not os.environ.get(ENV_VAR):
        cached = Path(settings.GPTOSS_VAR_DIR) / "vocab"
        if not vocab_verified(cached / VOCAB_FILENAME):
            return False
        os.environ[ENV_VAR] = str(cached)
    try:
        get_encoding()
    except HarmonyUnavailable as error:
        logger.warning("questions are not checked against the context: %s", error)
        return False
    return True
