"""Signal through signal-cli-rest-api: httpx for the REST calls, websockets for json-rpc mode.

Durability limit (see base.py): signal-cli-rest-api has no ack. Polling ``/v1/receive`` deletes
what it returns and the json-rpc websocket pushes each message once, so a message handed over
just before a crash is lost. Polling asks for ``max_messages`` (default 1) per request so at
most that many are in flight; every message is journaled before the next request.

Identity: ``sender_id`` is the sender's ACI uuid (immutable; phone numbers change hands), the
DM ``chat_id`` is the number (or the uuid when the number is hidden), a group's ``chat_id`` is
``group.<base64(groupId)>``, the recipient form ``/v2/send`` expects.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import random
from typing import Any, Literal
from urllib.parse import quote

import httpx
import msgspec
import websockets
from websockets.exceptions import InvalidStatus, WebSocketException

from moltbot.channels.base import RECEIVE_BATCH, InboundSink, drain, sink_together
from moltbot.channels.formatting import SIGNAL_LIMIT, render
from moltbot.channels.retry import (
    DEFAULT_RETRY,
    ReceiveBackoff,
    Retrier,
    RetryPolicy,
    Sleep,
    classify_status,
    parse_retry_after,
)
from moltbot.clock import SYSTEM_CLOCK, Clock
from moltbot.errors import MoltbotError, PlatformRejected, PlatformUnavailable, RateLimited
from moltbot.media.fetch import fetch_own, same_origin
from moltbot.media.sniff import kind_hint
from moltbot.messages import Attachment, InboundMessage, OutboundFile, OutboundMessage

log = logging.getLogger(__name__)
ReceiveMode = Literal["auto", "websocket", "poll"]


POOL_SIZE = 16  # HTTP connections to the REST API at most (receive polls hold one)


def map_error(exc: BaseException) -> MoltbotError:
    """The one place httpx / websockets errors become moltbot errors."""
    if isinstance(exc, httpx.HTTPStatusError | InvalidStatus):
        resp = exc.response
        status = resp.status_code
        after = parse_retry_after(resp.headers.get("Retry-After"))
        err = classify_status(status, platform="Signal", retry_after=after)
        return err or PlatformRejected(f"Signal answered HTTP {status}")
    if isinstance(exc, httpx.TransportError | WebSocketException | TimeoutError | OSError):
        return PlatformUnavailable("signal-cli-rest-api could not be reached")
    return PlatformRejected("Signal request failed")


class _Mention(msgspec.Struct, rename="camel"):
    number: str | None = None
    uuid: str | None = None


class _Quote(msgspec.Struct, rename="camel"):
    author_number: str | None = None
    author_uuid: str | None = None


class _GroupInfo(msgspec.Struct, rename="camel"):
    group_id: str = ""


class _Att(msgspec.Struct, rename="camel"):
    id: str = ""
    content_type: str = ""
    filename: str | None = None
    size: int | None = None


class _Data(msgspec.Struct, rename="camel"):
    timestamp: int = 0
    message: str | None = None
    attachments: list[_Att] = []
    group_info: _GroupInfo | None = None
    mentions: list[_Mention] = []
    quote: _Quote | None = None


class _Envelope(msgspec.Struct, rename="camel"):
    source_number: str | None = None
    source_uuid: str | None = None
    source_name: str = ""
    timestamp: int = 0
    data_message: _Data | None = None


class _Received(msgspec.Struct):
    envelope: _Envelope | None = None


class SignalAdapter:
    channel = "signal"

    def __init__(
        self,
        *,
        account: str,
        api_base: str = "http://127.0.0.1:8080",
        receive_mode: ReceiveMode = "auto",
        poll_timeout: int = 10,
        max_messages: int = 1,
        retry: RetryPolicy = DEFAULT_RETRY,
        clock: Clock = SYSTEM_CLOCK,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.account = account  # the bot's own number, e.g. +15550001111
        self.last_activity = clock.monotonic()
        self._api_base = api_base.rstrip("/")
        self._mode: ReceiveMode = receive_mode
        self._poll_timeout, self._max_messages = poll_timeout, max_messages
        self._clock = clock
        self._retrier = Retrier(
            retry, platform="Signal", channel="signal", sleep=sleep, clock=clock, rng=rng
        )
        self._http: httpx.AsyncClient | None = None
        self._path_number = quote(account, safe="+")

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            # a small pool kept alive: httpcore scans every pooled connection per request
            # (measured: most of this adapter's CPU with 100), and churn costs new sockets
            self._http = httpx.AsyncClient(
                base_url=self._api_base,
                timeout=httpx.Timeout(self._poll_timeout + 15.0),
                limits=httpx.Limits(max_connections=POOL_SIZE, max_keepalive_connections=POOL_SIZE),
            )
        return self._http

    async def _request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            resp = await self._client().request(method, path, **kw)
            resp.raise_for_status()
        except (httpx.HTTPError, OSError) as e:
            log.debug("signal %s: %s %s: %s", self.account, method, path, type(e).__name__)
            raise map_error(e) from None
        return resp

    async def connect(self) -> dict[str, Any]:
        about = (await self._request("GET", "/v1/about")).json()
        accounts = (await self._request("GET", "/v1/accounts")).json()
        if self.account not in accounts:
            raise PlatformRejected(
                f"Signal number {self.account} is not registered with signal-cli",
                hint=f"register or link it first (signal-cli-rest-api at {self._api_base}: "
                "POST /v1/register/NUMBER, or GET /v1/qrcodelink to link a phone)",
            )
        mode = str(about.get("mode", ""))
        if self._mode == "auto":
            self._mode = "websocket" if mode == "json-rpc" else "poll"
        self.last_activity = self._clock.monotonic()
        return {"id": self.account, "mode": mode, "version": str(about.get("version", ""))}

    # --- receiving -------------------------------------------------------------------------
    async def run(self, sink: InboundSink) -> None:
        backoff = self._retrier.receiving()
        if self._mode == "auto":
            await backoff.call(self.connect)
        receive = self._receive_ws if self._mode == "websocket" else self._receive_poll
        while True:
            try:
                await receive(sink, backoff)
            except (PlatformUnavailable, RateLimited) as e:
                await backoff.failed(e)

    async def _receive_poll(self, sink: InboundSink, backoff: ReceiveBackoff) -> None:
        while True:
            resp = await self._request(
                "GET",
                f"/v1/receive/{self._path_number}",
                params={"timeout": self._poll_timeout, "max_messages": self._max_messages},
            )
            backoff.ok()
            self.last_activity = self._clock.monotonic()
            try:
                items = msgspec.json.decode(resp.content, type=list[_Received])
            except msgspec.DecodeError:
                log.warning("signal %s: undecodable receive batch skipped", self.account)
                continue
            await self._deliver(items, sink)

    async def _receive_ws(self, sink: InboundSink, backoff: ReceiveBackoff) -> None:
        url = "ws" + self._api_base.removeprefix("http") + f"/v1/receive/{self._path_number}"
        try:
            ws = await websockets.connect(url, max_size=2**20, open_timeout=10)
        except (WebSocketException, OSError) as e:
            log.debug("signal %s: websocket connect: %s", self.account, type(e).__name__)
            raise map_error(e) from None
        async with ws:
            backoff.ok()
            self.last_activity = self._clock.monotonic()
            # a reader fills a small queue, so what arrives while the sink is busy is sunk
            # together (one journal write); its error comes through the queue, in order
            queue: asyncio.Queue[_Received | MoltbotError] = asyncio.Queue(RECEIVE_BATCH)
            failed: Exception | None = None
            async with asyncio.TaskGroup() as tg:
                reader = tg.create_task(self._read_ws(ws, queue), name="signal-reader")
                while failed is None:
                    waiting = drain(queue, await queue.get())
                    items = [i for i in waiting if isinstance(i, _Received)]
                    try:
                        await self._deliver(items, sink)  # sink errors propagate
                    except Exception as exc:
                        failed = exc
                    failed = failed or next(
                        (i for i in waiting if isinstance(i, MoltbotError)), None
                    )
                reader.cancel()
            raise failed

    async def _read_ws(self, ws: Any, queue: asyncio.Queue[_Received | MoltbotError]) -> None:
        while True:
            try:
                raw = await asyncio.wait_for(ws.recv(), self._poll_timeout)
            except TimeoutError:  # quiet; websockets' own pings close a dead socket
                self.last_activity = self._clock.monotonic()
                continue
            except (WebSocketException, OSError) as e:
                log.debug("signal %s: websocket: %s", self.account, type(e).__name__)
                await queue.put(map_error(e))
                return
            self.last_activity = self._clock.monotonic()
            try:
                item = msgspec.json.decode(raw, type=_Received)
            except msgspec.DecodeError:
                log.warning("signal %s: undecodable message skipped", self.account)
                continue
            await queue.put(item)

    async def _deliver(self, items: list[_Received], sink: InboundSink) -> None:
        """Sink the batch's messages together; the first refusal is raised (Signal has no
        ack: nothing is re-delivered either way, see ``channels.base``)."""
        msgs = [m for m in (self.to_inbound(i) for i in items) if m is not None]
        problem = next((p for p in await sink_together(sink, msgs) if p is not None), None)
        if problem is not None:
            raise problem

    def to_inbound(self, item: _Received) -> InboundMessage | None:
        env = item.envelope
        if env is None or env.data_message is None:
            return None  # receipts, typing, sync messages
        data = env.data_message
        attachments = tuple(
            Attachment(
                kind=kind_hint(a.content_type),
                name=a.filename or "",
                size=a.size or 0,
                declared_mime=a.content_type,
                ref=a.id,
            )
            for a in data.attachments
            if a.id
        )
        if not data.message and not attachments:
            return None  # reactions, empty messages
        sender = env.source_uuid or env.source_number
        if not sender or env.source_number == self.account:
            return None
        is_group = data.group_info is not None and bool(data.group_info.group_id)
        if data.group_info is not None and is_group:
            chat_id = "group." + base64.b64encode(data.group_info.group_id.encode()).decode()
        else:
            chat_id = env.source_number or sender
        mentioned = is_group and (
            any(m.number == self.account for m in data.mentions)
            or (data.quote is not None and data.quote.author_number == self.account)
        )
        text = data.message or ""
        if mentioned:
            text = text.replace("\ufffc", "").strip() or text
        stamp = data.timestamp or env.timestamp
        return InboundMessage(
            id=f"signal:{self.account}:{chat_id}:{sender}:{stamp}",
            channel="signal",
            account=self.account,
            chat_id=chat_id,
            sender_id=sender,
            sender_name=env.source_name,
            text=text,
            is_group=is_group,
            mentioned=mentioned,
            received_at=self._clock.time(),
            attachments=attachments,
        )

    # --- sending ---------------------------------------------------------------------------
    async def send(self, out: OutboundMessage) -> list[str]:
        ids: list[str] = []
        for piece in render(out.text, "signal", SIGNAL_LIMIT, plain=out.plain):
            body = {"message": piece, "number": self.account, "recipients": [out.chat_id]}

            async def once(body: dict[str, Any] = body) -> str:
                resp = await self._request("POST", "/v2/send", json=body)
                return str(resp.json().get("timestamp", ""))

            ids.append(await self._retrier.run(once))
        return ids

    # --- files -----------------------------------------------------------------------------
    async def download(self, att: Attachment, max_bytes: int) -> bytes:
        """``GET /v1/attachments/<id>`` of signal-cli-rest-api, cut off past ``max_bytes``."""
        url = f"{self._api_base}/v1/attachments/{quote(att.ref, safe='')}"
        data, _ = await fetch_own(
            url, max_bytes=max_bytes, platform="Signal", allowed=same_origin(self._api_base)
        )
        return data

    async def send_file(self, out: OutboundFile) -> str:
        """``/v2/send`` with the file in ``base64_attachments`` (a data URI naming it)."""
        name = "".join(c for c in out.name if c not in ";,=") or "file"
        encoded = base64.b64encode(out.data).decode("ascii")
        uri = f"data:{out.mime};filename={name};base64,{encoded}"
        body = {
            "message": out.caption,
            "number": self.account,
            "recipients": [out.chat_id],
            "base64_attachments": [uri],
        }

        async def once() -> str:
            resp = await self._request("POST", "/v2/send", json=body)
            return str(resp.json().get("timestamp", ""))

        return await self._retrier.run(once)

    async def typing(self, chat_id: str) -> None:
        await self._request(
            "PUT", f"/v1/typing-indicator/{self._path_number}", json={"recipient": chat_id}
        )

    async def close(self) -> None:
        http, self._http = self._http, None
        if http is not None:
            await http.aclose()
