"""Grammars that constrain a reply's answer (the final channel) to JSON, leaving its reasoning free.

llama-cpp-python's `llama_grammar` converts a JSON Schema to GBNF in Python; it lives in the llama_cpp
package, so only the worker side builds these grammars.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

from llama_cpp import llama_grammar

from inference.runtime.tokens import CHANNEL, CONSTRAIN, END, ENDOFTEXT, MESSAGE, RETURN, SPECIAL_NAMES, START

from .errors import GrammarError
from .settings import Grammar

__all__ = ["ANSWER_ROOT", "CALL_ROOT", "FINAL_HEADER_TRIGGER", "function_call_grammar", "json_answer_grammar"]

ANSWER_ROOT = "final-answer"
"""The rule the constrained text follows: the final channel's header, then the JSON answer."""

_CHANNEL, _CONSTRAIN, _MESSAGE = (SPECIAL_NAMES[t] for t in (CHANNEL, CONSTRAIN, MESSAGE))

# The final message's header as harmony writes it: <|channel|>final<|message|>, or with a content type,
# <|channel|>final <|constrain|>json<|message|>. The lazy grammar sampler matches this against everything
# generated so far (special tokens as their names) and constrains the text from the captured header on,
# so the analysis before it, and any tool calls, stay free.
FINAL_HEADER_TRIGGER = (
    r"[\s\S]*?("
    + re.escape(_CHANNEL)
    + r"final[^<]*(?:"
    + re.escape(_CONSTRAIN)
    + r"[^<]*)?"
    + re.escape(_MESSAGE)
    + r")[\s\S]*"
)

# The same header in GBNF: the grammar must accept exactly what the trigger captured.
_HEADER_RULE = f'"{_CHANNEL}final" [^<]* ( "{_CONSTRAIN}" [^<]* )? "{_MESSAGE}"'

ANY_OBJECT: Mapping[str, Any] = {"type": "object"}


def json_answer_grammar(schema: Mapping[str, Any] | None) -> Grammar:
    """Return the lazy grammar whose answer is a JSON object valid for *schema* (any object when None).

    Raise `GrammarError` naming what the converter cannot express, for a schema it refuses.
    """
    source = json.dumps(ANY_OBJECT if schema is None else schema)
    try:
        answer = llama_grammar.json_schema_to_gbnf(source)
    except Exception as error:  # the converter raises ValueError, KeyError or bare Exception
        raise GrammarError(f"the JSON schema cannot be turned into a grammar: {error}") from error
    gbnf = f"{answer.rstrip()}\n{ANSWER_ROOT} ::= {_HEADER_RULE} root\n"
    # Once the answer is complete llama.cpp's grammar allows any end-of-generation token, and for gpt-oss
    # <|endoftext|> is one; harmony ends a final message with <|return|>, so <|endoftext|> is banned.
    return Grammar(gbnf=gbnf, root=ANSWER_ROOT, triggers=(FINAL_HEADER_TRIGGER,), banned_tokens=(ENDOFTEXT,))


CALL_ROOT = "function-call"
"""The rule a reply that must call a function follows: any reasoning first, then the call."""


def function_call_grammar(recipients: Sequence[str], schema: Mapping[str, Any] | None) -> Grammar:
    """Return the grammar that makes the reply a call to one of *recipients* (`namespace.name`), with JSON
    arguments valid for *schema* (any object when None): an API request's `tool_choice` of `required` or a
    named function.

    Not lazy: it holds from the first token. The model may reason first (an analysis message), then writes
    the call's header (`<|channel|>commentary to=functions.NAME <|constrain|>json<|message|>`) and its
    arguments. Then llama.cpp allows only end-of-generation tokens, and of those <|return|> (which ends a
    final answer) and <|endoftext|> are banned: the call ends with <|call|>. Harmony's special tokens are
    matched as tokens (`<[id]>`), never as ordinary text that spells their names, so the parser reads the
    reply as the model meant it. Raise `GrammarError` for a schema the converter refuses.
    """
    if not recipients or not all(re.fullmatch(r"[A-Za-z0-9_.-]+", r) for r in recipients):
        raise GrammarError("a forced function call needs the names of the functions it may call")
    source = json.dumps(ANY_OBJECT if schema is None else schema)
    try:
        arguments = llama_grammar.json_schema_to_gbnf(source)
    except Exception as error:  # the converter raises ValueError, KeyError or bare Exception
        raise GrammarError(f"the function's parameters cannot be turned into a grammar: {error}") from error
    channel, constrain, message, start, end = (
        f"<[{token}]>" for token in (CHANNEL, CONSTRAIN, MESSAGE, START, END)
    )
    names = " | ".join(f'"{recipient}"' for recipient in recipients)
    gbnf = (
        f"{arguments.rstrip()}\n"
        f'{CALL_ROOT} ::= ( {channel} "analysis" {message} call-reasoning {end} {start} "assistant" )? '
        f'{channel} "commentary to=" ( {names} ) " "? ( {constrain} "json" )? {message} root\n'
        f"call-reasoning ::= !{end}*\n"
    )
    return Grammar(gbnf=gbnf, root=CALL_ROOT, triggers=(), banned_tokens=(ENDOFTEXT, RETURN))
