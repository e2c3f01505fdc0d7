"""Generate gpt-oss GGUF files for tests and benchmarks, without any download.

Two kinds of model come out of here, both with the real gpt-oss architecture and the real
201,088-token o200k_harmony vocabulary, so llama.cpp and openai-harmony treat them exactly like
the published checkpoints:

* the *scripted* tiny model (:func:`write_tiny_model`): hand-set weights that answer every harmony
  prompt with one of the fixed completions in :data:`SCRIPTS`, chosen by a trigger word in the last
  user message. Tests assert on these exact tokens.
* *random* models (:func:`write_random_model`): random weights in any :class:`ModelShape`, up to the
  real 20b/120b sizes, for speed measurements. They are written tensor by tensor, so memory stays
  bounded even for a 12 GB file.

How the scripted model works. Layer 0 (a sliding-window layer, 128 tokens) has three attention heads:

* a *previous-token* head whose score depends only on the relative position (RoPE), peaking at
  distance 1; it copies the previous token's code into the residual stream;
* a *mode* head that attends to the most recent "mode marker" in the window (a trigger word, or the
  ``user`` role token, which resets to the plain mode); RoPE adds a recency bias so the latest marker
  wins;
* a *phase* head that does the same for phase markers (``analysis``, ``comment``ary, the ``user``
  reset, and line markers inside the xss corpus).

The FFN (all experts identical, so routing is irrelevant) holds one unit per script step, firing on
the conjunction (mode, phase, previous token, current token) and writing the successor's code; the
output matrix turns that code into a large logit. Every decisive weight is 0 or ±1 in MXFP4 or F32,
so MXFP4 represents them exactly.

The package, bottom up: :mod:`.vocabulary` (o200k ranks, the tiktoken file, GGUF tokenizer arrays),
:mod:`.scripts` (the scripted conversations and their markers), :mod:`.gguf_writer` (:class:`ModelShape`
and the streaming GGUF writer), :mod:`.weights` (random models), :mod:`.scripted` (the scripted model's
weights) and :mod:`.__main__` (the command line: ``python -m gptoss_web.devtools.tinymodel``).
"""

from __future__ import annotations

from gptoss_web.devtools.tinymodel.gguf_writer import SHAPES, ModelShape
from gptoss_web.devtools.tinymodel.scripted import (
    WINDOW,
    tiny_model_path,
    write_tiny_model,
)
from gptoss_web.devtools.tinymodel.scripts import (
    ENDLESS_CYCLE,
    ENDLESS_HEAD,
    MARKDOWN_ANSWER,
    PLAIN_ANSWER,
    PYTHON_ANSWER,
    PYTHON_CALL,
    REASONING_ANALYSIS,
    REASONING_ANSWER,
    SCRIPTS,
    SEARCH_ANSWER,
    SEARCH_CALL,
    WEATHER_ANSWER,
    WEATHER_CALL,
    XSS_ANSWER,
    Script,
    ScriptTurn,
)
from gptoss_web.devtools.tinymodel.vocabulary import o200k_ranks, o200k_tiktoken_bytes, write_tiktoken_dir
from gptoss_web.devtools.tinymodel.weights import write_random_model
from inference.runtime.tokens import CALL, RETURN, VOCAB_SIZE

__all__ = [
    "CALL",
    "ENDLESS_CYCLE",
    "ENDLESS_HEAD",
    "MARKDOWN_ANSWER",
    "PLAIN_ANSWER",
    "PYTHON_ANSWER",
    "PYTHON_CALL",
    "REASONING_ANALYSIS",
    "REASONING_ANSWER",
    "RETURN",
    "SCRIPTS",
    "SEARCH_ANSWER",
    "SEARCH_CALL",
    "SHAPES",
    "VOCAB_SIZE",
    "WEATHER_ANSWER",
    "WEATHER_CALL",
    "WINDOW",
    "XSS_ANSWER",
    "ModelShape",
    "Script",
    "ScriptTurn",
    "o200k_ranks",
    "o200k_tiktoken_bytes",
    "tiny_model_path",
    "write_random_model",
    "write_tiktoken_dir",
    "write_tiny_model",
]
