"""The browser's SSRF guard, against a canary server on loopback whose hit count must stay 0."""

from __future__ import annotations

import socket
import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote, unquote

import pytest

from inference.runtime.harmony import ToolCall
from inference.tools.net import FetchError, FetchLimits, fetch, parse_allowlist
from inference.tools.toolset import Toolset, tool_run
from tests.fakes import FakeServer, Hit, Reply, serve

LIMITS = FetchLimits(max_bytes=100_000, timeout_s=5, max_redirects=5)
NOTHING = parse_allowlist("")


@pytest.fixture
def good() -> Iterator[FakeServer]:
    """An intranet page on 127.0.0.2, which the tests allowlist, that redirects where it is told."""

    def handler(hit: Hit) -> Reply:
        if hit.path.startswith("/redirect?to="):
            return Reply(
                302,
                headers={"Location": unquote(hit.path.removeprefix("/redirect?to=")), "Set-Cookie": "s=1"},
            )
        return Reply(
            200, b"<html><title>Wiki</title><body>intranet page</body></html>", {"Set-Cookie": "s=1"}
        )

    with serve(handler, host="127.0.0.2") as server:
        yield server


@pytest.fixture
def canary(good: FakeServer) -> Iterator[FakeServer]:
    """The server that must never be reached: 127.0.0.1 on the same port as *good*."""
    with serve(lambda hit: Reply(200, b"CANARY"), host="127.0.0.1", port=good.port) as server:
        yield server


def spellings(port: int) -> list[str]:
    return [
        f"http://127.0.0.1:{port}/",
        f"http://2130706433:{port}/",
        f"http://0x7f000001:{port}/",
        f"http://0x7f.0.0.1:{port}/",
        f"http://0177.0.0.1:{port}/",
        f"http://017700000001:{port}/",
        f"http://127.1:{port}/",
        f"http://127.0.0.1.:{port}/",
        f"http://[::ffff:127.0.0.1]:{port}/",
        f"http://[::ffff:7f00:1]:{port}/",
        f"http://[0:0:0:0:0:ffff:7f00:0001]:{port}/",
        f"http://[::127.0.0.1]:{port}/",
        f"http://[64:ff9b::7f00:1]:{port}/",
        f"http://[64:ff9b::127.0.0.1]:{port}/",
        f"http://[2002:7f00:1::]:{port}/",
        f"http://[::1]:{port}/",
        f"http://localhost:{port}/",
        f"http://app.localhost:{port}/",
        f"http://0.0.0.0:{port}/",
        f"http://0:{port}/",
        f"https://127.0.0.1:{port}/",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://100.100.100.200/latest/meta-data/",
        "http://192.0.0.192/opc/v2/instance/",
        "http://100.64.0.1/",
        "http://10.0.0.1/",
        "http://172.16.0.1/",
        "http://192.168.0.1/",
        "http://224.0.0.1/",
        "http://240.0.0.1/",
        "http://255.255.255.255/",
        "http://[fe80::1]/",
        "http://[fc00::1]/",
        "http://[ff02::1]/",
    ]


def test_every_spelling_of_a_private_address_is_refused(canary: FakeServer) -> None:
    for url in spellings(canary.port):
        with pytest.raises(FetchError, match=r"private or reserved|not public"):
            fetch(url, allowlist=NOTHING, limits=LIMITS)
    assert canary.hits == []


