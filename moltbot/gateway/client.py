"""``GatewayClient``: one logical client of the gateway's WebSocket (``moltbot chat``, the
benchmarks). It reconnects by itself with exponential backoff when the gateway goes away (for
instance while its actor is restarted) and resends the message whose reply it was waiting for.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus

from moltbot.backoff import delay as backoff_delay
from moltbot.errors import (
    BadRequest,
    Forbidden,
    GatewayError,
    MoltbotError,
    RateLimited,
    Unauthorized,
    Unavailable,
)
from moltbot.gateway.frames import Event, Response

DEFAULT_URL = "ws://127.0.0.1:18789"
RETRYABLE_CODES = frozenset({"unavailable", "not_running", "rate_limited"})

_decoder = msgspec.json.Decoder(Response | Event)


@dataclass(frozen=True, slots=True)
class Backoff:
    initial: float = 0.2
    maximum: float = 5.0
    give_up_after: float = 120.0  # seconds of failed attempts before Unavailable

    def delay(self, attempt: int) -> float:
        """``moltbot.backoff`` doubling from ``initial`` to ``maximum``, up to 25% shorter."""
        return backoff_delay(attempt, base=self.initial, cap=self.maximum, jitter=0.25)


class _Retry(Exception):
    """The attempt failed in a way that a reconnect/resend may fix."""

    def __init__(self, reason: str, wait: float = 0.0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.wait = wait


def _error_from(code: str, message: str, hint: str) -> MoltbotError:
    kinds: dict[str, type[MoltbotError]] = {
        "unauthorized": Unauthorized,
        "forbidden": Forbidden,
        "bad_request": BadRequest,
        "unavailable": Unavailable,
    }
    return kinds.get(code, GatewayError)(message, hint=hint)


class GatewayClient:
    """One logical client of the gateway; the connection underneath comes and goes."""

    def __init__(
        self,
        url: str,
        token: str,
        *,
        session: str = "main",
        backoff: Backoff | None = None,
        ssl_context: ssl.SSLContext | None = None,
        on_retry: Callable[[str], None] | None = None,
    ) -> None:
        self.url = url
        self._token = token
        self.session = session
        self.backoff = backoff or Backoff()
        self._ssl = ssl_context
        self._on_retry = on_retry
        self._ws: ClientConnection | None = None
        self._next_id = 0
        self.reconnects = 0

    async def __aenter__(self) -> GatewayClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        if self._ws is not None:
            await self._ws.close()
            self._ws = None

    def _id(self) -> str:
        self._next_id += 1
        return str(self._next_id)

    async def _connect(self) -> ClientConnection:
        kwargs: dict[str, Any] = {"open_timeout": 10, "max_size": 1 << 20, "compression": None}
        if self._ssl is not None:
            kwargs["ssl"] = self._ssl
        try:
            ws = await connect(self.url, **kwargs)
        except InvalidStatus as exc:
            status = exc.response.status_code
            if status in (403, 421):
                raise Forbidden(
                    f"the gateway refused the connection (HTTP {status})",
                    hint="check --url: use the gateway's own host and port",
                ) from None
            raise _Retry(f"HTTP {status}") from None
        except (OSError, TimeoutError, InvalidHandshake) as exc:
            raise _Retry(type(exc).__name__) from None
        req_id = self._id()
        hello = {
            "type": "req",
            "id": req_id,
            "method": "connect",
            "params": {"auth": {"token": self._token}, "client": "cli"},
        }
        await ws.send(msgspec.json.encode(hello), text=True)
        while True:
            frame = _decoder.decode(await ws.recv())
            if isinstance(frame, Response) and frame.id in (req_id, None):
                break
        if not frame.ok:
            await ws.close()
            err = frame.error
            if err is None:
                raise GatewayError("the gateway refused the connection")
            if err.code == "rate_limited":
                raise RateLimited(err.message, retry_after=err.retry_after or 1.0, hint=err.hint)
            raise _error_from(err.code, err.message, err.hint)
        return ws

    async def _turn(self, ws: ClientConnection, text: str, on_delta: Callable[[str], None]) -> str:
        req_id = self._id()
        req = {
            "type": "req",
            "id": req_id,
            "method": "chat.send",
            "params": {"session": self.session, "text": text},
        }
        await ws.send(msgspec.json.encode(req), text=True)
        while True:
            frame = _decoder.decode(await ws.recv())
            if isinstance(frame, Event):
                p = frame.payload
                if (
                    frame.event == "chat"
                    and isinstance(p, dict)
                    and p.get("req") == req_id
                    and p.get("kind") == "delta"
                ):
                    on_delta(str(p.get("text", "")))
                continue
            if frame.id != req_id:
                continue
            if frame.ok:
                payload = frame.payload if isinstance(frame.payload, dict) else {}
                return str(payload.get("text", ""))
            err = frame.error
            if err is None:
                raise GatewayError("the gateway answered an error without details")
            if err.code in RETRYABLE_CODES:
                raise _Retry(err.message, wait=err.retry_after or 0.0)
            raise _error_from(err.code, err.message, err.hint)

    async def ask(self, text: str, on_delta: Callable[[str], None] = lambda _: None) -> str:
        """Send ``text`` and return the whole reply, streaming deltas to ``on_delta``.

        Connection loss (or an ``unavailable`` answer) closes the socket, waits with backoff,
        reconnects and sends the message again; after ``backoff.give_up_after`` seconds of
        failures it raises ``Unavailable``.
        """
        loop = asyncio.get_running_loop()
        started = loop.time()
        attempt = 0
        while True:
            try:
                if self._ws is None:
                    self._ws = await self._connect()
                    if attempt:
                        self.reconnects += 1
                return await self._turn(self._ws, text, on_delta)
            except (_Retry, ConnectionClosed, OSError, msgspec.DecodeError) as exc:
                reason = exc.reason if isinstance(exc, _Retry) else type(exc).__name__
                wait = max(self.backoff.delay(attempt), getattr(exc, "wait", 0.0))
                await self._drop()
            if loop.time() - started + wait > self.backoff.give_up_after:
                raise Unavailable(
                    f"the gateway at {self.url} is not answering",
                    hint="is it running? try: moltbot status",
                )
            if self._on_retry is not None:
                self._on_retry(f"gateway connection lost ({reason}); retrying in {wait:.1f} s")
            attempt += 1
            await asyncio.sleep(wait)

    async def _drop(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None:
            try:
                await asyncio.wait_for(ws.close(), 1.0)
            except (TimeoutError, OSError, ConnectionClosed):
                pass
