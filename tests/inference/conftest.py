"""Shared fixtures for the inference tests: the real o200k vocabulary, built offline."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gptoss_web.devtools.tinymodel import o200k_ranks, write_tiktoken_dir
from inference.runtime.vocab import ENV_VAR, ORDINARY_TOKEN_COUNT


@pytest.fixture(scope="session")
def o200k_token_bytes() -> list[bytes]:
    """Return the 199998 ordinary o200k tokens as bytes, index = token id."""
    ranked = list(o200k_ranks())
    assert len(ranked) == ORDINARY_TOKEN_COUNT
    return ranked


@pytest.fixture(scope="session")
def harmony_vocab_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Yield a folder holding o200k_base.tiktoken, with TIKTOKEN_ENCODINGS_BASE pointing at it."""
    folder = tmp_path_factory.mktemp("harmony-vocab")
    write_tiktoken_dir(folder)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(ENV_VAR, str(folder))
        yield folder
