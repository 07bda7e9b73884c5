"""Origin and Host checks for the gateway (cross-site WebSocket hijacking, DNS rebinding).

A browser always sends ``Origin`` on a WebSocket upgrade; the gateway accepts only its own
origin (``http(s)://127.0.0.1:PORT``, ``http(s)://localhost:PORT``, the bound host) and those
listed in ``gateway.allowed_origins``. A missing ``Origin`` means a non-browser client (the
CLI) and is allowed: such clients still have to authenticate. ``Host`` must name the bound host
(or a loopback name, or an allowed origin's host) with the gateway's port, so a page served from
an attacker's DNS name that resolves to 127.0.0.1 is refused.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")
WILDCARD_HOSTS = ("", "0.0.0.0", "::")


def _bracket(host: str) -> str:
    """IPv6 literals appear bracketed in URLs and Host headers."""
    return f"[{host}]" if ":" in host and not host.startswith("[") else host


def normalize_origin(origin: str) -> str | None:
    """``scheme://host[:port]`` in lower case, or None if it is not an http(s) origin."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        return None
    host = _bracket(parts.hostname.lower())
    default = 80 if scheme == "http" else 443
    return f"{scheme}://{host}" if port in (None, default) else f"{scheme}://{host}:{port}"


class OriginPolicy:
    """Which ``Origin`` and ``Host`` values a gateway bound to ``host:port`` accepts."""

    def __init__(self, bound_host: str, port: int, allowed_origins: Iterable[str] = ()) -> None:
        names = list(LOOPBACK_NAMES)
        if bound_host not in WILDCARD_HOSTS:
            names.append(_bracket(bound_host.lower()))
        self.port = port
        self._hosts = {f"{name}:{port}" for name in names}
        self._origins: set[str] = set()
        for name in names:
            for scheme in ("http", "https"):
                found = normalize_origin(f"{scheme}://{name}:{port}")
                if found:
                    self._origins.add(found)
        for extra in allowed_origins:
            found = normalize_origin(extra)
            if found is None:
                continue
            self._origins.add(found)
            netloc = urlsplit(found).netloc
            self._hosts.add(netloc)
            if ":" not in netloc.rsplit("]", 1)[-1]:
                default = 80 if found.startswith("http:") else 443
                self._hosts.add(f"{netloc}:{default}")

    @property
    def origins(self) -> frozenset[str]:
        return frozenset(self._origins)

    def origin_allowed(self, origin: str | None) -> bool:
        """A missing Origin (non-browser client) is allowed; ``null`` and strangers are not."""
        if origin is None:
            return True
        found = normalize_origin(origin)
        return found is not None and found in self._origins

    def host_allowed(self, host: str | None) -> bool:
        if not host:
            return False
        host = host.strip().lower()
        if host in self._hosts:
            return True
        # Some clients omit a default port; accept it only when we actually listen there.
        return self.port in (80, 443) and f"{host}:{self.port}" in self._hosts
