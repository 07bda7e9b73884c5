"""The gateway server: WebSocket + HTTP on one port (no Ray here).

Life of a connection: HTTP checks in ``HttpFront`` (Host, URL credentials, Origin) -> admission
(at most ``unauth_max`` upgraded sockets not yet logged in, ``unauth_per_client`` from one
address or IPv6 /64; over it: 503 before the upgrade) -> upgrade
-> the first frame must be ``connect`` within ``connect_timeout_s`` -> requests run
concurrently (at most ``max_in_flight``), every frame passes a token bucket, and server events
are fanned out through a bounded per-client outbox: a client too slow to drain it is closed
(1013), it never blocks the others. Frames over ``max_frame_bytes`` close the connection with
1009 (websockets' ``max_size``). Logins, refused connects, lockouts and approval decisions go
to the optional ``audit`` callable (address and method, never a token) through an
``AuditQueue`` (bounded, drop-when-full, one owned task), so no connection waits for the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
import socket
import ssl
from collections.abc import Sequence
from typing import Any

import msgspec
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from moltbot import __version__
from moltbot.clock import SYSTEM_CLOCK, Clock
from moltbot.errors import (
    BadRequest,
    ConfigError,
    GatewayError,
    MoltbotError,
    RateLimited,
    Unauthorized,
)
from moltbot.gateway import frames as f
from moltbot.gateway.activation import is_pending, listen_error
from moltbot.gateway.auth import Authenticator, Login, WebSessions, check_secrets
from moltbot.gateway.backend import Backend
from moltbot.gateway.hooks import HookGate, Hooks, connection_class
from moltbot.gateway.http import HttpFront, response, secure_headers
from moltbot.gateway.methods import CallContext, Dispatcher
from moltbot.netaddr import is_loopback
from moltbot.security.audit_queue import AuditQueue, AuditSend
from moltbot.security.origin import WILDCARD_HOSTS, OriginPolicy
from moltbot.security.ratelimit import Admission, Lockout, TokenBucket, client_key

log = logging.getLogger("moltbot.gateway")

CLOSE_POLICY = 1008
CLOSE_TRY_AGAIN = 1013
REFUSAL_AUDIT_S = 60.0  # at most one audit record per client and minute for refused sockets

Audit = AuditSend
"""Records one audit event (kind, fields); fields never hold a token or password."""


class GatewaySettings(msgspec.Struct, frozen=True, kw_only=True):
    host: str = "127.0.0.1"
    port: int = 18789
    token: str | None = None
    password: str | None = None
    allowed_origins: Sequence[str] = ()
    max_frame_bytes: int = 1 << 20
    rate_per_second: float = 20.0
    rate_burst: int = 40
    connect_timeout_s: float = 5.0
    idle_minutes: float = 30.0
    absolute_hours: float = 24.0
    lockout_max: int = 10
    lockout_window_s: float = 60.0
    lockout_base_s: float = 60.0  # first lockout; doubles with each further one (cap 1 h)
    lockout_clients: int = 10_000  # addresses remembered (locked ones are never forgotten)
    lockout_global_max: int = 100  # failures from everyone within the window ...
    lockout_global_s: float = 30.0  # ... lock every login out this long (0 max: off)
    unauth_max: int = 64  # upgraded sockets not yet logged in, in total ...
    unauth_per_client: int = 8  # ... and from one address (IPv6: one /64)
    client_queue: int = 256  # outgoing frames buffered per client before it is dropped
    max_in_flight: int = 8  # concurrent requests per connection


def check_bind(settings: GatewaySettings, ssl_context: ssl.SSLContext | None) -> None:
    """A non-loopback bind needs both auth and TLS, else the gateway refuses to start."""
    if is_loopback(settings.host):
        return
    missing = [
        what
        for what, present in (
            ("auth (gateway.token or gateway.password)", settings.token or settings.password),
            ("TLS (gateway.tls)", ssl_context is not None),
        )
        if not present
    ]
    if missing:
        raise ConfigError(
            "$.gateway.bind",
            f"binding {settings.host!r} exposes the gateway beyond this machine without "
            + " and ".join(missing),
            fix="bind 127.0.0.1, or configure both a gateway token and TLS",
        )


class _Client:
    """One authenticated connection: its outbox, sequence numbers and rate limit."""

    def __init__(
        self, ws: ServerConnection, address: str, login: Login, s: GatewaySettings, clock: Clock
    ) -> None:
        self.ws = ws
        self.address = address
        self.login = login
        self.name = f"gateway:{address}"
        self.outbox: asyncio.Queue[bytes | tuple[str, Any]] = asyncio.Queue(s.client_queue)
        self.bucket = TokenBucket(s.rate_per_second, s.rate_burst, clock)
        self.in_flight = 0
        self.seq = 0
        self.kicked = asyncio.Event()

    def offer(self, event: str, payload: Any) -> None:
        """Queue a server event without waiting; a full outbox drops the client."""
        if self.kicked.is_set():
            return
        try:
            self.outbox.put_nowait((event, payload))
        except asyncio.QueueFull:
            log.warning("dropping slow gateway client %s", self.address)
            self.kicked.set()

    async def emit(self, event: str, payload: Any) -> None:
        await self.outbox.put((event, payload))


class _Done(Exception):
    """The connection ended normally (internal signal to leave the task group)."""


class GatewayServer:
    def __init__(
        self,
        settings: GatewaySettings,
        backend: Backend,
        *,
        ssl_context: ssl.SSLContext | None = None,
        clock: Clock = SYSTEM_CLOCK,
        audit: Audit | None = None,
        hooks: Hooks | None = None,
    ) -> None:
        self.settings = settings
        self._audit = None if audit is None else AuditQueue(audit, source="gateway")
        self._backend = backend
        self._ssl = ssl_context
        self._clock = clock
        self._dispatch = Dispatcher(backend)
        sessions = WebSessions(
            clock, idle_s=settings.idle_minutes * 60, absolute_s=settings.absolute_hours * 3600
        )
        lockout = Lockout(
            clock,
            max_failures=settings.lockout_max,
            window_s=settings.lockout_window_s,
            base_s=settings.lockout_base_s,
            max_addresses=settings.lockout_clients,
            global_max=settings.lockout_global_max,
            global_lock_s=settings.lockout_global_s,
        )
        self.auth = Authenticator(
            token=settings.token, password=settings.password, sessions=sessions, lockout=lockout
        )
        self._server: Server | None = None
        self._sock: socket.socket | None = None  # handed over by the root (socket activation)
        self.last_request = clock.monotonic()  # of the last HTTP request or handshake (idle end)
        self._front: HttpFront | None = None
        self._clients: set[_Client] = set()
        self._listening = asyncio.Event()  # a client is connected: the backend's events matter
        self._admission = Admission(
            total=settings.unauth_max, per_client=settings.unauth_per_client
        )
        self._waiting: dict[int, str] = {}  # id(connection) -> address, until it logged in
        self._refusals: dict[str, float] = {}  # client -> when its refusal was last audited
        self.port = settings.port
        # /hooks/<channel>/<account> (moltbot.gateway.hooks): rate-limited, refusals audited
        self._hooks = HookGate(
            hooks, self._record, clock, settings.rate_per_second, settings.rate_burst
        )

    # --- lifecycle ------------------------------------------------------------------------
    @property
    def url(self) -> str:
        """The page's URL (``http(s)://host:port/``)."""
        host = "127.0.0.1" if self.settings.host in WILDCARD_HOSTS else self.settings.host
        host = f"[{host}]" if ":" in host else host
        return f"{'https' if self._ssl else 'http'}://{host}:{self.port}/"

    @property
    def ws_url(self) -> str:
        return "ws" + self.url.removeprefix("http")

    @property
    def clients(self) -> int:
        return len(self._clients)

    async def start(self, sock: socket.socket | None = None) -> None:
        """Listen on the configured address, or accept on ``sock`` (a listening socket the
        root supervisor holds: ``moltbot.gateway.activation``)."""
        check_secrets(self.settings.token, self.settings.password)
        check_bind(self.settings, self._ssl)
        s = self.settings
        where: dict[str, Any] = {"sock": sock} if sock is not None else {"host": s.host}
        try:
            self._server = await serve(
                self._handle,
                port=None if sock is not None else s.port,
                process_request=self._process_request,
                process_response=self._process_response,
                server_header=None,
                compression=None,
                max_size=s.max_frame_bytes,
                ssl=self._ssl,
                create_connection=connection_class(self._hooks),
                **where,
            )
        except OSError as exc:  # mapped here, once: the user sees the address and the fix
            raise listen_error(exc, s.host, s.port) from None
        self._sock = sock
        self.port = self._server.sockets[0].getsockname()[1]
        self._front = HttpFront(OriginPolicy(s.host, self.port, s.allowed_origins), self._backend)
        log.info("gateway listening on %s", self.url)

    def busy(self) -> bool:
        """A connection is open or waits to be accepted, or a web session is still valid
        (sleeping would log its page out): this gateway is not idle."""
        if self._server is None:
            return False
        pending = self._sock is not None and is_pending(self._sock)
        return bool(self._server.connections) or pending or self.auth.sessions.alive() > 0

    async def end_idle(self, grace_s: float = 30.0) -> None:
        """Stop accepting (what arrives next waits in the backlog of the socket the root
        holds), let a connection accepted meanwhile finish within ``grace_s``, then stop."""
        if self._server is None:
            return
        self._server.close(close_connections=False)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(grace_s):
                await self._server.wait_closed()
        await self.stop()

    async def serve_forever(self) -> None:
        """Serve (starting first if needed) until ``stop()`` or cancellation."""
        if self._server is None:
            await self.start()
        server = self._server
        assert server is not None
        try:
            async with asyncio.TaskGroup() as tg:
                fanout = tg.create_task(self._fanout())
                await server.wait_closed()
                fanout.cancel()
        finally:
            server.close()  # cancelled: close the port and the connections before leaving
            await server.wait_closed()
            if self._audit is not None:
                await self._audit.aclose()  # what is queued still reaches the log

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    # --- HTTP -----------------------------------------------------------------------------
    async def _process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        self.last_request = self._clock.monotonic()
        if self._front is None:
            return response(http.HTTPStatus.SERVICE_UNAVAILABLE, "starting\n")
        refused = await self._front.process(request)
        if refused is not None:  # a page, or a refused upgrade
            return refused
        address = _address(ws)
        why = self._admission.enter(address)
        if why:
            log.info("gateway socket refused from %s: %s", address, why)
            self._audit_refusal(address, why)
            return response(http.HTTPStatus.SERVICE_UNAVAILABLE, why + "\n")
        self._waiting[id(ws)] = address
        return None

    def _process_response(
        self, ws: ServerConnection, request: Request, resp: Response
    ) -> Response | None:
        secure_headers(resp.headers)
        if resp.status_code != http.HTTPStatus.SWITCHING_PROTOCOLS:
            self._admitted(ws)  # no upgrade after all: its place is free again
        return None

    def _admitted(self, ws: ServerConnection) -> None:
        address = self._waiting.pop(id(ws), None)
        if address is not None:
            self._admission.leave(address)

    def _audit_refusal(self, address: str, why: str) -> None:
        key, now = client_key(address), self._clock.monotonic()
        if now - self._refusals.get(key, -REFUSAL_AUDIT_S) < REFUSAL_AUDIT_S:
            return
        if len(self._refusals) >= 1024:
            self._refusals.clear()
        self._refusals[key] = now
        self._record(
            "auth_failed", {"address": address, "reason": "too_many_unauthenticated", "detail": why}
        )

    # --- events ---------------------------------------------------------------------------
    async def _fanout(self) -> None:
        delay = 0.5
        while True:
            try:
                async for name, payload in self._backend.events(self._listening):
                    delay = 0.5
                    try:
                        raw = msgspec.Raw(msgspec.json.encode(payload))
                    except (TypeError, msgspec.EncodeError):
                        log.error("backend event %r is not JSON-encodable; dropped", name)
                        continue
                    for client in list(self._clients):
                        client.offer(name, raw)
            except MoltbotError as exc:
                log.debug("backend events unavailable: %s", exc.user_message)
            except Exception:
                log.exception("backend event stream failed")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 10.0)

    # --- audit ----------------------------------------------------------------------------
    def _record(self, kind: str, fields: dict[str, Any]) -> None:
        """Queue an audit record; a connection never waits for the audit log."""
        if self._audit is not None:
            self._audit.record(kind, fields)

    # --- connections ----------------------------------------------------------------------
    async def _handle(self, ws: ServerConnection) -> None:
        address = _address(ws)
        try:
            try:
                login = await self._handshake(ws, address)
            finally:
                self._admitted(ws)
            if login is None:
                return
            client = _Client(ws, address, login, self.settings, self._clock)
            self._clients.add(client)
            self._listening.set()
            try:
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(self._writer(client))
                    tg.create_task(self._watch_kick(client))
                    await self._reader(client, tg)
                    raise _Done
            except* (_Done, ConnectionClosed):
                pass
            finally:
                self._clients.discard(client)
                if not self._clients:
                    self._listening.clear()
        except ConnectionClosed:
            pass

    async def _handshake(self, ws: ServerConnection, address: str) -> Login | None:
        timeout = self.settings.connect_timeout_s
        try:
            async with asyncio.timeout(timeout):
                raw = await ws.recv()
        except TimeoutError:
            await ws.close(CLOSE_POLICY, f"connect frame expected within {timeout:g} s")
            return None
        req_id: str | None = None
        try:
            req = f.parse_request(raw)
            req_id = req.id
            if req.method != "connect":
                raise Unauthorized(
                    "the first frame must be a connect request",
                    hint='send {"type":"req","id":"1","method":"connect",'
                    '"params":{"auth":{"token":"..."}}} first',
                )
            params = f.parse_params(req.params, f.ConnectParams)
            login = self.auth.login(address, params.auth)
        except MoltbotError as exc:
            log.info("gateway connect refused from %s: %s", address, exc.code)
            if isinstance(exc, RateLimited):
                fields = {"address": address, "retry_after": round(exc.retry_after, 1)}
                self._record("lockout", fields)
            else:
                self._record("auth_failed", {"address": address, "reason": exc.code})
            await ws.send(f.encode_error(req_id, exc), text=True)
            await ws.close(CLOSE_POLICY, "not authenticated")
            return None
        payload = {
            "protocol": f.PROTOCOL_VERSION,
            "server": f"moltbot {__version__}",
            "auth": login.method,
            "session": login.session,
            "idle_timeout_s": login.idle_timeout_s,
            "expires_in_s": login.expires_in_s,
            "methods": list(self._dispatch.methods),
        }
        self._record("login", {"address": address, "method": login.method})
        await ws.send(f.encode_ok(req.id, payload), text=True)
        return login

    async def _writer(self, client: _Client) -> None:
        while True:
            item = await client.outbox.get()
            if isinstance(item, bytes):
                data = item
            else:
                client.seq += 1
                data = f.encode_event(item[0], item[1], client.seq)
            await client.ws.send(data, text=True)

    async def _watch_kick(self, client: _Client) -> None:
        await client.kicked.wait()
        await client.ws.close(CLOSE_TRY_AGAIN, "client too slow: events dropped")
        raise _Done

    async def _reader(self, client: _Client, tg: asyncio.TaskGroup) -> None:
        async for raw in client.ws:
            wait = client.bucket.take()
            try:
                req = f.parse_request(raw)
            except BadRequest as exc:
                refusal: MoltbotError = exc
                if wait > 0:
                    refusal = RateLimited("too many requests", retry_after=wait, hint="slow down")
                await client.outbox.put(f.encode_error(None, refusal))
                continue
            if wait > 0:
                limited = RateLimited("too many requests", retry_after=wait, hint="slow down")
                await client.outbox.put(f.encode_error(req.id, limited))
                continue
            if not self.auth.sessions.touch(client.login.session) and (
                client.login.method == "session"
            ):
                expired = Unauthorized("session expired", hint="log in again with the token")
                await client.ws.send(f.encode_error(req.id, expired), text=True)
                await client.ws.close(CLOSE_POLICY, "session expired")
                return
            if req.method == "connect":
                await client.outbox.put(f.encode_error(req.id, BadRequest("already connected")))
            elif client.in_flight >= self.settings.max_in_flight:
                busy = RateLimited(
                    f"at most {self.settings.max_in_flight} requests at a time", retry_after=0.5
                )
                await client.outbox.put(f.encode_error(req.id, busy))
            else:
                client.in_flight += 1
                tg.create_task(self._run(client, req))

    async def _run(self, client: _Client, req: f.Request) -> None:
        ctx = CallContext(client=client.name, request_id=req.id, emit=client.emit)
        outcome = "error"
        try:
            payload = await self._dispatch.call(req.method, req.params, ctx)
            data = f.encode_ok(req.id, payload)
            outcome = "ok"
        except MoltbotError as exc:
            data = f.encode_error(req.id, exc)
            outcome = exc.code
        except Exception:
            log.exception("gateway method %s failed", req.method)
            data = f.encode_error(
                req.id, GatewayError("internal error", hint="see the gateway log")
            )
        finally:
            client.in_flight -= 1
            if req.method == "approvals.resolve":
                self._record("approval", _approval_fields(client, req, outcome))
        await client.outbox.put(data)


def _address(ws: ServerConnection) -> str:
    return str(ws.remote_address[0]) if ws.remote_address else "unknown"


def _approval_fields(client: _Client, req: f.Request, outcome: str) -> dict[str, Any]:
    params = req.params
    return {
        "address": client.address,
        "method": req.method,
        "auth": client.login.method,
        "id": str(params.get("id", ""))[:64],
        "decision": str(params.get("decision", ""))[:16],
        "outcome": outcome,
    }
