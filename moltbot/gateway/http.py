"""The HTTP side of the gateway port (websockets' ``process_request`` hook).

Checks run in this order on every request, before any WebSocket upgrade:
``Host`` (DNS rebinding, 421) -> credentials in the URL (403) -> method (405) -> for an
upgrade: path and ``Origin`` (403) -> otherwise a GET route (``/``, ``/app.js``,
``/style.css``, ``/healthz``, ``/readyz``; anything else 404). ``secure_headers`` adds the
security headers to every response, the 101 of an accepted upgrade included.
"""

from __future__ import annotations

import asyncio
import email.utils
import http
import logging
from importlib import resources
from urllib.parse import parse_qsl, urlsplit

from websockets.datastructures import Headers
from websockets.http11 import Request, Response

from moltbot.errors import MoltbotError
from moltbot.gateway.backend import Backend
from moltbot.security.origin import OriginPolicy

log = logging.getLogger("moltbot.gateway")

# img-src blob: lets the page show the pictures its user picked, from memory (never a page's)
CSP = (
    "default-src 'self'; img-src 'self' blob:; object-src 'none'; base-uri 'none'; "
    "frame-ancestors 'none'"
)
SECURITY_HEADERS = (
    ("Content-Security-Policy", CSP),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Frame-Options", "DENY"),
    ("Cache-Control", "no-store"),
)
WS_PATHS = ("/", "/ws")
CREDENTIAL_PARAMS = frozenset(
    {"token", "password", "session", "auth", "access_token", "key", "secret", "api_key"}
)
STATIC_FILES = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/style.css": ("style.css", "text/css; charset=utf-8"),
}
READY_TIMEOUT_S = 2.0


def load_static() -> dict[str, tuple[bytes, str]]:
    """The page's files, read once from the installed package."""
    folder = resources.files("moltbot.gateway").joinpath("static")
    return {
        route: (folder.joinpath(name).read_bytes(), ctype)
        for route, (name, ctype) in STATIC_FILES.items()
    }


def response(
    status: http.HTTPStatus, body: bytes | str, content_type: str = "text/plain; charset=utf-8"
) -> Response:
    data = body.encode("utf-8") if isinstance(body, str) else body
    headers = Headers(
        [
            ("Date", email.utils.formatdate(usegmt=True)),
            ("Connection", "close"),
            ("Content-Length", str(len(data))),
            ("Content-Type", content_type),
        ]
    )
    return Response(status.value, status.phrase, headers, data)


def secure_headers(headers: Headers) -> None:
    for name, value in SECURITY_HEADERS:
        if name in headers:
            del headers[name]
        headers[name] = value


def is_upgrade(request: Request) -> bool:
    return any(v.strip().lower() == "websocket" for v in request.headers.get_all("Upgrade"))


def credentials_in_url(path: str) -> bool:
    query = urlsplit(path).query
    return any(k.lower() in CREDENTIAL_PARAMS for k, _ in parse_qsl(query, keep_blank_values=True))


class HttpFront:
    """Answers plain HTTP requests and vets WebSocket upgrades (None = go ahead)."""

    def __init__(self, policy: OriginPolicy, backend: Backend) -> None:
        self.policy = policy
        self._backend = backend
        self._static = load_static()

    async def process(self, request: Request) -> Response | None:
        if not self.policy.host_allowed(request.headers.get("Host")):
            return response(http.HTTPStatus.MISDIRECTED_REQUEST, "unknown Host\n")
        if credentials_in_url(request.path):
            return response(
                http.HTTPStatus.FORBIDDEN,
                "credentials are never accepted in URLs: send them in the connect frame\n",
            )
        if request.method != "GET":
            refused = response(http.HTTPStatus.METHOD_NOT_ALLOWED, "only GET is served\n")
            refused.headers["Allow"] = "GET"
            return refused
        path = urlsplit(request.path).path
        if is_upgrade(request):
            if path not in WS_PATHS:
                return response(http.HTTPStatus.NOT_FOUND, "no WebSocket here\n")
            origins = request.headers.get_all("Origin")
            if len(origins) > 1 or not self.policy.origin_allowed(origins[0] if origins else None):
                return response(http.HTTPStatus.FORBIDDEN, "Origin not allowed\n")
            return None
        return await self.route(path)

    async def route(self, path: str) -> Response:
        if path in self._static:
            body, content_type = self._static[path]
            return response(http.HTTPStatus.OK, body, content_type)
        if path == "/healthz":
            return response(http.HTTPStatus.OK, "ok")
        if path == "/readyz":
            if await self._ready():
                return response(http.HTTPStatus.OK, "ready")
            return response(http.HTTPStatus.SERVICE_UNAVAILABLE, "not ready")
        return response(http.HTTPStatus.NOT_FOUND, "not found\n")

    async def _ready(self) -> bool:
        try:
            async with asyncio.timeout(READY_TIMEOUT_S):
                return bool(await self._backend.ready())
        except (MoltbotError, TimeoutError):
            return False
        except Exception:
            log.exception("backend.ready() failed")
            return False
