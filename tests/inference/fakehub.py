"""A fake Hugging Face Hub served for real on loopback: the HTTP API huggingface_hub calls to download.

It answers model info (`/api/models/{repo}/revision/{rev}?blobs=True`, with siblings and `lfs.sha256`) and
HEAD/GET `/{repo}/resolve/{rev}/{file}` with the headers huggingface_hub reads (`X-Repo-Commit`, `ETag`,
`X-Linked-Etag`, `X-Linked-Size`, `Content-Length`) and Range requests (206 + `Content-Range`) for resume.
Faults are switched on per test: a required token, a fixed status, a connection cut after N bytes, a file
served with other bytes than its metadata promises.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import unquote, urlsplit

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@dataclass
class HubState:
    repos: dict[str, dict[str, bytes]] = field(default_factory=dict)
    token: str | None = None  # when set, requests must carry "Authorization: Bearer <token>"
    status: int | None = None  # when set, every request gets this status
    cut_after: int | None = None  # GET bodies stop (connection closed) after this many bytes ...
    cuts_left: int = 0  # ... this many times
    served_instead: dict[str, bytes] = field(default_factory=dict)  # filename -> bytes served instead
    requests: list[tuple[str, str, str | None]] = field(default_factory=list)  # (method, path, Range)


def _handler(state: HubState) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:
            pass

        def _refuse(self) -> bool:
            state.requests.append((self.command, self.path, self.headers.get("Range")))
            if state.token is not None and self.headers.get("Authorization") != f"Bearer {state.token}":
                self._empty(401, {"X-Error-Message": "Invalid credentials in Authorization header"})
                return True
            if state.status is not None:
                self._empty(state.status)
                return True
            return False

        def _empty(self, status: int, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _file(self) -> tuple[str, bytes, bytes] | None:
            match = re.fullmatch(r"/(.+)/resolve/([^/]+)/(.+)", urlsplit(self.path).path)
            if match is None:
                return None
            repo, filename = unquote(match.group(1)), unquote(match.group(3))
            data = state.repos.get(repo, {}).get(filename)
            if data is None:
                return None
            return filename, data, state.served_instead.get(filename, data)

        def do_HEAD(self) -> None:
            if self._refuse():
                return
            found = self._file()
            if found is None:
                self._empty(404, {"X-Error-Code": "EntryNotFound", "X-Repo-Commit": COMMIT})
                return
            _, data, _ = found
            sha = hashlib.sha256(data).hexdigest()
            self.send_response(200)
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("ETag", f'"{sha}"')
            self.send_header("X-Linked-Etag", f'"{sha}"')
            self.send_header("X-Linked-Size", str(len(data)))
            self.send_header("Content-Length", str(len(data)))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()

        def do_GET(self) -> None:
            if self._refuse():
                return
            path = urlsplit(self.path).path
            info = re.fullmatch(r"/api/models/(.+)/revision/([^/]+)", path)
            if info is not None:
                self._model_info(unquote(info.group(1)))
                return
            found = self._file()
            if found is None:
                self._empty(404, {"X-Error-Code": "EntryNotFound"})
                return
            _, data, body = found
            start = 0
            ranged = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
            if ranged:
                start = int(ranged.group(1))
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(len(body) - start))
            self.send_header("X-Repo-Commit", COMMIT)
            self.send_header("ETag", f'"{hashlib.sha256(data).hexdigest()}"')
            self.end_headers()
            chunk = body[start:]
            if state.cut_after is not None and state.cuts_left > 0:
                state.cuts_left -= 1
                self.wfile.write(chunk[: state.cut_after])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)
                return
            self.wfile.write(chunk)

        def _model_info(self, repo: str) -> None:
            files = state.repos.get(repo)
            if files is None:
                self._empty(404, {"X-Error-Code": "RepoNotFound"})
                return
            siblings = [
                {
                    "rfilename": name,
                    "size": len(data),
                    "blobId": hashlib.sha1(data).hexdigest(),  # noqa: S324 (git's own object id)
                    "lfs": {
                        "size": len(data),
                        "sha256": hashlib.sha256(data).hexdigest(),
                        "pointerSize": 134,
                    },
                }
                for name, data in files.items()
            ]
            body = json.dumps({"id": repo, "modelId": repo, "sha": COMMIT, "siblings": siblings}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    return Handler


@contextmanager
def fake_hub(state: HubState) -> Iterator[str]:
    """Serve *state* on a free loopback port; yield the endpoint URL (for HF_ENDPOINT)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
