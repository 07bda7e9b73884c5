"""iMessage through a BlueBubbles server (its REST API over httpx).

Receiving polls ``POST /api/v1/message/query`` rather than taking BlueBubbles' webhooks or its
socket.io stream: a webhook needs moltbot to listen on a port the Mac can reach, its documented
webhooks carry no signature to check and are not queued again when delivery fails, so a catch-up
query is needed anyway after any outage. With polling, live receive and catch-up are the same
query from the same cursor (``moltbot.channels.time_cursor``): one code path, nothing listening, no
socket.io client. The price: up to ``poll_interval_s`` of latency.

Durability: the cursor (creation time of the last message the sink accepted, and the ids
accepted just before it) is saved to a :class:`CursorStore` after the sink returned. On start
and after every outage the adapter asks for what was created since (at most ``catch_up_max``
messages, the newest, handed over oldest first); ids already accepted are skipped (the cursor's
``recent``: what ``SeenIds`` does for a live stream, but saved, so it holds across restarts),
and the journal de-duplicates on ``imessage:<account>:<message guid>`` besides. With no saved
cursor the adapter starts at the newest message the server has: history is not answered.

The server password travels as the ``password`` query parameter (the scheme BlueBubbles
documents); it is added by the transport, so httpx's request log and our errors never show it.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
import uuid
from typing import Any, Literal
from urllib.parse import quote

import httpx
import msgspec

from moltbot.channels.base import (
    RECEIVE_BATCH,
    CursorStore,
    InboundSink,
    MemoryCursors,
    sink_together,
)
from moltbot.channels.formatting import render
from moltbot.channels.retry import (
    DEFAULT_RETRY,
    Retrier,
    RetryPolicy,
    Sleep,
    classify_status,
)
from moltbot.channels.time_cursor import Cursor
from moltbot.clock import SYSTEM_CLOCK, Clock
from moltbot.errors import MoltbotError, PlatformRejected, PlatformUnavailable, RateLimited
from moltbot.media.fetch import read_capped
from moltbot.media.sniff import kind_hint
from moltbot.messages import Attachment, InboundMessage, OutboundFile, OutboundMessage
from moltbot.netaddr import is_loopback

log = logging.getLogger(__name__)

IMESSAGE_LIMIT = 3000  # chosen: iMessage has no small hard limit; long bubbles read badly
QUERY_MAX = 1000  # messages one query asks for at most (BlueBubbles caps its pages too)
GROUP_STYLE = 43  # BlueBubbles' chat style of a group chat (45: one-to-one)
SendMethod = Literal["auto", "apple-script", "private-api"]
REFUSED_HINT = (
    "check channels.imessage password: it must be the BlueBubbles server "
    'password (BlueBubbles > Settings), e.g. "secret:bluebubbles_password" '
    "set with `moltbot secrets set bluebubbles_password`"
)


def map_error(exc: BaseException) -> MoltbotError:
    """The one place httpx errors become moltbot errors (no URL, so no password)."""
    if isinstance(exc, httpx.HTTPStatusError):
        status = exc.response.status_code
        if status in (401, 403):
            return PlatformRejected(
                "the BlueBubbles server refused the password", hint=REFUSED_HINT
            )
        err = classify_status(status, platform="BlueBubbles")
        return err or PlatformRejected(f"BlueBubbles answered HTTP {status}")
    if isinstance(exc, httpx.TransportError | TimeoutError | OSError):
        return PlatformUnavailable(
            "the BlueBubbles server could not be reached",
            hint="is BlueBubbles running, and is api_base its address?",
        )
    if isinstance(exc, ValueError | msgspec.ValidationError):
        return PlatformUnavailable("the BlueBubbles server sent an answer we cannot read")
    return PlatformRejected("BlueBubbles request failed")


def _cleartext(api_base: str) -> bool:
    """True when ``api_base`` sends the password unencrypted off this machine."""
    url = httpx.URL(api_base)
    return url.scheme == "http" and not is_loopback(url.host)  # a host name: another machine


class _PasswordTransport(httpx.AsyncBaseTransport):
    """Adds ``password`` to the query of the request actually sent (not the one httpx logs)."""

    def __init__(self, password: str, inner: httpx.AsyncBaseTransport) -> None:
        self._password, self._inner = password, inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        sent = httpx.Request(
            request.method,
            request.url.copy_merge_params({"password": self._password}),
            headers=request.headers,
            stream=request.stream,
            extensions=request.extensions,
        )
        return await self._inner.handle_async_request(sent)

    async def aclose(self) -> None:
        await self._inner.aclose()


class _Handle(msgspec.Struct, rename="camel"):
    address: str = ""


class _Chat(msgspec.Struct, rename="camel"):
    guid: str = ""
    style: int = 0
    display_name: str | None = None


class _Att(msgspec.Struct, rename="camel"):
    guid: str = ""
    transfer_name: str | None = None
    mime_type: str | None = None
    total_bytes: int | None = None


class _Message(msgspec.Struct, rename="camel"):
    guid: str
    date_created: int = 0
    text: str | None = None
    is_from_me: bool = False
    item_type: int = 0
    associated_message_guid: str | None = None
    handle: _Handle | None = None
    chats: list[_Chat] = []
    attachments: list[_Att] = []


class _Answer(msgspec.Struct):
    data: list[_Message] = []


class IMessageAdapter:
    channel = "imessage"

    def __init__(
        self,
        *,
        account: str,
        api_base: str,
        password: str,
        cursor_store: CursorStore | None = None,
        mention_names: list[str] | tuple[str, ...] = ("moltbot",),
        catch_up_max: int = 200,
        poll_interval_s: float = 2.0,
        send_method: SendMethod = "auto",
        retry: RetryPolicy = DEFAULT_RETRY,
        clock: Clock = SYSTEM_CLOCK,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.account = account
        self.last_activity = clock.monotonic()
        self._api_base, self._password = api_base.rstrip("/"), password
        self._store = cursor_store if cursor_store is not None else MemoryCursors()
        self._key = f"cursor.imessage.{account}"
        names = [re.escape(n.strip()) for n in mention_names if n.strip()]
        self._mention = (
            re.compile(rf"(?<!\w)@?(?:{'|'.join(names)})(?!\w)", re.IGNORECASE) if names else None
        )
        self._catch_up_max, self._interval = catch_up_max, poll_interval_s
        self._method: SendMethod = send_method
        self._clock = clock
        self._retrier = Retrier(
            retry, platform="BlueBubbles", channel="imessage", sleep=sleep, clock=clock, rng=rng
        )
        self._http: httpx.AsyncClient | None = None
        self._info: dict[str, Any] | None = None
        self._cursor: Cursor | None = None
        if _cleartext(self._api_base):
            log.warning(
                "imessage %s: api_base is plain http to another machine: the BlueBubbles "
                "password crosses the network unencrypted (use https or a VPN)",
                account,
            )

    def __repr__(self) -> str:  # never show the password
        return f"IMessageAdapter(account={self.account!r})"

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            inner = httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=8))
            self._http = httpx.AsyncClient(
                base_url=self._api_base,
                timeout=30.0,
                transport=_PasswordTransport(self._password, inner),
            )
        return self._http

    async def _request(self, method: str, path: str, **kw: Any) -> httpx.Response:
        try:
            resp = await self._client().request(method, path, **kw)
            resp.raise_for_status()
        except (httpx.HTTPError, OSError) as e:
            log.debug("imessage %s: %s %s: %s", self.account, method, path, type(e).__name__)
            raise map_error(e) from None
        return resp

    async def connect(self) -> dict[str, Any]:
        await self._request("GET", "/api/v1/ping")
        try:
            info = (await self._request("GET", "/api/v1/server/info")).json().get("data") or {}
        except (ValueError, AttributeError):
            raise map_error(ValueError()) from None
        self._info = info if isinstance(info, dict) else {}
        self.last_activity = self._clock.monotonic()
        return {
            "id": str(self._info.get("detected_imessage") or self.account),
            "server_version": str(self._info.get("server_version", "")),
            "private_api": self._private_api(),
        }

    def _private_api(self) -> bool:
        info = self._info or {}
        return bool(info.get("private_api")) and bool(info.get("helper_connected"))

    # --- receiving -------------------------------------------------------------------------
    async def run(self, sink: InboundSink) -> None:
        backoff = self._retrier.receiving()
        if self._info is None:
            await backoff.call(self.connect)
        if self._cursor is None:
            self._cursor = Cursor.decode(await self._store.get(self._key))
        if self._cursor is None:
            self._cursor = await backoff.call(self._newest)
            await self._store.put(self._key, self._cursor.encode())
        while True:
            try:
                fresh = await self._fetch(self._cursor)
            except (PlatformUnavailable, RateLimited) as e:
                await backoff.failed(e)
                continue
            backoff.ok()
            self.last_activity = self._clock.monotonic()
            if fresh:
                await self._deliver(fresh, sink, self._cursor)
            else:
                await asyncio.sleep(self._interval)  # a plain wait between polls

    async def _query(self, **body: Any) -> list[_Message]:
        resp = await self._request(
            "POST",
            "/api/v1/message/query",
            json={"with": ["chat", "handle", "attachment"], "offset": 0, **body},
        )
        try:
            return msgspec.json.decode(resp.content, type=_Answer).data
        except (msgspec.DecodeError, msgspec.ValidationError) as e:
            raise map_error(ValueError()) from e

    async def _newest(self) -> Cursor:
        """A first start: begin at the server's newest message (its clock, not ours)."""
        newest = await self._query(limit=1, sort="DESC")
        return Cursor.starting_at(newest[0].date_created, newest[0].guid) if newest else Cursor()

    async def _fetch(self, cursor: Cursor) -> list[_Message]:
        """What was created since the cursor and is not accepted yet, oldest first: at most
        ``catch_up_max``, the newest; the older rest is given up for good (the floor moves)."""
        after = cursor.after()
        limit = min(QUERY_MAX, self._catch_up_max + len(cursor.recent))
        got = await self._query(limit=limit, sort="DESC", after=after)
        fresh = [m for m in reversed(got) if not cursor.seen(m.guid) and m.date_created >= after]
        cut = len(got) >= limit and not cursor.seen(got[-1].guid)  # older ones did not fit
        if fresh and (cut or len(fresh) > self._catch_up_max):
            fresh = fresh[-self._catch_up_max :]
            cursor.floor = max(cursor.floor, fresh[0].date_created)
            log.warning(
                "imessage %s: more than %d new messages since the last one seen; older "
                "ones are skipped (channels.imessage catch_up_max)",
                self.account,
                self._catch_up_max,
            )
        return fresh

    async def _deliver(self, items: list[_Message], sink: InboundSink, cursor: Cursor) -> None:
        """Sink in batches; the cursor moves past what the sink took, and is saved, before any
        refusal is raised (the refused message and those after it come again)."""
        failed: Exception | None = None
        for start in range(0, len(items), RECEIVE_BATCH):
            batch = items[start : start + RECEIVE_BATCH]
            pairs = [(item, self.to_inbound(item)) for item in batch]
            outcomes = iter(await sink_together(sink, [m for _, m in pairs if m is not None]))
            for item, msg in pairs:
                problem = next(outcomes) if msg is not None else None
                if problem is not None:
                    failed = failed or problem
                    continue
                cursor.accept(item.guid, item.date_created, advance=failed is None)
            await self._store.put(self._key, cursor.encode())
            if failed is not None:
                raise failed

    def to_inbound(self, item: _Message) -> InboundMessage | None:
        text = (item.text or "").replace("\ufffc", "").strip()
        files = tuple(
            Attachment(
                kind=kind_hint(a.mime_type or ""),
                name=a.transfer_name or "",
                size=a.total_bytes or 0,
                declared_mime=a.mime_type or "",
                ref=a.guid,
            )
            for a in item.attachments
            if a.guid
        )
        if (
            item.is_from_me
            or not (text or files)
            or item.item_type != 0
            or item.associated_message_guid
            or item.handle is None
            or not item.handle.address
            or not item.chats
        ):
            return None  # our own, attachments only, tapbacks, group events
        chat = item.chats[0]
        is_group = chat.style == GROUP_STYLE or ";+;" in chat.guid
        mentioned = is_group and self._mention is not None and bool(self._mention.search(text))
        return InboundMessage(
            id=f"imessage:{self.account}:{item.guid}",
            channel="imessage",
            account=self.account,
            chat_id=chat.guid,
            sender_id=item.handle.address,
            sender_name=item.handle.address,
            text=text,
            is_group=is_group,
            mentioned=mentioned,
            received_at=self._clock.time(),
            attachments=files,
        )

    # --- sending ---------------------------------------------------------------------------
    async def send(self, out: OutboundMessage) -> list[str]:
        method = self._method
        if method == "auto":
            method = "private-api" if self._private_api() else "apple-script"
        ids: list[str] = []
        for piece in render(out.text, "signal", IMESSAGE_LIMIT, plain=out.plain):
            body = {
                "chatGuid": out.chat_id,
                "tempGuid": f"moltbot-{uuid.uuid4()}",
                "message": piece,
                "method": method,
            }

            async def once(body: dict[str, Any] = body) -> str:
                resp = await self._request("POST", "/api/v1/message/text", json=body)
                try:
                    return str((resp.json().get("data") or {}).get("guid", ""))
                except (ValueError, AttributeError):
                    return ""  # sent; the server's answer is just unreadable

            ids.append(await self._retrier.run(once))
        return ids

    # --- files -----------------------------------------------------------------------------
    async def download(self, att: Attachment, max_bytes: int) -> bytes:
        """``/api/v1/attachment/<guid>/download`` of the BlueBubbles server, capped."""
        path = f"/api/v1/attachment/{quote(att.ref, safe='')}/download"
        try:
            async with self._client().stream("GET", path) as resp:
                resp.raise_for_status()
                return await read_capped(resp, max_bytes)
        except (httpx.HTTPError, OSError) as e:
            raise map_error(e) from None

    async def send_file(self, out: OutboundFile) -> str:
        """``/api/v1/message/attachment`` (multipart: chatGuid, tempGuid, name, the file)."""
        method = self._method
        if method == "auto":
            method = "private-api" if self._private_api() else "apple-script"
        form = {
            "chatGuid": out.chat_id,
            "tempGuid": f"moltbot-{uuid.uuid4()}",
            "name": out.name,
            "method": method,
        }

        async def once() -> str:
            files = {"attachment": (out.name, out.data, out.mime)}
            resp = await self._request("POST", "/api/v1/message/attachment", data=form, files=files)
            try:
                return str((resp.json().get("data") or {}).get("guid", ""))
            except (ValueError, AttributeError):
                return ""

        return await self._retrier.run(once)

    async def typing(self, chat_id: str) -> None:
        """Only with BlueBubbles' Private API (AppleScript cannot type); else nothing."""
        if self._private_api():
            await self._request("POST", f"/api/v1/chat/{quote(chat_id, safe='')}/typing")

    async def close(self) -> None:
        http, self._http = self._http, None
        if http is not None:
            await http.aclose()
