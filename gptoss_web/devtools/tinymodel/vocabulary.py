"""The o200k_harmony vocabulary of the generated models.

The 199,998 o200k BPE tokens come from quicktok-v1's data files (no download); from them this module
writes the ``o200k_base.tiktoken`` file openai-harmony loads offline, and derives the GGUF tokenizer
arrays (token texts, token types, BPE merges).
"""

from __future__ import annotations

import base64
import importlib.util
import os
import struct
import tempfile
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from gguf import TokenType

from inference.runtime.gguf import byte_to_unicode
from inference.runtime.tokens import ORDINARY_TOKEN_COUNT as N_BPE
from inference.runtime.tokens import VOCAB_SIZE, special_token_name


def _quicktok_data_file(name: str) -> Path:
    """Locate a data file of quicktok-v1 without importing the package (its import is slow)."""
    spec = importlib.util.find_spec("quicktok")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("quicktok-v1 is not installed; `pip install quicktok-v1==0.4.0`")
    for location in spec.submodule_search_locations:
        candidate = Path(location) / "data" / name
        if candidate.is_file():
            return candidate
    raise RuntimeError(f"quicktok-v1 ships no data/{name}")


@lru_cache(maxsize=1)
def o200k_ranks() -> tuple[bytes, ...]:
    """Return the o200k BPE tokens as bytes, indexed by rank (= token id)."""
    data = _quicktok_data_file("o200k.vocab").read_bytes()
    (count,) = struct.unpack_from("<I", data, 0)
    offset = 4
    tokens: list[bytes | None] = [None] * count
    for _ in range(count):
        (length,) = struct.unpack_from("<H", data, offset)
        offset += 2
        token = data[offset : offset + length]
        offset += length
        (rank,) = struct.unpack_from("<I", data, offset)
        offset += 4
        tokens[rank] = token
    if count != N_BPE or any(t is None for t in tokens):
        raise RuntimeError("quicktok's o200k.vocab is not the 199,998-token o200k_base vocabulary")
    return tuple(t for t in tokens if t is not None)


def o200k_tiktoken_bytes() -> bytes:
    """Return the official ``o200k_base.tiktoken`` file content (what openai-harmony loads offline)."""
    return b"".join(
        base64.b64encode(token) + b" " + str(rank).encode() + b"\n"
        for rank, token in enumerate(o200k_ranks())
    )


def write_tiktoken_dir(directory: Path) -> Path:
    """Write ``o200k_base.tiktoken`` into *directory* (for ``TIKTOKEN_ENCODINGS_BASE``); return it."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / "o200k_base.tiktoken"
    if not target.exists():
        _atomic_write_bytes(target, o200k_tiktoken_bytes())
    return target


def _token_text(token: bytes) -> str:
    table = byte_to_unicode()
    return "".join(table[b] for b in token)


def _bpe_merges(ranks: Sequence[bytes]) -> list[str]:
    """Derive the BPE merges from the ranks, as llama.cpp's convert script does for tiktoken.

    Each multi-byte token is re-encoded with only the lower-ranked merges; the last merge applied
    is the pair it was built from.
    """
    rank_of = {token: rank for rank, token in enumerate(ranks)}
    merges: list[str] = []
    for rank, token in enumerate(ranks):
        if len(token) == 1:
            continue
        parts = [token[i : i + 1] for i in range(len(token))]
        while len(parts) > 2:
            best_i = -1
            best_rank = rank
            for i in range(len(parts) - 1):
                r = rank_of.get(parts[i] + parts[i + 1])
                if r is not None and r < best_rank:
                    best_i, best_rank = i, r
            if best_i < 0:
                break
            parts[best_i : best_i + 2] = [parts[best_i] + parts[best_i + 1]]
        if len(parts) != 2:
            raise RuntimeError(f"token {rank} has no BPE merge path")
        merges.append(_token_text(parts[0]) + " " + _token_text(parts[1]))
    return merges


@lru_cache(maxsize=1)
def _vocab_arrays() -> tuple[list[str], list[int], list[str]]:
    """Return (tokens, token types, merges) for the GGUF tokenizer keys."""
    ranks = o200k_ranks()
    tokens = [_token_text(t) for t in ranks] + [special_token_name(i) for i in range(N_BPE, VOCAB_SIZE)]
    types = [int(TokenType.NORMAL)] * N_BPE + [int(TokenType.CONTROL)] * (VOCAB_SIZE - N_BPE)
    return tokens, types, _bpe_merges(ranks)


def _atomic_write_bytes(path: Path, data: bytes) -> None:
    fd, tmp_name = tempfile.mkstemp(prefix=path.name + ".", suffix=".part", dir=path.parent)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    Path(tmp_name).chmod(0o644)
    Path(tmp_name).replace(path)