def test_a_name_that_resolves_to_loopback_is_refused(
    canary: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = socket.getaddrinfo

    def resolve(host: str, *args: object, **kwargs: object) -> object:
        if host == "evil.test":
            return real("127.0.0.1", *args, **kwargs)  # type: ignore[arg-type]
        return real(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", resolve)
    with pytest.raises(FetchError, match="private or reserved"):
        fetch(f"http://evil.test:{canary.port}/", allowlist=NOTHING, limits=LIMITS)
    assert canary.hits == []


def test_other_schemes_and_credentials_are_refused(canary: FakeServer) -> None:
    for url in ("file:///etc/passwd", "gopher://127.0.0.1/", "ftp://example.com/", "javascript:alert(1)"):
        with pytest.raises(FetchError, match="Only http and https"):
            fetch(url, allowlist=NOTHING, limits=LIMITS)
    with pytest.raises(FetchError, match="credentials"):
        fetch(
            f"http://user:pw@127.0.0.2:{canary.port}/", allowlist=parse_allowlist("127.0.0.2"), limits=LIMITS
        )
    assert canary.hits == []


def test_an_allowlisted_intranet_page_is_fetched_without_cookies(
    good: FakeServer, canary: FakeServer
) -> None:
    allow = parse_allowlist("127.0.0.2/32")
    page = fetch(f"{good.url}/redirect?to=/page", allowlist=allow, limits=LIMITS)
    assert (page.status, page.url) == (200, f"{good.url}/page")
    assert b"intranet page" in page.body
    assert [h.path for h in good.hits] == ["/redirect?to=/page", "/page"]
    assert all("cookie" not in h.headers and "authorization" not in h.headers for h in good.hits)
    assert canary.hits == []


def test_a_redirect_chain_into_loopback_is_refused(good: FakeServer, canary: FakeServer) -> None:
    allow = parse_allowlist("127.0.0.2/32")
    for into in (
        f"http://127.0.0.1:{canary.port}/",
        f"http://2130706433:{canary.port}/",
        f"http://[::1]:{canary.port}/",
    ):
        second = f"{good.url}/redirect?to={quote(into, safe='')}"
        with pytest.raises(FetchError, match=r"private or reserved|not public"):
            fetch(f"{good.url}/redirect?to={quote(second, safe='')}", allowlist=allow, limits=LIMITS)
    assert canary.hits == []
    with pytest.raises(FetchError, match="redirected more than"):
        fetch(f"{good.url}/redirect?to=/redirect?to=/x", allowlist=allow, limits=FetchLimits(max_redirects=1))


def test_a_dns_answer_that_changes_after_the_check_cannot_redirect_the_connection(
    good: FakeServer, canary: FakeServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    answers = iter(["127.0.0.2"] + ["127.0.0.1"] * 10)
    real = socket.getaddrinfo

    def rebinding(host: str, *args: object, **kwargs: object) -> object:
        if host == "rebind.test":
            return real(next(answers), *args, **kwargs)  # type: ignore[arg-type]
        return real(host, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    page = fetch(f"http://rebind.test:{good.port}/", allowlist=parse_allowlist("127.0.0.2/32"), limits=LIMITS)
    assert b"intranet page" in page.body
    assert good.hits[0].headers["host"] == f"rebind.test:{good.port}"
    assert canary.hits == []


def test_a_disabled_browser_fetches_nothing(canary: FakeServer) -> None:
    call = ToolCall(
        recipient="browser.open",
        channel="analysis",
        content_type=None,
        arguments=f'{{"id": "http://127.0.0.2:{canary.port}/"}}',
    )
    result = tool_run(call=call, toolset=Toolset(python=True), conversation_id=1)
    assert result.error
    assert result.text == "Error: the tool 'browser.open' is not available in this conversation."
    assert result.record["result"] == result.text and result.record["error"] is True
    assert canary.hits == []


def test_an_oversized_page_is_cut_at_the_size_cap(good: FakeServer) -> None:
    page = fetch(good.url, allowlist=parse_allowlist("127.0.0.2"), limits=FetchLimits(max_bytes=20))
    assert page.truncated and len(page.body) == 20


def test_https_goes_to_the_pinned_address_with_the_hosts_name_for_sni_and_the_certificate(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The connection is made to the checked address, yet TLS still verifies the certificate of the name."""
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
         "-days", "1", "-subj", "/CN=wiki.test", "-addext", "subjectAltName=DNS:wiki.test"],
        check=True, capture_output=True,
    )  # fmt: skip
    server_names: list[str | None] = []
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    context.sni_callback = lambda sock, name, ctx: server_names.append(name)  # type: ignore[assignment, misc, return-value]
    with serve(lambda hit: Reply(200, b"<p>secure wiki</p>"), host="127.0.0.2", tls=context) as wiki:
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        allow = parse_allowlist("127.0.0.2")
        resolver = lambda host, port: ["127.0.0.2"]  # noqa: E731
        page = fetch(f"https://wiki.test:{wiki.port}/", allowlist=allow, limits=LIMITS, resolver=resolver)
        assert b"secure wiki" in page.body and server_names == ["wiki.test"]
        # The same address under a name the certificate does not cover is refused.
        with pytest.raises(FetchError, match="could not be fetched"):
            fetch(f"https://other.test:{wiki.port}/", allowlist=allow, limits=LIMITS, resolver=resolver)
    assert [h.headers["host"] for h in wiki.hits] == [f"wiki.test:{wiki.port}"]
