"""The SSRF guard shared by web_fetch, the plugins' HTTP and the bash sandbox's egress proxy.

A host is resolved here and every address it resolves to must be public: not private, loopback,
link-local, multicast, reserved, unspecified, CGNAT, a cloud metadata address, or a v6 form that
embeds such a v4 address. Callers connect to the vetted address, so a second DNS answer cannot
swap in another one (DNS rebinding).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable

from moltbot.errors import FetchRefused

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], Awaitable[list[str]]]

_METADATA = frozenset(
    {ipaddress.ip_address("169.254.169.254"), ipaddress.ip_address("fd00:ec2::254")}
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def address_allowed(ip: IPAddress) -> bool:
    """True only for globally routable unicast addresses (and no v6 wrapper of a bad v4 one)."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = [ip.ipv4_mapped, ip.sixtofour]
        if ip.teredo:
            embedded.extend(ip.teredo)
        if ip in _NAT64:
            embedded.append(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
        if any(v4 is not None and not address_allowed(v4) for v4 in embedded):
            return False
    bad = (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or ip in _METADATA
    )
    return ip.is_global and not bad


async def system_resolver(host: str, port: int) -> list[str]:
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


async def vet_host(
    host: str, port: int, resolve: Resolver, *, test_loopback_port: int | None = None
) -> str:
    """The one address to connect to for ``host``: FetchRefused unless every address it
    resolves to is public (``address_allowed``). The rules of web_fetch, the plugins' HTTP and
    the bash sandbox's egress proxy alike. ``test_loopback_port``: tests only, never config."""
    try:
        candidates = [host] if _is_ip(host) else await resolve(host, port)
    except OSError as exc:
        raise FetchRefused(f"the host {host} could not be resolved") from exc
    addresses = [ipaddress.ip_address(a.split("%", 1)[0]) for a in candidates]
    if not addresses:
        raise FetchRefused(f"the host {host} has no address")
    for ip in addresses:
        test = test_loopback_port is not None and ip.is_loopback and port == test_loopback_port
        if not (address_allowed(ip) or test):
            raise FetchRefused(f"{host} resolves to a private, local or reserved address; refused")
    return str(addresses[0])


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
