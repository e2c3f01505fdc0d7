"""The client's address: a spoofed X-Forwarded-For never moves the login throttle, the logs or the audit.

Without a trusted proxy (make run) the client is the TCP peer. Behind one (deploy/) it is the single address
that proxy wrote, the right-most one; the nginx case runs through the real site in tests/test_deploy.py.
"""

from __future__ import annotations

import ipaddress
import logging
from typing import Any

import pytest
from axes.models import AccessAttempt

from gptoss_web.client_ip import ClientAddressMiddleware
from tests.factories import PASSWORD, UserFactory
from tests.live import live_web, sign_in

LOOPBACK = [ipaddress.ip_network("127.0.0.1"), ipaddress.ip_network("::1")]


async def seen_by_the_app(
    peer: tuple[str, int] | None,
    headers: list[tuple[bytes, bytes]],
    *,
    trusted: list[Any] = LOOPBACK,
    kind: str = "http",
) -> dict[str, Any]:
    """Send one request through the middleware; return the scope the app received."""
    received: dict[str, Any] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        received.update(scope)

    scope = {"type": kind, "client": peer, "headers": headers, "scheme": "http" if kind == "http" else "ws",
             "method": "GET", "path": "/accounts/login/"}  # fmt: skip
    await ClientAddressMiddleware(app, trusted)(scope, None, None)  # type: ignore[arg-type]
    return received


async def test_an_untrusted_peer_is_the_client_whatever_it_forwards() -> None:
    scope = await seen_by_the_app(("198.51.100.7", 4242), [(b"x-forwarded-for", b"10.9.0.1")])
    assert scope["client"] == ("198.51.100.7", 4242)


async def test_without_trusted_proxies_even_loopback_is_not_believed() -> None:
    scope = await seen_by_the_app(("127.0.0.1", 4242), [(b"x-forwarded-for", b"10.9.0.1")], trusted=[])
    assert scope["client"] == ("127.0.0.1", 4242)


async def test_a_trusted_proxy_gives_the_address_and_the_scheme_it_wrote() -> None:
    headers = [(b"x-forwarded-for", b"203.0.113.9"), (b"x-forwarded-proto", b"https")]
    scope = await seen_by_the_app(("127.0.0.1", 4242), headers)
    assert scope["client"] == ("203.0.113.9", 0) and scope["scheme"] == "https"


@pytest.mark.parametrize(
    "headers",
    [
        [(b"x-forwarded-for", b"10.9.0.1, 127.0.0.1, 203.0.113.9")],
        [(b"X-Forwarded-For", b"10.9.0.1"), (b"X-Forwarded-For", b"203.0.113.9")],
        [(b"x-forwarded-for", b"10.9.0.1,203.0.113.9 ")],
    ],
)
async def test_of_several_addresses_the_right_most_counts_never_the_client_written_left_most(
    headers: list[tuple[bytes, bytes]],
) -> None:
    scope = await seen_by_the_app(("127.0.0.1", 4242), headers)
    assert scope["client"] == ("203.0.113.9", 0)


@pytest.mark.parametrize("value", [b"", b"unknown", b"203.0.113.9:8080", b"10.9.0.1, nonsense", b"300.1.1.1"])
async def test_a_malformed_header_leaves_the_proxy_as_the_client(value: bytes) -> None:
    scope = await seen_by_the_app(("127.0.0.1", 4242), [(b"x-forwarded-for", value)])
    assert scope["client"] == ("127.0.0.1", 4242)


async def test_ipv6_proxies_and_clients() -> None:
    v6 = await seen_by_the_app(("::1", 4242), [(b"x-forwarded-for", b"2001:db8::17")])
    assert v6["client"] == ("2001:db8::17", 0)
    # Daphne listening on :: reports IPv4 peers as IPv4-mapped IPv6: 127.0.0.1 is still trusted.
    mapped = await seen_by_the_app(("::ffff:127.0.0.1", 4242), [(b"x-forwarded-for", b"::ffff:203.0.113.9")])
    assert mapped["client"] == ("203.0.113.9", 0)
    network = await seen_by_the_app(
        ("fd00::5", 1), [(b"x-forwarded-for", b"2001:db8::1")], trusted=[ipaddress.ip_network("fd00::/64")]
    )
    assert network["client"] == ("2001:db8::1", 0)
    outside = await seen_by_the_app(
        ("fd01::5", 1), [(b"x-forwarded-for", b"2001:db8::1")], trusted=[ipaddress.ip_network("fd00::/64")]
    )
    assert outside["client"] == ("fd01::5", 1)


