"""The client's address, one for the whole app: the real peer, or what the one trusted reverse proxy says.

Daphne's own `--proxy-headers` believes the left-most X-Forwarded-For address from any peer, and the client
writes that address itself: a login throttle keyed on it was bypassed by sending a new address with each try.
Daphne therefore runs without it (`gptoss_web.run.daphne_argv`), and `ClientAddressMiddleware` sets
`scope["client"]` (Django's REMOTE_ADDR, what django-axes throttles on, logs and stores) from X-Forwarded-For
only when the direct peer is one of GPTOSS_TRUSTED_PROXIES, taking the right-most address: the one that proxy
wrote (our nginx site overwrites the header with `$remote_addr`, so it holds exactly one). It also writes the
access log with that address, since Daphne's own would show the proxy's.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from django.http import HttpRequest

logger = logging.getLogger(__name__)
access_logger = logging.getLogger("gptoss_web.access")

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
# The IPv6 prefix one client holds (RFC 6177: a site gets at least a /64, usually a /56 or /48).
THROTTLE_IPV6_PREFIX = 64


def parse_address(text: str) -> Address | None:
    """Return *text* as one IP address (an IPv4-mapped IPv6 address as IPv4), or None if it is not one."""
    try:
        address = ipaddress.ip_address(text.strip())
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def remote_addr(request: HttpRequest) -> str | None:
    """Return the address django-axes throttles on: REMOTE_ADDR, which ClientAddressMiddleware has set.

    Never a header: axes would otherwise read X-Forwarded-For itself when django-ipware is installed. An IPv6
    client counts as its /64 network (given as that network's first address): a single host or household
    is handed a whole /64, and a new address per try would otherwise escape the lock-out.
    """
    text = request.META.get("REMOTE_ADDR")
    address = parse_address(text) if text else None
    if isinstance(address, ipaddress.IPv6Address):
        return str(ipaddress.IPv6Network((address, THROTTLE_IPV6_PREFIX), strict=False).network_address)
    return text


class ClientAddressMiddleware:
    """Resolve the client's address of HTTP and WebSocket scopes, and log each request with it."""

    def __init__(self, app: ASGIApp, trusted_proxies: Iterable[Network]) -> None:
        self.app = app
        self.trusted_proxies = tuple(trusted_proxies)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        scope = self.resolve(scope)
        client = scope["client"][0] if scope.get("client") else "-"
        if scope["type"] == "http":
            await self.app(scope, receive, _logged_http(send, client, scope))
        else:
            await self._websocket(scope, receive, send, client)

    def resolve(self, scope: Scope) -> Scope:
        """Return *scope* with the client (and scheme) the trusted proxy forwarded, if its peer is one."""
        peer = scope.get("client")
        if not peer or not self.trusted_proxies:
            return scope
        peer_address = parse_address(str(peer[0]))
        if peer_address is None or not any(peer_address in network for network in self.trusted_proxies):
            return scope
        headers: dict[bytes, list[str]] = {}
        for name, value in scope.get("headers", []):
            headers.setdefault(name.lower(), []).append(value.decode("latin-1"))
        if b"x-forwarded-for" not in headers:
            return scope
        # Repeated headers read as one list; the right-most entry is the one the trusted proxy added.
        last = ",".join(headers[b"x-forwarded-for"]).rsplit(",", 1)[-1]
        address = parse_address(last)
        if address is None:
            logger.warning(
                "X-Forwarded-For from the trusted proxy %s ends in %r, not an IP address; using the proxy's",
                peer[0], last[:64],
            )  # fmt: skip
            return scope
        resolved = {**scope, "client": (str(address), 0)}
        proto = headers.get(b"x-forwarded-proto", [""])[-1].strip().lower()
        if proto in ("http", "https") and scope["type"] == "websocket":
            resolved["scheme"] = "wss" if proto == "https" else "ws"
        elif proto in ("http", "https"):
            resolved["scheme"] = proto
        return resolved

    async def _websocket(self, scope: Scope, receive: Receive, send: Send, client: str) -> None:
        accepted = False

        async def send_logged(message: Message) -> None:
            nonlocal accepted
            if message["type"] == "websocket.accept":
                accepted = True
                access_logger.info('%s "WSCONNECT %s"', client, scope["path"])
            elif message["type"] == "websocket.close" and not accepted:
                access_logger.info('%s "WSREJECT %s"', client, scope["path"])
            await send(message)

        try:
            await self.app(scope, receive, send_logged)
        finally:
            if accepted:
                access_logger.info('%s "WSDISCONNECT %s"', client, scope["path"])


def _logged_http(send: Send, client: str, scope: Scope) -> Send:
    """Wrap *send* to log the request, its status and its size once the response is complete."""
    status = 0
    size = 0

    async def send_logged(message: Message) -> None:
        nonlocal status, size
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            size += len(message.get("body", b""))
            if not message.get("more_body", False):
                access_logger.info('%s "%s %s" %s %s', client, scope["method"], scope["path"], status, size)
        await send(message)

    return send_logged
