"""Addresses as the config and the CLI write them."""

from __future__ import annotations

import ipaddress


def host_of(address: str) -> str:
    """The host in ``address``: a bare host or IP (v6 too, bracketed or not), or ``HOST:PORT``
    (``[v6]:PORT`` for IPv6)."""
    if address.startswith("["):
        return address[1:].split("]", 1)[0]
    if address.count(":") == 1:  # HOST:PORT; a bare IPv6 address has two or more
        return address.rsplit(":", 1)[0]
    return address


def is_loopback(address: str) -> bool:
    """Whether ``address`` (a host, an IP or ``HOST:PORT``) means this machine only: a loopback
    IP (127.0.0.0/8, ::1) or the name ``localhost`` in any case."""
    host = host_of(address.strip())
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
