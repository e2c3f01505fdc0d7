"""Read a GGUF file's metadata keys, and GPT-2's byte alphabet that its gpt2 tokenizer writes tokens in.

Plain Python over a memory map: the engine checks a model file with it before llama.cpp sees the file,
and the vocabulary rebuilder reads the tokenizer's tokens with it. gguf.GGUFReader builds a numpy view for
every element of every array, which takes 15+ seconds on the 201088 tokens and ~446k merges of a gpt-oss
tokenizer; decoding only the keys asked for with struct takes a fraction of a second and touches only
the metadata pages, never the gigabytes of weights after them.
"""

from __future__ import annotations

import mmap
import struct
from collections.abc import Callable, Collection, Mapping
from functools import cache
from pathlib import Path

MAGIC = b"GGUF"
ARCHITECTURE_KEY = "general.architecture"
TOKENS_KEY = "tokenizer.ggml.tokens"
GPT_OSS_ARCH = "gpt-oss"

# enum gguf_type: scalars by struct format, then the two variable-length types.
_SCALAR_FORMATS: dict[int, str] = {
    0: "<B",  # uint8
    1: "<b",  # int8
    2: "<H",  # uint16
    3: "<h",  # int16
    4: "<I",  # uint32
    5: "<i",  # int32
    6: "<f",  # float32
    7: "<?",  # bool
    10: "<Q",  # uint64
    11: "<q",  # int64
    12: "<d",  # float64
}
_STRING = 8
_ARRAY = 9
_LENGTH = struct.Struct("<Q")  # of a string, before its UTF-8 bytes

MetadataValue = str | int | float | bool | list[str] | None
"""A decoded value: a scalar, a string, a list of strings, or None for another array (skipped)."""


class GGUFError(Exception):
    """The file is missing, unreadable, or not a well-formed GGUF file; the message says which."""


class _Reader:
    def __init__(self, data: mmap.mmap, path: Path) -> None:
        self._data = data
        self._path = path
        self._offset = 0

    def _take(self, size: int) -> int:
        start = self._offset
        if start + size > len(self._data):
            raise GGUFError(f"{self._path} is truncated: its GGUF metadata ends early; download it again.")
        self._offset += size
        return start

    def _unpack(self, fmt: str) -> int | float | bool:
        start = self._take(struct.calcsize(fmt))
        value: int | float | bool = struct.unpack_from(fmt, self._data, start)[0]
        return value

    def _count(self, fmt: str = "<Q") -> int:
        return int(self._unpack(fmt))

    def _string(self) -> str:
        length = self._count()
        start = self._take(length)
        try:
            return self._data[start : start + length].decode("utf-8")
        except UnicodeDecodeError as exc:
            raise GGUFError(f"{self._path} holds a metadata string that is not UTF-8.") from exc

    def _strings(self, count: int) -> list[str]:
        """Decode *count* strings in a row: a tokenizer's 201088 tokens, so kept to a tight loop."""
        data, end_of_data, offset = self._data, len(self._data), self._offset
        unpack_length = _LENGTH.unpack_from
        strings: list[str] = []
        append = strings.append
        try:
            for _ in range(count):
                if offset + 8 > end_of_data:
                    break
                (length,) = unpack_length(data, offset)
                offset += 8
                if offset + length > end_of_data:
                    break
                append(data[offset : offset + length].decode("utf-8"))
                offset += length
            else:
                self._offset = offset
                return strings
        except UnicodeDecodeError as exc:
            raise GGUFError(f"{self._path} holds a metadata string that is not UTF-8.") from exc
        raise GGUFError(f"{self._path} is truncated: its GGUF metadata ends early; download it again.")

    def _value(self, value_type: int, *, decode: bool) -> MetadataValue:
        if value_type == _STRING:
            if decode:
                return self._string()
            self._take(self._count())
            return None
        if value_type in _SCALAR_FORMATS:
            fmt = _SCALAR_FORMATS[value_type]
            if decode:
                return self._unpack(fmt)
            self._take(struct.calcsize(fmt))
            return None
        if value_type == _ARRAY:
            item_type = self._count("<I")
            count = self._count()
            if decode and item_type == _STRING:
                return self._strings(count)
            if item_type in _SCALAR_FORMATS:
                self._take(count * struct.calcsize(_SCALAR_FORMATS[item_type]))
            else:
                for _ in range(count):
                    self._value(item_type, decode=False)
            return None
        raise GGUFError(f"{self._path} has an unknown GGUF value type {value_type}: the file is corrupt.")

    def read(
        self, keys: Collection[str], done: Callable[[Mapping[str, MetadataValue]], bool]
    ) -> dict[str, MetadataValue]:
        start = self._take(len(MAGIC))
        if self._data[start : start + len(MAGIC)] != MAGIC:
            raise GGUFError(f"{self._path} is not a GGUF file (wrong magic number): use a .gguf model.")
        version = self._count("<I")
        if version not in (2, 3):
            raise GGUFError(f"{self._path} uses GGUF version {version}; only versions 2 and 3 are readable.")
        self._count()  # tensor count
        kv_count = self._count()
        found: dict[str, MetadataValue] = {}
        for _ in range(kv_count):
            key = self._string()
            value = self._value(self._count("<I"), decode=key in keys)
            if key in keys:
                found[key] = value
            if done(found):
                break
        return found


def read_metadata(
    path: Path,
    keys: Collection[str],
    *,
    done: Callable[[Mapping[str, MetadataValue]], bool] | None = None,
) -> dict[str, MetadataValue]:
    """Return the values of *keys* found in *path*'s GGUF metadata (absent keys are left out).

    Reading stops once every key is found or *done* says so, which for keys near the start of the
    file (the architecture, its block count) means a few hundred bytes. Only string arrays are
    decoded among arrays; another array asked for reads as None.
    """
    path = Path(path)

    def all_found(found: Mapping[str, MetadataValue]) -> bool:
        return len(found) == len(keys)

    try:
        with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return _Reader(data, path).read(keys, done or all_found)
    except FileNotFoundError as exc:
        raise GGUFError(f"Model file {path} does not exist; check the model path setting.") from exc
    except ValueError as exc:  # mmap of an empty file
        raise GGUFError(f"{path} is not a GGUF file (it is empty): use a .gguf model.") from exc
    except OSError as exc:
        reason = exc.strerror or exc
        raise GGUFError(f"Cannot read model file {path}: {reason}; check the path and permissions.") from exc


@cache
def byte_to_unicode() -> dict[int, str]:
    """Return GPT-2's byte-to-unicode table, the alphabet GGUF's gpt2 tokenizer stores tokens in.

    Printable bytes stand for themselves; the others map to code points from 256 up, in byte order.
    """
    printable = [
        *range(ord("!"), ord("~") + 1),
        *range(ord("¡"), ord("¬") + 1),
        *range(ord("®"), ord("ÿ") + 1),
    ]
    table = {byte: chr(byte) for byte in printable}
    shifted = 0
    for byte in range(256):
        if byte not in table:
            table[byte] = chr(256 + shifted)
            shifted += 1
    return table


@cache
def unicode_to_byte() -> dict[str, int]:
    """Return the inverse of :func:`byte_to_unicode`: a token string's characters back to bytes."""
    return {char: byte for byte, char in byte_to_unicode().items()}
