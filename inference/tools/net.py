"""Fetch web pages for the browser tool without reaching anything private (an SSRF guard).

A URL's host is resolved once; every address must be public (or allowlisted by an admin) and the
connection goes to the checked address, pinned, so a DNS answer that changes after the check cannot
redirect it. Addresses are judged after normalising every spelling the resolver or a client would
accept: decimal, hex and octal IPv4 (``2130706433``, ``0x7f.1``, ``0177.0.0.1``), IPv4-mapped and
-compatible IPv6, NAT64 (``64:ff9b::/96``), 6to4 (``2002::/16``) and Teredo. Only http and https;
every redirect is checked again; size, time and redirect caps; no cookies, no credentials.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urljoin, urlsplit

import urllib3

logger = logging.getLogger(__name__)

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], list[str]]

_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))
_6TO4 = ipaddress.IPv6Network("2002::/16")
_TEREDO = ipaddress.IPv6Network("2001::/32")
_COMPAT = ipaddress.IPv6Network("::/96")
# Refused whatever Python's tables say about them: carrier-grade NAT, IETF protocol assignments and
# cloud metadata services (AWS, GCP, Azure, Oracle, Alibaba).
_NEVER_PUBLIC: tuple[Network, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "100.64.0.0/10",
        "192.0.0.0/24",
        "169.254.0.0/16",
        "100.100.100.200/32",
        "fd00:ec2::/32",
        "fec0::/10",
    )
)
USER_AGENT = "gptoss-web browser tool"


class FetchError(Exception):
    """The page could not be fetched; the message says why, for the model and the user."""


@dataclass(frozen=True)
class Allowlist:
    """Private hosts and networks an admin lets the browser reach (an intranet wiki, say)."""

    hosts: frozenset[str] = frozenset()
    networks: tuple[Network, ...] = ()

    def allows_host(self, host: str) -> bool:
        return host.lower().rstrip(".") in self.hosts

    def allows_address(self, address: IPAddress) -> bool:
        return any(address.version == n.version and address in n for n in self.networks)


def parse_allowlist(text: str, *, extra_hosts: Iterable[str] = ()) -> Allowlist:
    """Parse one host or network per line; raise ValueError naming a line that is neither."""
    hosts: set[str] = {h.lower() for h in extra_hosts if h}
    networks: list[Network] = []
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            networks.append(ipaddress.ip_network(line, strict=False))
            continue
        except ValueError:
            pass
        if not all(
            part and all(c.isalnum() or c == "-" for c in part) for part in line.rstrip(".").split(".")
        ):
            raise ValueError(f"{line!r} is neither a host name nor a network such as 10.0.0.0/8")
        hosts.add(line.lower().rstrip("."))
    return Allowlist(hosts=frozenset(hosts), networks=tuple(networks))


def parse_host_address(host: str) -> IPAddress | None:
    """Return the address a literal host names in any spelling, or None for a host name."""
    bare = host.strip("[]")
    try:
        return ipaddress.ip_address(bare.split("%", 1)[0])
    except ValueError:
        pass
    try:
        # inet_aton accepts what resolvers and browsers accept: 127.1, 0x7f000001, 017700000001, ...
        return ipaddress.IPv4Address(socket.inet_aton(bare))
    except (OSError, UnicodeError, ValueError):
        return None


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if any(address in net for net in _NAT64):
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.sixtofour is not None:
        return address.sixtofour
    if address.teredo is not None:
        return address.teredo[1]
    if address in _COMPAT and int(address) > 1:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def address_is_public(address: IPAddress) -> bool:
    """Return whether *address* (and any IPv4 address embedded in it) is an ordinary public address."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.scope_id:
            return False
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return address_is_public(embedded)
        if address in _6TO4 or address in _TEREDO or any(address in n for n in _NAT64):
            return False
    if any(address.version == n.version and address in n for n in _NEVER_PUBLIC):
        return False
    return address.is_global and not (
        address.is_multicast
        or address.is_reserved
        or address.is_unspecified
        or address.is_loopback
        or address.is_link_local
        or address.is_private
    )


def address_allowed(address: IPAddress, allowlist: Allowlist) -> bool:
    """Return whether the browser may connect to *address*."""
    if allowlist.allows_address(address):
        return True
    if (
        isinstance(address, ipaddress.IPv6Address)
        and address.ipv4_mapped
        and allowlist.allows_address(address.ipv4_mapped)
    ):
        return True
    return address_is_public(address)


