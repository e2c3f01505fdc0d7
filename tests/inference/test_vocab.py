"""The o200k vocabulary is rebuilt from a gpt-oss GGUF, verified, and handed to openai-harmony."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import gguf
import numpy as np
import pytest
from openai_harmony import HarmonyEncodingName, load_harmony_encoding

from inference.runtime.tokens import VOCAB_SIZE
from inference.runtime.vocab import (
    ENV_VAR,
    OFFICIAL_SHA256,
    VOCAB_FILENAME,
    VocabError,
    configure_vocab,
    tiktoken_from_gguf,
)

NOT_GPT_OSS = r"is not a gpt-oss model \(architecture 'llama'\); use a gpt-oss GGUF"


def _gpt2_byte_alphabet() -> dict[int, str]:
    """Return GPT-2's bytes_to_unicode table, written out independently of inference.runtime.vocab."""
    visible = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    chars = list(visible)
    extra = 0
    for byte in range(256):
        if byte not in visible:
            visible.append(byte)
            chars.append(256 + extra)
            extra += 1
    return {byte: chr(char) for byte, char in zip(visible, chars, strict=True)}


@pytest.fixture(scope="module")
def gguf_tokens(o200k_token_bytes: list[bytes]) -> list[str]:
    """Return a gpt-oss tokenizer token list as a GGUF stores it: 201088 strings in id order."""
    alphabet = _gpt2_byte_alphabet()
    ordinary = ["".join(alphabet[byte] for byte in token) for token in o200k_token_bytes]
    special = [f"<|reserved_{i}|>" for i in range(len(ordinary), VOCAB_SIZE)]
    return ordinary + special


def _write_gguf(
    path: Path, tokens: list[str], *, architecture: str = "gpt-oss", merges: tuple[str, ...] = ()
) -> Path:
    writer = gguf.GGUFWriter(path, architecture)
    if merges:
        writer.add_token_merges(merges)
    writer.add_tokenizer_model("gpt2")
    writer.add_token_list(tokens)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def gpt_oss_gguf(tmp_path_factory: pytest.TempPathFactory, gguf_tokens: list[str]) -> Path:
    return _write_gguf(tmp_path_factory.mktemp("gguf") / "tiny-gpt-oss.gguf", gguf_tokens)


def test_vocabulary_derived_from_a_gpt_oss_gguf_has_the_official_hash(
    gpt_oss_gguf: Path, harmony_vocab_dir: Path
) -> None:
    contents = tiktoken_from_gguf(gpt_oss_gguf)

    assert hashlib.sha256(contents).hexdigest() == OFFICIAL_SHA256
    assert len(contents) == 3_613_922
    assert contents == (harmony_vocab_dir / VOCAB_FILENAME).read_bytes()


def test_gguf_with_one_token_changed_is_refused_naming_the_file(
    tmp_path: Path, gguf_tokens: list[str]
) -> None:
    tampered = list(gguf_tokens)
    tampered[1000] = tampered[1000] + "x"
    path = _write_gguf(tmp_path / "tampered.gguf", tampered)

    with pytest.raises(VocabError, match="official") as caught:
        tiktoken_from_gguf(path)

    assert str(path) in str(caught.value)


def test_llama_gguf_is_refused_as_not_gpt_oss(tmp_path: Path) -> None:
    path = _write_gguf(tmp_path / "llama.gguf", ["a", "b", "c"], architecture="llama")

    with pytest.raises(VocabError, match=NOT_GPT_OSS):
        tiktoken_from_gguf(path)
    with pytest.raises(VocabError, match="is not a gpt-oss model"):
        configure_vocab(path, tmp_path / "cache")
    assert not (tmp_path / "cache" / VOCAB_FILENAME).exists()


def test_gguf_with_too_few_tokens_is_refused(tmp_path: Path) -> None:
    path = _write_gguf(tmp_path / "short.gguf", ["a", "b", "c"])

    with pytest.raises(VocabError, match="holds 3 tokenizer tokens"):
        tiktoken_from_gguf(path)


