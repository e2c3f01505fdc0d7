"""Shared fixtures for the inference tests: the real o200k vocabulary, built offline."""

from __future__ import annotations

import base64
import importlib.util
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest

from inference.vocab import ENV_VAR, ORDINARY_TOKEN_COUNT, VOCAB_FILENAME


def _quicktok_vocab_path() -> Path:
    """Locate quicktok's o200k ranks without importing the package (only its data file is needed)."""
    spec = importlib.util.find_spec("quicktok")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("quicktok-v1 is not installed; pip install quicktok-v1==0.4.0")
    return Path(next(iter(spec.submodule_search_locations))) / "data" / "o200k.vocab"


def _read_quicktok_ranks(path: Path) -> list[bytes]:
    """Return the token bytes in rank order from quicktok's format (u32 count; u16 len, bytes, u32 rank)."""
    data = path.read_bytes()
    (count,) = struct.unpack_from("<I", data, 0)
    offset = 4
    ranked: list[bytes] = [b""] * count
    for _ in range(count):
        (length,) = struct.unpack_from("<H", data, offset)
        offset += 2
        token = data[offset : offset + length]
        offset += length
        (rank,) = struct.unpack_from("<I", data, offset)
        offset += 4
        ranked[rank] = token
    return ranked


@pytest.fixture(scope="session")
def o200k_token_bytes() -> list[bytes]:
    """Return the 199998 ordinary o200k tokens as bytes, index = token id."""
    ranked = _read_quicktok_ranks(_quicktok_vocab_path())
    assert len(ranked) == ORDINARY_TOKEN_COUNT
    return ranked


@pytest.fixture(scope="session")
def harmony_vocab_dir(
    tmp_path_factory: pytest.TempPathFactory, o200k_token_bytes: list[bytes]
) -> Iterator[Path]:
    """Yield a folder holding o200k_base.tiktoken, with TIKTOKEN_ENCODINGS_BASE pointing at it."""
    folder = tmp_path_factory.mktemp("harmony-vocab")
    lines = (
        base64.b64encode(token) + b" " + str(rank).encode() + b"\n"
        for rank, token in enumerate(o200k_token_bytes)
    )
    (folder / VOCAB_FILENAME).write_bytes(b"".join(lines))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(ENV_VAR, str(folder))
        yield folder