def system_resolver(host: str, port: int) -> list[str]:
    """Resolve *host* with the system resolver; raise FetchError when it has no answer."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as error:
        raise FetchError(f"The host {host!r} could not be resolved ({error}).") from error
    return [str(info[4][0]) for info in infos]


@dataclass(frozen=True)
class Target:
    """A URL checked for fetching: where to connect and what to say in the Host header."""

    url: str
    scheme: str
    host: str
    port: int
    address: str
    request_target: str


def check_url(url: str, allowlist: Allowlist, *, resolver: Resolver = system_resolver) -> Target:
    """Return where *url* may be fetched from, pinned to one checked address; raise FetchError if nowhere."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as error:
        raise FetchError(f"{url!r} is not a valid URL ({error}).") from error
    scheme = parts.scheme.lower()
    if scheme not in {"http", "https"}:
        raise FetchError(f"Only http and https pages can be opened, not {scheme or 'this'!r}.")
    if parts.username is not None or parts.password is not None:
        raise FetchError("URLs with credentials are not opened.")
    host = (parts.hostname or "").rstrip(".")
    if not host:
        raise FetchError(f"{url!r} has no host.")
    port = port or (443 if scheme == "https" else 80)
    literal = parse_host_address(host)
    if literal is not None:
        candidates = [literal]
    elif host == "localhost" or host.endswith(".localhost"):
        raise FetchError(f"The address of {host!r} is not public; it was not fetched.")
    else:
        candidates = []
        for answer in resolver(host, port):
            parsed = parse_host_address(answer)
            if parsed is None:
                raise FetchError(f"The host {host!r} resolved to {answer!r}, which is not an address.")
            candidates.append(parsed)
        if not candidates:
            raise FetchError(f"The host {host!r} has no address.")
    host_allowed = literal is None and allowlist.allows_host(host)
    refused = [a for a in candidates if not (host_allowed or address_allowed(a, allowlist))]
    if refused:
        # One private answer refuses the host: a name that is partly private is not trusted at all.
        logger.info("browser refused %s: resolves to non-public %s", host, refused[0])
        raise FetchError(f"The address of {host!r} is private or reserved; it was not fetched.")
    target = parts.path or "/"
    if parts.query:
        target += "?" + parts.query
    return Target(
        url=url,
        scheme=scheme,
        host=host,
        port=port,
        address=str(candidates[0]),
        request_target=target,
    )


@dataclass(frozen=True)
class Fetched:
    url: str
    status: int
    content_type: str
    body: bytes
    truncated: bool


@dataclass(frozen=True)
class FetchLimits:
    max_bytes: int = 2 * 1024 * 1024
    timeout_s: float = 10.0
    max_redirects: int = 5


def _request(target: Target, limits: FetchLimits, deadline: float, headers: dict[str, str]) -> Fetched:
    left = deadline - time.monotonic()
    if left <= 0:
        raise FetchError("The page took too long to fetch.")
    timeout = urllib3.Timeout(connect=min(left, limits.timeout_s), read=min(left, limits.timeout_s))
    host_header = target.host if target.port in (80, 443) else f"{target.host}:{target.port}"
    if ":" in target.host and not target.host.startswith("["):
        host_header = f"[{target.host}]" if target.port in (80, 443) else f"[{target.host}]:{target.port}"
    pool: urllib3.HTTPConnectionPool
    if target.scheme == "https":
        server_name = None if parse_host_address(target.host) else target.host
        pool = urllib3.HTTPSConnectionPool(
            target.address,
            target.port,
            timeout=timeout,
            retries=False,
            server_hostname=server_name,
            assert_hostname=server_name or False,
            maxsize=1,
        )
    else:
        pool = urllib3.HTTPConnectionPool(
            target.address, target.port, timeout=timeout, retries=False, maxsize=1
        )
    try:
        response = pool.urlopen(
            "GET",
            target.request_target,
            headers={**headers, "Host": host_header},
            redirect=False,
            preload_content=False,
            assert_same_host=False,
        )
        body = bytearray()
        truncated = False
        for chunk in response.stream(65536):
            body += chunk
            if len(body) > limits.max_bytes:
                del body[limits.max_bytes :]
                truncated = True
                break
            if time.monotonic() > deadline:
                raise FetchError("The page took too long to fetch.")
        location = response.headers.get("Location", "")
        response.release_conn()
        return Fetched(
            url=location,  # filled in by the caller: the Location header travels here for redirects
            status=response.status,
            content_type=response.headers.get("Content-Type", ""),
            body=bytes(body),
            truncated=truncated,
        )
    except urllib3.exceptions.HTTPError as error:
        raise FetchError(f"The page could not be fetched ({type(error).__name__}: {error}).") from error
    finally:
        pool.close()


def fetch(
    url: str,
    *,
    allowlist: Allowlist,
    limits: FetchLimits,
    resolver: Resolver = system_resolver,
    accept: str = "text/html,text/plain;q=0.9,*/*;q=0.5",
) -> Fetched:
    """GET *url*, following redirects that pass the same checks; raise FetchError with a readable reason."""
    deadline = time.monotonic() + limits.timeout_s
    headers = {"User-Agent": USER_AGENT, "Accept": accept, "Accept-Encoding": "identity"}
    current = url
    for _ in range(limits.max_redirects + 1):
        target = check_url(current, allowlist, resolver=resolver)
        result = _request(target, limits, deadline, headers)
        if result.status in (301, 302, 303, 307, 308) and result.url:
            current = urljoin(current, result.url)
            continue
        return Fetched(
            url=current,
            status=result.status,
            content_type=result.content_type,
            body=result.body,
            truncated=result.truncated,
        )
    raise FetchError(f"The page redirected more than {limits.max_redirects} times.")
