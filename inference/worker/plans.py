"""How a reply's turn is asked of the engine: its prompt, its sampling, its tools, where it must stop.

The chat page's replies and the API's differ only here (docs/architecture.md): a chat reply's prompt comes
from its conversation's history and settings, with the server's tools; an API reply's from its request,
sampled as the request asks, ending at a call to one of the client's functions.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from chat import selectors
from chat.models import MIN_ANSWER_TOKENS, ApiRequest, Conversation, Message
from inference.quotas import api_prompt_spec, instruction_sources, instructions_text, prompt_spec
from inference.runtime.engine.grammar import function_call_grammar, json_answer_grammar
from inference.runtime.engine.settings import SamplingParams
from inference.runtime.harmony import PromptTooLong, ToolStep, Turn, fit_prompt, render_prompt
from inference.status import conversation_cache_key
from inference.tools.selectors import tools_available
from inference.tools.toolset import Toolset, toolset_for


@dataclass(frozen=True)
class Prompt:
    """The prompt tokens of one generation, and how many of the oldest turns were left out to fit."""

    tokens: list[int]
    dropped_turns: int = 0
    budget: int = 0  # the tokens the reply may still generate after this prompt


class PromptRefused(Exception):
    """The prompt cannot be generated from (it does not fit the context); the message says why."""


@dataclass(frozen=True)
class TurnPlan:
    message: Message
    api: ApiRequest | None
    toolset: Toolset
    sampling: SamplingParams = field(default_factory=SamplingParams)
    stops: tuple[str, ...] = ()
    client_functions: frozenset[str] = frozenset()
    cache_key: str = ""
    # A chat reply's developer instructions (the owner's and the conversation's, inference.quotas), and the
    # conversation's answer length limit (None: the model's whole budget).
    instructions: str = ""
    max_tokens: int | None = None

    def prompt(self, steps: list[ToolStep], *, context: int, budget: int) -> Prompt:
        """Return the next generation's prompt, after the turn's *steps*; raise PromptRefused."""
        if self.api is None:
            assert self.message.reply_to is not None
            spec = prompt_spec(
                self.message.conversation,
                self.toolset,
                question=self.message.reply_to.content,
                history=[Turn(user=u, final=a) for u, a in selectors.finished_turns(reply=self.message)],
                steps=steps,
                instructions=self.instructions,
            )
            try:
                fitted = fit_prompt(spec, n_ctx=context, reserve=budget)
            except PromptTooLong as too_long:
                raise PromptRefused(str(too_long)) from None
            return Prompt(fitted.tokens, fitted.dropped_turns, budget)
        # An API request's messages are the client's: none is left out, the answer gets what is left.
        builtins = [
            name for name, on in (("browser", self.toolset.browser), ("python", self.toolset.python)) if on
        ]
        spec = api_prompt_spec(
            self.api.prompt, effort=self.message.reasoning_effort, steps=steps, builtins=builtins
        )
        tokens = render_prompt(spec)
        room = context - len(tokens)
        if room < MIN_ANSWER_TOKENS:
            taken = f"{len(tokens):,} of the model's {context:,} context tokens"
            raise PromptRefused(f"The messages take {taken}: shorten them.")
        return Prompt(tokens, 0, min(budget, room))


def chat_sampling(conversation: Conversation) -> SamplingParams:
    """Return how a chat reply samples: the conversation's temperature and top-p, gpt-oss's defaults where
    it has none."""
    default = SamplingParams()
    return replace(
        default,
        temperature=default.temperature if conversation.temperature is None else conversation.temperature,
        top_p=default.top_p if conversation.top_p is None else conversation.top_p,
    )


def plan_for(message: Message, api: ApiRequest | None) -> TurnPlan:
    """Return how *message*'s turn is asked; raise GrammarError for a response format or forced function
    call that llama.cpp cannot express.

    Decided once per turn: a setting changed mid-turn must not change what the model was told.
    """
    if api is None:
        conversation = message.conversation
        return TurnPlan(
            message,
            None,
            toolset_for(conversation),
            chat_sampling(conversation),
            cache_key=conversation_cache_key(message.conversation_id),
            instructions=instructions_text(instruction_sources(conversation)),
            max_tokens=conversation.max_answer_tokens,
        )
    json_format, call = api.sampling.get("json"), api.sampling.get("call")
    grammar = None
    if call is not None:  # the reply is a call, so its answer never needs the JSON format's grammar
        grammar = function_call_grammar(call["recipients"], call["schema"])
    elif json_format is not None:
        grammar = json_answer_grammar(json_format["schema"])
    sampling = SamplingParams(
        temperature=api.sampling["temperature"],
        top_p=api.sampling["top_p"],
        seed=api.sampling["seed"],
        grammar=grammar,
    )
    # Of the server's own tools, those the request asked for and its user may still use.
    asked = api.prompt.get("builtins", [])
    toolset = Toolset()
    if asked:
        available = tools_available(user=message.conversation.owner)
        toolset = Toolset(
            browser="browser" in asked and available.browser, python="python" in asked and available.python
        )
    return TurnPlan(
        message,
        api,
        toolset,
        sampling,
        stops=tuple(api.sampling["stop"]),
        client_functions=frozenset(
            f"{f.get('namespace', 'functions')}.{f['name']}" for f in api.prompt["functions"]
        ),
        # A client resends the whole conversation each time: the engine reuses the cached prefix of the user's
        # earlier request, one cache per prompt_cache_key the client names (one per user without).
        cache_key=f"api:{message.conversation.owner_id}:{api.sampling.get('cache_key', '')}",
    )
