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
import mmap
import os
import struct
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from gguf import GGUF_MAGIC, GGUFValueType

logger = logging.getLogger(__name__)

OFFICIAL_SHA256 = "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d"
VOCAB_FILENAME = "o200k_base.tiktoken"
ENV_VAR = "TIKTOKEN_ENCODINGS_BASE"
ORDINARY_TOKEN_COUNT = 199_998
"""Ids 0..199997 are BPE ranks; the ids above them are harmony's special tokens."""

_ARCHITECTURE_KEY = "general.architecture"
_TOKENS_KEY = "tokenizer.ggml.tokens"

_SCALAR_SIZES: dict[GGUFValueType, int] = {
    GGUFValueType.UINT8: 1,
    GGUFValueType.INT8: 1,
    GGUFValueType.BOOL: 1,
    GGUFValueType.UINT16: 2,
    GGUFValueType.INT16: 2,
    GGUFValueType.UINT32: 4,
    GGUFValueType.INT32: 4,
    GGUFValueType.FLOAT32: 4,
    GGUFValueType.UINT64: 8,
    GGUFValueType.INT64: 8,
    GGUFValueType.FLOAT64: 8,
}


class VocabError(Exception):
    """The vocabulary for openai-harmony cannot be derived from the given model file."""


@dataclass(frozen=True)
class _GGUFMetadata:
    architecture: str | None
    tokens: list[str] | None


@cache
def _unicode_to_byte() -> dict[str, int]:
    """Return the inverse of GPT-2's byte-to-unicode table that GGUF token strings are written in."""
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    table = {chr(byte): byte for byte in printable}
    shifted = 0
    for byte in range(256):
        if byte not in printable:
            table[chr(256 + shifted)] = byte
            shifted += 1
    return table


class _MetadataReader:
    """Walk the key/value section of a memory-mapped GGUF file, decoding only the keys asked for.

    gguf.GGUFReader builds a numpy view for every element of every array, which takes 15+ seconds
    on the 201088 tokens and ~446k merges of a gpt-oss tokenizer. Reading the few keys needed with
    struct straight from the map takes a fraction of a second and touches only the metadata pages,
    never the gigabytes of weights after them.
    """

    def __init__(self, data: mmap.mmap, path: Path) -> None:
        self._data = data
        self._path = path
        self._offset = 0

    def _unpack(self, fmt: str) -> int:
        size = struct.calcsize(fmt)
        if self._offset + size > len(self._data):
            raise VocabError(f"{self._path} is truncated: its GGUF metadata ends early.")
        (value,) = struct.unpack_from(fmt, self._data, self._offset)
        self._offset += size
        return int(value)

    def _string_bytes(self) -> bytes:
        length = self._unpack("<Q")
        end = self._offset + length
        if end > len(self._data):
            raise VocabError(f"{self._path} is truncated: its GGUF metadata ends early.")
        raw = self._data[self._offset : end]
        self._offset = end
        return raw

    def _string(self) -> str:
        try:
            return self._string_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise VocabError(f"{self._path} holds a metadata string that is not UTF-8.") from exc

    def _skip_value(self, value_type: GGUFValueType) -> None:
        if value_type == GGUFValueType.STRING:
            length = self._unpack("<Q")
            self._offset += length
        elif value_type == GGUFValueType.ARRAY:
            item_type = GGUFValueType(self._unpack("<I"))
            count = self._unpack("<Q")
            if item_type in _SCALAR_SIZES:
                self._offset += count * _SCALAR_SIZES[item_type]
            else:
                for _ in range(count):
                    self._skip_value(item_type)
        else:
            self._offset += _SCALAR_SIZES[value_type]

    def _string_array(self, key: str) -> list[str]:
        item_type = GGUFValueType(self._unpack("<I"))
        if item_type != GGUFValueType.STRING:
            raise VocabError(f"{self._path}: metadata key {key} is not a list of strings.")
        return [self._string() for _ in range(self._unpack("<Q"))]

    def read(self, *, want_tokens: bool) -> _GGUFMetadata:
        """Return the architecture (and the token list if *want_tokens*), stopping once they are known."""
        if self._unpack("<I") != GGUF_MAGIC:
            raise VocabError(f"{self._path} is not a GGUF file (wrong magic number).")
        version = self._unpack("<I")
        if version not in (2, 3):
            raise VocabError(f"{self._path} uses GGUF version {version}; only versions 2 and 3 are readable.")
        self._unpack("<Q")  # tensor count
        kv_count = self._unpack("<Q")
        architecture: str | None = None
        tokens: list[str] | None = None
        try:
            for _ in range(kv_count):
                key = self._string()
                value_type = GGUFValueType(self._unpack("<I"))
                if key == _ARCHITECTURE_KEY and value_type == GGUFValueType.STRING:
                    architecture = self._string()
                    if architecture != "gpt-oss":
                        break
                elif key == _TOKENS_KEY and value_type == GGUFValueType.ARRAY and want_tokens:
                    tokens = self._string_array(key)
                else:
                    self._skip_value(value_type)
                if architecture is not None and (tokens is not None or not want_tokens):
                    break
        except ValueError as exc:
            raise VocabError(f"{self._path} has corrupt GGUF metadata ({exc}).") from exc
        return _GGUFMetadata(architecture=architecture, tokens=tokens)


def _read_metadata(gguf_path: Path, *, want_tokens: bool) -> _GGUFMetadata:
    try:
        with gguf_path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return _MetadataReader(data, gguf_path).read(want_tokens=want_tokens)
    except FileNotFoundError as exc:
        raise VocabError(f"Model file {gguf_path} does not exist; check the model path setting.") from exc
    except (OSError, ValueError) as exc:
        raise VocabError(f"Cannot read model file {gguf_path}: {exc}") from exc


def _require_gpt_oss(metadata: _GGUFMetadata, gguf_path: Path) -> None:
    if metadata.architecture != "gpt-oss":
        found = metadata.architecture or "missing"
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
    if metadata.tokens is None or len(metadata.tokens) < ORDINARY_TOKEN_COUNT:
        found = 0 if metadata.tokens is None else len(metadata.tokens)
        raise VocabError(
            f"{gguf_path} holds {found} tokenizer tokens, fewer than gpt-oss's {ORDINARY_TOKEN_COUNT}; "
            "the file is incomplete or was not converted from a gpt-oss checkpoint."
        )
    to_byte = _unicode_to_byte()
    lines: list[bytes] = []
    for rank, token in enumerate(metadata.tokens[:ORDINARY_TOKEN_COUNT]):
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