async def test_websockets_get_the_same_address_and_the_scheme_the_proxy_saw() -> None:
    headers = [(b"x-forwarded-for", b"203.0.113.9"), (b"x-forwarded-proto", b"https")]
    scope = await seen_by_the_app(("127.0.0.1", 4242), headers, kind="websocket")
    assert scope["client"] == ("203.0.113.9", 0) and scope["scheme"] == "wss"
    untrusted = await seen_by_the_app(("198.51.100.7", 1), headers, kind="websocket")
    assert untrusted["client"] == ("198.51.100.7", 1) and untrusted["scheme"] == "ws"


@pytest.mark.parametrize(("accept", "lines"), [(True, ["WSCONNECT", "WSDISCONNECT"]), (False, ["WSREJECT"])])
async def test_the_access_log_shows_websockets_with_the_resolved_address(
    caplog: pytest.LogCaptureFixture, accept: bool, lines: list[str]
) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "websocket.accept"} if accept else {"type": "websocket.close", "code": 403})

    async def send(message: dict[str, Any]) -> None:
        pass

    scope = {"type": "websocket", "client": ("127.0.0.1", 5), "path": "/ws/conversations/7/",
             "headers": [(b"x-forwarded-for", b"203.0.113.9")]}  # fmt: skip
    with caplog.at_level(logging.INFO, logger="gptoss_web.access"):
        await ClientAddressMiddleware(app, LOOPBACK)(scope, None, send)  # type: ignore[arg-type]
    assert caplog.messages == [f'203.0.113.9 "{line} /ws/conversations/7/"' for line in lines]


async def test_a_peer_without_an_address_stays_without_one() -> None:
    """Daphne on a unix socket has no peer address: nothing to trust, and no header invents one."""
    scope = await seen_by_the_app(None, [(b"x-forwarded-for", b"203.0.113.9")])
    assert scope["client"] is None


async def test_the_access_log_shows_the_resolved_address(caplog: pytest.LogCaptureFixture) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 429, "headers": []})
        await send({"type": "http.response.body", "body": b"Too many attempts"})

    async def send(message: dict[str, Any]) -> None:
        pass

    scope = {"type": "http", "client": ("127.0.0.1", 5), "method": "POST", "path": "/accounts/login/",
             "headers": [(b"x-forwarded-for", b"10.9.0.1, 203.0.113.9")]}  # fmt: skip
    with caplog.at_level(logging.INFO, logger="gptoss_web.access"):
        await ClientAddressMiddleware(app, LOOPBACK)(scope, None, send)  # type: ignore[arg-type]
    assert caplog.messages == ['203.0.113.9 "POST /accounts/login/" 429 17']


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_spoofed_x_forwarded_for_does_not_escape_the_lock_out_of_make_runs_daphne() -> None:
    """make run has no proxy: six wrong passwords, each claiming another address, lock the account out."""
    UserFactory(username="alice")
    with live_web() as stack:
        answers = [
            sign_in(stack.base_url, "alice", "wrong", headers={"X-Forwarded-For": f"10.9.0.{n}, 127.0.0.1"})
            for n in range(6)
        ]
        # GPTOSS_LOGIN_FAILURE_LIMIT=5: the fifth failure locks the account out for this address.
        assert [status for status, _ in answers] == [200] * 4 + [429] * 2
        assert "Too many attempts" in answers[5][1]
        status, page = sign_in(stack.base_url, "alice", PASSWORD, headers={"X-Forwarded-For": "10.9.0.99"})
        assert status == 429 and "Too many attempts" in page
        log = stack.output("web")
    assert list(AccessAttempt.objects.values_list("ip_address", flat=True)) == ["127.0.0.1"]
    assert '127.0.0.1 "POST /accounts/login/" 429' in log
    assert "10.9.0." not in log


@pytest.mark.django_db
def test_addresses_of_one_ipv6_64_network_share_one_lock_out() -> None:
    """An IPv6 client holds a whole /64: a new address per try must not escape the lock-out."""
    from django.test import Client
    from django.urls import reverse

    UserFactory(username="alice")
    client = Client()
    answers = [
        client.post(
            reverse("login"), {"username": "alice", "password": "wrong"}, REMOTE_ADDR=f"2001:db8:1:2::{n:x}"
        ).status_code
        for n in range(1, 7)
    ]
    assert answers == [200] * 4 + [429] * 2
    right = client.post(
        reverse("login"), {"username": "alice", "password": PASSWORD}, REMOTE_ADDR="2001:db8:1:2:ffff::1"
    )
    assert right.status_code == 429
    # Another /64 (another household or customer) is not locked out by it.
    other = client.post(
        reverse("login"), {"username": "alice", "password": PASSWORD}, REMOTE_ADDR="2001:db8:1:3::1"
    )
    assert other.status_code == 302
    # IPv4 addresses stay themselves.
    assert remote_addr_of("192.0.2.7") == "192.0.2.7"


def remote_addr_of(address: str) -> str | None:
    from django.test import RequestFactory

    from gptoss_web.client_ip import remote_addr

    return remote_addr(RequestFactory().get("/", REMOTE_ADDR=address))
