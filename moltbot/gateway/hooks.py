"""Webhooks on the gateway's port: ``GET|POST /hooks/<channel>/<account>``.

websockets parses only bodiless GET requests, so a connection whose request line names
``/hooks/`` is taken aside before websockets sees it (``HookConnection``, the
``create_connection`` factory websockets offers for this): its head and body (``Content-Length``
only, at most ``MAX_BODY``) are read here, the request is handed to the ``Hooks`` router as a
:class:`~moltbot.channels.hooks.HookRequest`, and its ``HookReply`` is written back, with the
same security headers as every other answer; then the connection closes. Every other
connection goes to websockets untouched, byte for byte.

No ``Host`` or ``Origin`` check applies here: webhooks come from a platform through a public
name (a tunnel, a reverse proxy), not from a browser, and each channel authenticates its own
(Meta's signature). The answer must come within ``HOOK_TIMEOUT_S`` (inside websockets' opening
timeout), else 503 and the platform delivers again.
"""

from __future__ import annotations

import asyncio
import http
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.server import ServerConnection

from moltbot.channels.hooks import MAX_BODY, HookReply, HookRequest
from moltbot.clock import Clock
from moltbot.errors import MoltbotError
from moltbot.gateway.http import response, secure_headers
from moltbot.security.ratelimit import TokenBucket, client_key

log = logging.getLogger("moltbot.gateway")

Hooks = Callable[[HookRequest], Awaitable[HookReply]]
Record = Callable[[str, dict[str, Any]], None]
HOOK_PREFIX = b"/hooks/"
MAX_HEAD = 16 * 1024
HOOK_TIMEOUT_S = 8.0
REFUSAL_AUDIT_S = 60.0  # one webhook_refused record per address and minute at most
MAX_CLIENTS = 1024  # addresses remembered by the limiter and the audit throttle
_ROUTE = re.compile(
    r"^/hooks/(?P<channel>[a-z][a-z0-9_-]{0,31})/(?P<account>[A-Za-z0-9][A-Za-z0-9_.-]{0,63})/?$"
)


class HookGate:
    """What stands between the socket and the channels' webhooks: no router, 404; a token
    bucket per address (IPv6: per /64), 429 past it; a refusal the channel reports (a bad
    signature) is audited, at most once a minute per address."""

    def __init__(
        self, hooks: Hooks | None, record: Record, clock: Clock, rate: float, burst: int
    ) -> None:
        self._hooks, self._record, self._clock = hooks, record, clock
        self._rate, self._burst = rate, burst
        self._buckets: dict[str, TokenBucket] = {}
        self._audited: dict[str, float] = {}

    async def __call__(self, req: HookRequest) -> HookReply:
        if self._hooks is None:
            return HookReply(status=404, body="no webhooks here\n")
        key = client_key(req.address)
        if len(self._buckets) >= MAX_CLIENTS and key not in self._buckets:
            self._buckets.clear()
        bucket = self._buckets.setdefault(key, TokenBucket(self._rate, self._burst, self._clock))
        if bucket.take() > 0:
            return HookReply(status=429, body="slow down\n")
        reply = await self._hooks(req)
        if reply.audit is not None:
            now = self._clock.monotonic()
            if now - self._audited.get(key, -REFUSAL_AUDIT_S) >= REFUSAL_AUDIT_S:
                if len(self._audited) >= MAX_CLIENTS:
                    self._audited.clear()
                self._audited[key] = now
                self._record("webhook_refused", dict(reply.audit))
        return reply


class _Bad(Exception):
    def __init__(self, status: http.HTTPStatus, text: str) -> None:
        super().__init__(text)
        self.status, self.text = status, text


def parse_head(head: bytes) -> tuple[str, str, dict[str, str]]:
    """(method, target, headers: lower-cased names, first value) of an HTTP/1.x head."""
    try:
        lines = head.decode("latin-1").split("\r\n")
        method, target, version = lines[0].split(" ")
    except ValueError:
        raise _Bad(http.HTTPStatus.BAD_REQUEST, "malformed request line\n") from None
    if not version.startswith("HTTP/1."):
        raise _Bad(http.HTTPStatus.HTTP_VERSION_NOT_SUPPORTED, "HTTP/1.1 only\n")
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise _Bad(http.HTTPStatus.BAD_REQUEST, "malformed header\n")
        headers.setdefault(name.lower(), value.strip())
    return method, target, headers


def body_length(method: str, headers: dict[str, str]) -> int:
    if "transfer-encoding" in headers:
        raise _Bad(http.HTTPStatus.LENGTH_REQUIRED, "send a Content-Length\n")
    raw = headers.get("content-length", "0" if method == "GET" else "")
    if not raw.isdigit():
        raise _Bad(http.HTTPStatus.LENGTH_REQUIRED, "send a Content-Length\n")
    if int(raw) > MAX_BODY:
        raise _Bad(http.HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "body too large\n")
    return int(raw)


