"""Rebuild the o200k_base vocabulary that openai-harmony needs from a gpt-oss GGUF file.

openai-harmony downloads ``o200k_base.tiktoken`` on first use, which a machine without internet
access cannot do. Every gpt-oss GGUF carries the same ranks in ``tokenizer.ggml.tokens`` (ids
0..199997, written in GPT-2's byte-to-unicode alphabet), so the file can be rebuilt byte for byte
from the model the deployment already has, and checked against the official hash.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

from inference.runtime import gguf
from inference.runtime.tokens import O200K_SHA256, ORDINARY_TOKEN_COUNT

logger = logging.getLogger(__name__)

OFFICIAL_SHA256 = O200K_SHA256
VOCAB_FILENAME = "o200k_base.tiktoken"
ENV_VAR = "TIKTOKEN_ENCODINGS_BASE"


class VocabError(Exception):
    """The vocabulary for openai-harmony cannot be derived from the given model file."""


def _not_gpt_oss(found: Mapping[str, gguf.MetadataValue]) -> bool:
    architecture = found.get(gguf.ARCHITECTURE_KEY)
    return architecture is not None and architecture != gguf.GPT_OSS_ARCH


def _read_metadata(gguf_path: Path, *, want_tokens: bool) -> dict[str, gguf.MetadataValue]:
    """Return the architecture (and the token list if *want_tokens*), stopping at a non-gpt-oss one."""
    keys = (gguf.ARCHITECTURE_KEY, gguf.TOKENS_KEY) if want_tokens else (gguf.ARCHITECTURE_KEY,)

    def done(found: Mapping[str, gguf.MetadataValue]) -> bool:
        return len(found) == len(keys) or _not_gpt_oss(found)

    try:
        return gguf.read_metadata(gguf_path, keys, done=done)
    except gguf.GGUFError as exc:
        raise VocabError(str(exc)) from exc


def _require_gpt_oss(metadata: Mapping[str, gguf.MetadataValue], gguf_path: Path) -> None:
    if metadata.get(gguf.ARCHITECTURE_KEY) != gguf.GPT_OSS_ARCH:
        found = metadata.get(gguf.ARCHITECTURE_KEY) or "missing"
        raise VocabError(
            f"{gguf_path} is not a gpt-oss model (architecture '{found}'); "
            "use a gpt-oss GGUF such as gpt-oss-20b-mxfp4.gguf"
        )


def tiktoken_from_gguf(gguf_path: Path) -> bytes:
    """Return the contents of o200k_base.tiktoken rebuilt from *gguf_path*'s tokenizer.

    For a split model pass the first shard: it is the one that holds the metadata.
    """
    gguf_path = Path(gguf_path)
    metadata = _read_metadata(gguf_path, want_tokens=True)
    _require_gpt_oss(metadata, gguf_path)
    tokens = metadata.get(gguf.TOKENS_KEY)
    if not isinstance(tokens, list) or len(tokens) < ORDINARY_TOKEN_COUNT:
        found = len(tokens) if isinstance(tokens, list) else 0
        raise VocabError(
            f"{gguf_path} holds {found} tokenizer tokens, fewer than gpt-oss's {ORDINARY_TOKEN_COUNT}; "
            "the file is incomplete or was not converted from a gpt-oss checkpoint."
        )
    to_byte = gguf.unicode_to_byte()
    lines: list[bytes] = []
    for rank, token in enumerate(tokens[:ORDINARY_TOKEN_COUNT]):
        try:
            raw = bytes(to_byte[char] for char in token)
        except KeyError as exc:
            raise VocabError(
                f"{gguf_path}: token {rank} is not written in GPT-2's byte alphabet; "
                "the tokenizer in this file is not gpt-oss's."
            ) from exc
        lines.append(base64.b64encode(raw) + b" " + str(rank).encode("ascii") + b"\n")
    contents = b"".join(lines)
    digest = hashlib.sha256(contents).hexdigest()
    if digest != OFFICIAL_SHA256:
        raise VocabError(
            f"The vocabulary in {gguf_path} differs from gpt-oss's official o200k_base "
            f"(sha256 {digest}, expected {OFFICIAL_SHA256}); the file is corrupt or modified: "
            "download the model again."
        )
    return contents


def vocab_verified(path: Path) -> bool:
    """Return whether *path* holds the vocabulary with the official hash (a worker wrote it, or a copy)."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest() == OFFICIAL_SHA256
    except FileNotFoundError:
        return False


def _write_atomically(path: Path, contents: bytes) -> None:
    """Write through a temporary file and rename it, so no reader ever sees half a vocabulary."""
    handle, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(contents)
            out.flush()
            os.fsync(out.fileno())
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


def configure_vocab(gguf_path: Path, cache_dir: Path) -> Path:
    """Make openai-harmony find its vocabulary in *cache_dir*, deriving it from *gguf_path* if needed.

    The model file is checked to be gpt-oss on every call (a few bytes of metadata). A cached
    vocabulary whose hash is the official one is reused: all gpt-oss models share it, so it need
    not be rebuilt for each model file. A missing or damaged cached file is rebuilt from the model.
    """
    gguf_path = Path(gguf_path)
    cache_dir = Path(cache_dir)
    target = cache_dir / VOCAB_FILENAME
    _require_gpt_oss(_read_metadata(gguf_path, want_tokens=False), gguf_path)
    if vocab_verified(target):
        logger.debug("Reusing verified vocabulary at %s", target)
    else:
        if target.exists():
            logger.warning("Vocabulary at %s does not have the official hash; rebuilding it", target)
        contents = tiktoken_from_gguf(gguf_path)
        try:
            cache_dir.mkdir(parents=True, exist_ok=True)
            _write_atomically(target, contents)
        except OSError as exc:
            raise VocabError(f"Cannot write the vocabulary to {target}: {exc}") from exc
        logger.info("Wrote vocabulary derived from %s to %s", gguf_path, target)
    os.environ[ENV_VAR] = str(cache_dir)
    return target