def test_file_that_is_not_gguf_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.gguf"
    path.write_bytes(b"<html>404 Not Found</html>" * 10)

    with pytest.raises(VocabError, match="not a GGUF file"):
        tiktoken_from_gguf(path)


def test_missing_model_file_is_refused_with_its_path(tmp_path: Path) -> None:
    with pytest.raises(VocabError, match="does not exist"):
        configure_vocab(tmp_path / "nowhere.gguf", tmp_path / "cache")


def test_metadata_is_read_quickly_even_past_a_full_merges_table(
    tmp_path: Path, gguf_tokens: list[str]
) -> None:
    """gguf.GGUFReader needs 15+ s for a real tokenizer; skipping ~446k merges must stay fast."""
    merges = tuple(f"{gguf_tokens[i % 5000]} {gguf_tokens[(i * 7) % 5000]}" for i in range(446_000))
    path = _write_gguf(tmp_path / "with-merges.gguf", gguf_tokens, merges=merges)

    started = time.perf_counter()
    contents = tiktoken_from_gguf(path)
    elapsed = time.perf_counter() - started

    assert hashlib.sha256(contents).hexdigest() == OFFICIAL_SHA256
    assert elapsed < 5.0


def test_configure_vocab_writes_the_file_and_lets_harmony_load_offline(
    gpt_oss_gguf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_VAR, "/nonexistent")
    cache_dir = tmp_path / "var" / "vocab"

    path = configure_vocab(gpt_oss_gguf, cache_dir)

    assert path == cache_dir / VOCAB_FILENAME
    assert hashlib.sha256(path.read_bytes()).hexdigest() == OFFICIAL_SHA256
    assert Path(os.environ[ENV_VAR]) == cache_dir
    assert [p.name for p in cache_dir.iterdir()] == [VOCAB_FILENAME]
    encoding = load_harmony_encoding(HarmonyEncodingName.HARMONY_GPT_OSS)
    assert encoding.decode(encoding.encode("hello world")) == "hello world"


def test_configure_vocab_reuses_a_verified_cached_file(
    gpt_oss_gguf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_VAR, "/nonexistent")
    path = configure_vocab(gpt_oss_gguf, tmp_path)
    before = path.stat()

    configure_vocab(gpt_oss_gguf, tmp_path)

    after = path.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)


def test_configure_vocab_rebuilds_a_corrupted_cached_file(
    gpt_oss_gguf: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_VAR, "/nonexistent")
    (tmp_path / VOCAB_FILENAME).write_bytes(b"aGVsbG8= 0\n")

    path = configure_vocab(gpt_oss_gguf, tmp_path)

    assert hashlib.sha256(path.read_bytes()).hexdigest() == OFFICIAL_SHA256


def test_configure_vocab_refuses_a_foreign_vocabulary_and_leaves_nothing_behind(
    tmp_path: Path, gguf_tokens: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_VAR, "/nonexistent")
    tampered = list(gguf_tokens)
    tampered[42], tampered[43] = tampered[43], tampered[42]
    model = _write_gguf(tmp_path / "swapped.gguf", tampered)
    cache_dir = tmp_path / "cache"

    with pytest.raises(VocabError, match=r"swapped\.gguf"):
        configure_vocab(model, cache_dir)

    assert not cache_dir.exists() or list(cache_dir.iterdir()) == []
    assert os.environ[ENV_VAR] == "/nonexistent"


def test_a_model_file_cut_off_in_its_tokens_is_refused_as_truncated(tmp_path: Path) -> None:
    path = _write_gguf(tmp_path / "cut.gguf", ["a", "b", "c"] * 100)
    data = path.read_bytes()
    path.write_bytes(data[: data.index(b"tokenizer.ggml.tokens") + 200])  # stops inside the token list

    with pytest.raises(VocabError, match=r"cut\.gguf is truncated"):
        tiktoken_from_gguf(path)