def route(
    method: str, target: str, headers: dict[str, str], body: bytes, address: str
) -> HookRequest:
    if method not in ("GET", "POST"):
        raise _Bad(http.HTTPStatus.METHOD_NOT_ALLOWED, "GET or POST\n")
    parts = urlsplit(target)
    found = _ROUTE.match(parts.path)
    if found is None:
        raise _Bad(http.HTTPStatus.NOT_FOUND, "no such webhook\n")
    return HookRequest(
        method=method,
        channel=found["channel"],
        account=found["account"],
        query=parts.query,
        headers=headers,
        body=body,
        address=address,
    )


class HookConnection(ServerConnection):
    """A websockets connection that serves ``/hooks/`` requests itself (see the module doc)."""

    hooks: Hooks | None = None  # set on the subclass ``connection_class`` makes

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._mode = "sniff"  # -> "ws" (websockets') or "hook" (ours)
        self._buf = b""
        self._decided: asyncio.Future[None] = self.loop.create_future()
        self._complete: asyncio.Future[tuple[bytes, bytes]] = self.loop.create_future()

    def data_received(self, data: bytes) -> None:
        if self._mode == "ws":
            super().data_received(data)
            return
        if self._complete.done():
            return  # anything past the declared body is ignored
        self._buf += data
        if len(self._buf) > MAX_HEAD + MAX_BODY:  # never buffered past what may be asked
            self._complete.set_exception(
                _Bad(http.HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "too large\n")
            )
            return
        if self._mode == "sniff":
            line_end = self._buf.find(b"\r\n")
            if line_end < 0 and len(self._buf) < MAX_HEAD:
                return
            words = self._buf[: max(line_end, 0)].split(b" ")
            if len(words) == 3 and words[1].startswith(HOOK_PREFIX):
                self._mode = "hook"
            else:
                self._mode = "ws"
                buffered, self._buf = self._buf, b""
                super().data_received(buffered)
            if not self._decided.done():
                self._decided.set_result(None)
            if self._mode == "ws":
                return
        self._collect()

    def _collect(self) -> None:
        if self._complete.done():
            return
        end = self._buf.find(b"\r\n\r\n")
        if end < 0 or end > MAX_HEAD:
            if len(self._buf) > MAX_HEAD:
                self._complete.set_exception(
                    _Bad(http.HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE, "head too large\n")
                )
            return
        head = self._buf[:end]
        try:
            method, _target, headers = parse_head(head)
            need = body_length(method, headers)
        except _Bad as bad:
            self._complete.set_exception(bad)
            return
        body = self._buf[end + 4 :]
        if len(body) >= need:
            self._complete.set_result((head, body[:need]))

    def eof_received(self) -> None:
        if self._mode == "ws":
            super().eof_received()
        elif not self._complete.done():
            self._complete.set_exception(_Bad(http.HTTPStatus.BAD_REQUEST, "incomplete\n"))

    def connection_lost(self, exc: Exception | None) -> None:
        for fut in (self._decided, self._complete):
            if not fut.done():
                fut.cancel()
        super().connection_lost(exc)

    async def handshake(self, *args: Any, **kw: Any) -> None:
        await asyncio.wait(
            [self._decided, self.connection_lost_waiter], return_when=asyncio.FIRST_COMPLETED
        )
        if self._mode != "hook":
            await super().handshake(*args, **kw)
            return
        try:
            reply = await self._serve()
        except asyncio.CancelledError:
            if self.connection_lost_waiter.done():
                return
            raise
        resp = response(http.HTTPStatus(reply.status), reply.body, reply.content_type)
        secure_headers(resp.headers)
        self.transport.write(resp.serialize())
        self.transport.close()
        try:
            async with asyncio.timeout(2.0):
                await asyncio.shield(self.connection_lost_waiter)
        except TimeoutError:
            self.transport.abort()

    async def _serve(self) -> HookReply:
        try:
            head, body = await self._complete
            method, target, headers = parse_head(head)
            peer = self.transport.get_extra_info("peername")
            address = str(peer[0]) if peer else "unknown"
            req = route(method, target, headers, body, address)
        except _Bad as bad:
            return HookReply(status=bad.status.value, body=bad.text)
        hooks = type(self).hooks
        if hooks is None:  # pragma: no cover - connection_class always sets it
            return HookReply(status=404, body="no webhooks here\n")
        try:
            async with asyncio.timeout(HOOK_TIMEOUT_S):
                return await hooks(req)
        except TimeoutError:
            log.warning("webhook %s/%s took too long: 503", req.channel, req.account)
        except MoltbotError as exc:
            log.warning("webhook %s/%s failed: %s", req.channel, req.account, exc.code)
        except Exception:
            log.exception("webhook %s/%s failed", req.channel, req.account)
        return HookReply(status=503, body="try again later\n")


def connection_class(hooks: Hooks) -> type[HookConnection]:
    """The ``create_connection`` class for websockets' ``serve``, routing to ``hooks``."""
    return type("GatewayConnection", (HookConnection,), {"hooks": staticmethod(hooks)})
