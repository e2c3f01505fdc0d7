"""Harmony's special token ids in o200k_harmony, the vocabulary gpt-oss is trained on.

Plain Python with no imports: the prompt renderer, the vocabulary rebuilder, the tiny model generator and
the benchmarks all read these ids from here.
"""

from __future__ import annotations

STARTOFTEXT = 199_998
ENDOFTEXT = 199_999
RETURN = 200_002
CONSTRAIN = 200_003
CHANNEL = 200_005
START = 200_006
END = 200_007
MESSAGE = 200_008
CALL = 200_012
ENDOFPROMPT = 200_018

FIRST_SPECIAL = STARTOFTEXT
"""Ids from here up are special tokens; ordinary text never encodes to them."""
ORDINARY_TOKEN_COUNT = FIRST_SPECIAL
"""Ids 0..199997 are BPE ranks (the lines of o200k_base.tiktoken)."""
VOCAB_SIZE = 201_088
"""Rows of the embedding and output matrices: the ordinary tokens, the named specials and reserved ids."""

O200K_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
"""sha256 of the official o200k_base.tiktoken, which openai-harmony checks when it loads it."""

SPECIAL_NAMES: dict[int, str] = {
    STARTOFTEXT: "<|startoftext|>",
    ENDOFTEXT: "<|endoftext|>",
    RETURN: "<|return|>",
    CONSTRAIN: "<|constrain|>",
    CHANNEL: "<|channel|>",
    START: "<|start|>",
    END: "<|end|>",
    MESSAGE: "<|message|>",
    CALL: "<|call|>",
    ENDOFPROMPT: "<|endofprompt|>",
}


def special_token_name(token_id: int) -> str:
    """Return the harmony name of special token *token_id* (FIRST_SPECIAL..VOCAB_SIZE-1)."""
    return SPECIAL_NAMES.get(token_id, f"<|reserved_{token_id}|>")
