"""A zip archive written as it goes: each member is compressed and handed on before the next is made.

`zipfile` writes to a stream it cannot seek (sizes and checksums then follow each member in a data
descriptor); the sink below is such a stream, emptied after every member. So a response can stream the
archive of a large account holding one member in memory at a time, and any unzip tool reads the result.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Generator, Iterable
from datetime import UTC, datetime

# Deflate's fastest level: about 80 MB/s of text against 17 MB/s at zlib's default (6), for a zip about
# 40 % larger (measured on chat text). The archive streams only as fast as it is compressed, and an intranet
# carries more than either.
COMPRESS_LEVEL = 1


class _Sink(io.RawIOBase):
    """A write-only stream that keeps what was written until it is taken."""

    def __init__(self) -> None:
        super().__init__()
        self._chunks: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: bytes) -> int:  # type: ignore[override]
        self._chunks.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data


def zip_stream(members: Iterable[tuple[str, datetime, bytes]]) -> Generator[bytes]:
    """Yield the bytes of a zip of *members* (path in the archive, modification time, content), member by
    member: nothing is read from *members* before the bytes of the previous one have been yielded."""
    sink = _Sink()
    with zipfile.ZipFile(sink, mode="w") as archive:
        for path, modified, content in members:
            info = zipfile.ZipInfo(path, date_time=_dos_time(modified))
            info.external_attr = 0o644 << 16
            archive.writestr(info, content, compress_type=zipfile.ZIP_DEFLATED, compresslevel=COMPRESS_LEVEL)
            yield sink.take()
    yield sink.take()  # the central directory


def _dos_time(moment: datetime) -> tuple[int, int, int, int, int, int]:
    """Return *moment* as a zip entry's time: UTC, within the years a zip can hold (1980-2107)."""
    utc = moment.astimezone(UTC)
    if utc.year < 1980:
        return (1980, 1, 1, 0, 0, 0)
    return (min(utc.year, 2107), utc.month, utc.day, utc.hour, utc.minute, utc.second)
