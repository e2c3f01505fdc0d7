"""Grammars that constrain a reply's answer (the final channel) to JSON, leaving its reasoning free.

llama-cpp-python's `llama_grammar` converts a JSON Schema to GBNF in Python; it lives in the llama_cpp
package, so only the worker side builds these grammars.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from typing import Any

from llama_cpp import llama_grammar

from inference.runtime.tokens import CHANNEL, CONSTRAIN, ENDOFTEXT, MESSAGE, SPECIAL_NAMES

from .errors import GrammarError
from .settings import Grammar

__all__ = ["ANSWER_ROOT", "FINAL_HEADER_TRIGGER", "json_answer_grammar"]

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
