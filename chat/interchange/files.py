"""Which kind of file an upload is, read within the caps: JSON, or a zip of JSON.

- this app's JSON: one conversation (`{"format": "gptoss-web", ...}`), or the zip of a whole account's export
  (its `conversations/*.json`);
- ChatGPT's `conversations.json`, alone or in the zip ChatGPT sends;
- Open WebUI's chat export (a list of chats, or one chat).
"""

from __future__ import annotations

import io
import json
import zipfile
from collections import Counter
from pathlib import PurePosixPath

from chat.interchange import chatgpt, gptoss, openwebui
from chat.interchange.records import MAX_CONVERSATIONS, MAX_FILE_BYTES, MAX_MESSAGES, FileContents, Refused

KINDS = (
    "this app's JSON or export zip, ChatGPT's conversations.json (or its export zip), "
    "or Open WebUI's chat export"
)


def read_file(data: bytes, name: str) -> FileContents:
    """Return the conversations the uploaded file *name* holds, or refuse it naming what is wrong."""
    size_check(len(data), name)
    contents = _read_zip(data, name) if data[:4] == b"PK\x03\x04" else read_json(data, name)
    if not contents.conversations:
        raise Refused(f"{name}: the file holds no conversations")
    if contents.message_count > MAX_MESSAGES:
        raise Refused(
            f"{name}: {contents.message_count:,} messages; the limit is {MAX_MESSAGES:,} in one file"
        )
    return contents


def size_check(size: int, name: str) -> None:
    """Refuse a file of *size* bytes over the cap, before it is read."""
    if size > MAX_FILE_BYTES:
        raise Refused(f"{name}: {_mb(size)} is larger than the limit of {_mb(MAX_FILE_BYTES)}")


def read_json(data: bytes, name: str) -> FileContents:
    """Return what the JSON file *name* holds, whichever of the three formats it is in."""
    doc = _parse(data, name)
    left_out: Counter[str] = Counter()
    if gptoss.is_document(doc):
        return FileContents(gptoss.SOURCE, [gptoss.read(doc, name)])
    items = [doc] if isinstance(doc, dict) else doc
    if not isinstance(items, list):
        raise Refused(f"{name}: not a conversation export; expected {KINDS}")
    if len(items) > MAX_CONVERSATIONS:
        raise Refused(f"{name}: {len(items):,} conversations; the limit is {MAX_CONVERSATIONS:,} in one file")
    if not items:
        raise Refused(f"{name}: the file holds no conversations")
    if chatgpt.looks_like(items[0]):
        return FileContents(chatgpt.SOURCE, chatgpt.read(items, name, left_out), left_out)
    if openwebui.looks_like(items[0]):
        return FileContents(openwebui.SOURCE, openwebui.read(items, name, left_out), left_out)
    if gptoss.is_document(items[0]):
        return FileContents(
            gptoss.SOURCE, [gptoss.read(d, f"{name}: item {n}") for n, d in enumerate(items, 1)]
        )
    raise Refused(f"{name}: not a conversation export; expected {KINDS}")


def _parse(data: bytes, name: str) -> object:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise Refused(f"{name}: not UTF-8 text (byte {error.start:,} cannot be read)") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise Refused(f"{name}: not JSON (line {error.lineno}, column {error.colno}: {error.msg})") from None
    except RecursionError:
        raise Refused(f"{name}: nested too deeply to read") from None


def _read_zip(data: bytes, name: str) -> FileContents:
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = [m for m in archive.infolist() if not m.is_dir()]
    except (zipfile.BadZipFile, ValueError, OSError):
        raise Refused(f"{name}: not a readable zip file") from None
    chatgpt_file = next((m for m in members if PurePosixPath(m.filename).name == "conversations.json"), None)
    if chatgpt_file is not None:
        return read_json(
            _member(archive, chatgpt_file, name, chatgpt_file.file_size), f"{name}: {chatgpt_file.filename}"
        )
    ours = [
        m
        for m in members
        if m.filename.endswith(".json") and PurePosixPath(m.filename).parent.name == "conversations"
    ]
    if not ours:
        raise Refused(
            f"{name}: a zip without conversations.json (ChatGPT's export) or a conversations/ folder "
            "(this app's export)"
        )
    if len(ours) > MAX_CONVERSATIONS:
        raise Refused(f"{name}: {len(ours):,} conversations; the limit is {MAX_CONVERSATIONS:,} in one file")
    total = sum(m.file_size for m in ours)
    conversations = []
    for member in sorted(ours, key=lambda m: m.filename):
        where = f"{name}: {member.filename}"
        conversations.append(gptoss.read(_parse(_member(archive, member, name, total), where), where))
    return FileContents(gptoss.SOURCE, conversations)


def _member(archive: zipfile.ZipFile, member: zipfile.ZipInfo, name: str, unpacked: int) -> bytes:
    """Return a member's bytes; refuse when what is unpacked would pass the cap (a zip bomb, or too large)."""
    if unpacked > MAX_FILE_BYTES:
        raise Refused(
            f"{name}: {_mb(unpacked)} once unpacked, larger than the limit of {_mb(MAX_FILE_BYTES)}"
        )
    try:
        with archive.open(member) as stream:
            return stream.read(MAX_FILE_BYTES + 1)
    # What zipfile raises for a member it cannot read: a corrupt archive (BadZipFile, OSError), a compression
    # method it does not support (NotImplementedError), an encrypted member (RuntimeError), a bad header
    # (ValueError). Each is refused with the member's name; nothing is stored.
    except (zipfile.BadZipFile, NotImplementedError, RuntimeError, ValueError, OSError) as error:
        raise Refused(f"{name}: {member.filename} cannot be unpacked ({error})") from None


def _mb(size: int) -> str:
    return f"{size / 1024 / 1024:,.1f}".removesuffix(".0") + " MB"
