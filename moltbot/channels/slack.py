"""Slack through slack-sdk: Web API for sending, Socket Mode for receiving.

An envelope is acked only after the sink returned; Slack re-delivers unacked envelopes. The
SDK's Socket Mode client keeps the connection (ping, reconnect) with tasks of its own; our
side is one bounded queue fed from its receive loop (so a slow sink back-pressures the socket).
Slack has no typing indicator for bots outside assistant threads: ``typing`` is a no-op.
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections.abc import Awaitable
from typing import Any, TypeVar

import aiohttp
import httpx
import msgspec
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.socket_mode.aiohttp import SocketModeClient
from slack_sdk.socket_mode.response import SocketModeResponse
from slack_sdk.web.async_client import AsyncWebClient

from moltbot.channels.base import InboundSink, SeenIds, drain, sink_together
from moltbot.channels.formatting import SLACK_LIMIT, render
from moltbot.channels.retry import (
    DEFAULT_RETRY,
    Retrier,
    RetryPolicy,
    Sleep,
    parse_retry_after,
)
from moltbot.clock import SYSTEM_CLOCK, Clock
from moltbot.errors import MoltbotError, PlatformRejected, PlatformUnavailable, RateLimited
from moltbot.media.fetch import fetch_own, same_origin
from moltbot.messages import Attachment, InboundMessage, OutboundFile, OutboundMessage

T = TypeVar("T")
log = logging.getLogger(__name__)
_sdk_log = logging.getLogger(__name__ + ".sdk")

_AUTH_ERRORS = {
    "invalid_auth",
    "not_authed",
    "account_inactive",
    "token_revoked",
    "token_expired",
    "no_permission",
    "missing_scope",
    "not_allowed_token_type",
}
_TRANSIENT = {"internal_error", "fatal_error", "service_unavailable", "request_timeout"}
_TEXT_SUBTYPES = {None, "file_share", "thread_broadcast"}


def map_error(exc: BaseException) -> MoltbotError:
    """The one place slack-sdk / aiohttp errors become moltbot errors."""
    if isinstance(exc, SlackApiError):
        resp = exc.response
        data = resp.data if isinstance(resp.data, dict) else {}
        error = str(data.get("error") or "")
        code = error if re.fullmatch(r"[a-z_]{1,40}", error) else f"HTTP {resp.status_code}"
        if resp.status_code == 429 or error == "ratelimited":
            after = parse_retry_after((resp.headers or {}).get("Retry-After"))
            return RateLimited("Slack is rate limiting us", retry_after=after)
        if resp.status_code >= 500 or error in _TRANSIENT:
            return PlatformUnavailable(f"Slack is unavailable right now ({code})")
        if error in _AUTH_ERRORS or resp.status_code in (401, 403):
            return PlatformRejected(
                f"Slack refused our token ({code})",
                hint="check channels.slack bot_token / app_token",
            )
        return PlatformRejected(f"Slack rejected the request ({code})")
    if isinstance(exc, aiohttp.ClientError | TimeoutError | OSError):
        return PlatformUnavailable("Slack could not be reached")
    if isinstance(exc, SlackClientError):
        return PlatformRejected("Slack client error")
    return PlatformRejected("Slack request failed")


class _Envelope(msgspec.Struct):
    type: str = ""
    envelope_id: str = ""
    payload: dict[str, Any] = {}


class SlackAdapter:
    channel = "slack"

    def __init__(
        self,
        *,
        account: str,
        bot_token: str,
        app_token: str,
        api_base: str = "https://slack.com/api/",
        ping_interval: float = 5.0,
        queue_size: int = 64,
        retry: RetryPolicy = DEFAULT_RETRY,
        clock: Clock = SYSTEM_CLOCK,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.account = account
        self.last_activity = clock.monotonic()
        self._bot_token, self._app_token = bot_token, app_token
        self._api_base = api_base if api_base.endswith("/") else api_base + "/"
        self._ping_interval, self._queue_size = ping_interval, queue_size
        self._clock = clock
        self._retrier = Retrier(
            retry, platform="Slack", channel="slack", sleep=sleep, clock=clock, rng=rng
        )
        self._session: aiohttp.ClientSession | None = None
        self._web: AsyncWebClient | None = None
        self._socket: SocketModeClient | None = None
        self._me: dict[str, str] | None = None
        self._wss_url: str | None = None
        self._seen = SeenIds()

    def __repr__(self) -> str:  # never show the tokens
        return f"SlackAdapter(account={self.account!r})"

    def _client(self) -> AsyncWebClient:
        if self._web is None:
            self._session = aiohttp.ClientSession()
            self._web = AsyncWebClient(
                token=self._bot_token,
                base_url=self._api_base,
                session=self._session,
                retry_handlers=[],
                logger=_sdk_log,
            )
        return self._web

    async def _call(self, aw: Awaitable[T]) -> T:
        try:
            return await aw
        except (SlackClientError, aiohttp.ClientError, TimeoutError, OSError) as e:
            log.debug("slack %s: %s", self.account, type(e).__name__)
            raise map_error(e) from None

    async def connect(self) -> dict[str, Any]:
        web = self._client()
        auth = await self._call(web.auth_test())
        opened = await self._call(web.apps_connections_open(app_token=self._app_token))
        self._wss_url = str(opened["url"])
        self._me = {
            "id": str(auth["user_id"]),
            "bot_id": str(auth.get("bot_id") or ""),
            "team": str(auth.get("team_id") or ""),
            "name": str(auth.get("user") or ""),
        }
        self.last_activity = self._clock.monotonic()
        return dict(self._me)

    # --- receiving -------------------------------------------------------------------------
    async def run(self, sink: InboundSink) -> None:
        await self._close_socket()  # a second run() on the same instance starts clean
        backoff = self._retrier.receiving()
        if self._me is None or self._wss_url is None:
            await backoff.call(self.connect)
        queue: asyncio.Queue[str] = asyncio.Queue(self._queue_size)

        async def on_message(m: aiohttp.WSMessage) -> None:
            self.last_activity = self._clock.monotonic()
            await queue.put(m.data)  # runs in the SDK's receive loop: a full queue waits

        socket = SocketModeClient(
            self._app_token,
            web_client=self._client(),
            logger=_sdk_log,
            ping_interval=self._ping_interval,
            on_message_listeners=[on_message],
        )
        self._socket = socket
        socket.wss_uri, self._wss_url = self._wss_url, None
        await socket.connect()
        while True:
            try:
                raw = await asyncio.wait_for(queue.get(), self._ping_interval)
            except TimeoutError:  # quiet: alive as long as the SDK's ping/pong says so
                if await socket.is_connected():
                    self.last_activity = self._clock.monotonic()
                continue
            await self._take(drain(queue, raw), sink, socket)

    async def _take(self, raws: list[str], sink: InboundSink, socket: SocketModeClient) -> None:
        """The envelopes that waited together: their messages sunk together, then each acked
        whose message the sink accepted (or that carried none); the first refusal is raised
        after the others were acked (Slack re-delivers what is not acked)."""
        envelopes: list[tuple[str, InboundMessage | None]] = []
        batch: set[str] = set()
        for raw in raws:
            try:
                envelope = msgspec.json.decode(raw, type=_Envelope)
            except msgspec.DecodeError:
                log.warning("slack %s: undecodable socket message skipped", self.account)
                continue
            if envelope.type != "events_api" or not envelope.envelope_id:
                continue  # hello, disconnect (the SDK reconnects), interactive, ...
            msg = self.to_inbound(envelope.payload.get("event") or {})
            if msg is not None and (msg.id in self._seen or msg.id in batch):
                msg = None  # a re-delivery: ack it again, sink it no more
            if msg is not None:
                batch.add(msg.id)
            envelopes.append((envelope.envelope_id, msg))
        outcomes = iter(await sink_together(sink, [m for _, m in envelopes if m is not None]))
        first: Exception | None = None
        for envelope_id, msg in envelopes:
            if msg is not None:
                problem = next(outcomes)
                if problem is not None:  # no ack -> Slack re-delivers
                    first = first or problem
                    continue
                self._seen.add(msg.id)
            try:
                await socket.send_socket_mode_response(SocketModeResponse(envelope_id))
            except (ConnectionError, aiohttp.ClientError) as e:  # Slack re-delivers; deduped
                log.info("slack %s: ack not sent: %s", self.account, type(e).__name__)
        if first is not None:
            raise first

    def to_inbound(self, event: dict[str, Any]) -> InboundMessage | None:
        me = self._me or {}
        kind, user, channel = event.get("type"), event.get("user"), event.get("channel")
        text, ts = event.get("text"), event.get("ts")
        if kind not in ("message", "app_mention") or not user or not channel or not ts:
            return None
        if event.get("subtype") not in _TEXT_SUBTYPES or event.get("bot_id"):
            return None
        attachments = _attachments(event.get("files"))
        if not isinstance(text, str) and attachments:
            text = ""
        if user == me.get("id") or not isinstance(text, str):
            return None
        tag = f"<@{me.get('id', '')}>"
        is_group = kind == "app_mention" or event.get("channel_type") != "im"
        mentioned = is_group and (kind == "app_mention" or tag in text)
        if mentioned:
            text = text.replace(tag, "").strip() or text
        profile = event.get("user_profile") or {}
        return InboundMessage(
            id=f"slack:{self.account}:{channel}:{ts}",
            channel="slack",
            account=self.account,
            chat_id=str(channel),
            sender_id=str(user),
            sender_name=str(profile.get("display_name") or profile.get("real_name") or ""),
            text=text,
            is_group=is_group,
            mentioned=mentioned,
            thread_id=str(event["thread_ts"]) if event.get("thread_ts") else None,
            received_at=self._clock.time(),
            attachments=attachments,
        )

    # --- sending ---------------------------------------------------------------------------
    async def send(self, out: OutboundMessage) -> list[str]:
        web = self._client()
        ids: list[str] = []
        for piece in render(out.text, "slack", SLACK_LIMIT, plain=out.plain):

            async def once(piece: str = piece) -> str:
                resp = await self._call(
                    web.chat_postMessage(
                        channel=out.chat_id,
                        text=piece,
                        thread_ts=out.thread_id,
                        mrkdwn=not out.plain,
                    )
                )
                return str(resp["ts"])

            ids.append(await self._retrier.run(once))
        return ids

    # --- files -----------------------------------------------------------------------------
    async def download(self, att: Attachment, max_bytes: int) -> bytes:
        """A shared file from its ``url_private`` with the bot token, only on Slack's own hosts
        (or the configured api_base's), never following a redirect with the token."""
        data, ctype = await fetch_own(
            att.ref,
            max_bytes=max_bytes,
            allowed=self._slack_host,
            platform="Slack",
            headers={"Authorization": f"Bearer {self._bot_token}"},
        )
        if ctype == "text/html" and not att.declared_mime.startswith("text/html"):
            raise PlatformRejected(  # Slack's sign-in page: the token may not read files
                "Slack did not give the file", hint="the bot token needs the files:read scope"
            )
        return data

    def _slack_host(self, url: httpx.URL) -> bool:
        if url.scheme == "https" and (url.host == "slack.com" or url.host.endswith(".slack.com")):
            return True
        return same_origin(self._api_base)(url)

    async def send_file(self, out: OutboundFile) -> str:
        """The files upload v2 flow (getUploadURLExternal, the bytes, completeUploadExternal)."""
        web = self._client()

        async def once() -> str:
            resp = await self._call(
                web.files_upload_v2(
                    channel=out.chat_id,
                    file=out.data,
                    filename=out.name,
                    title=out.name,
                    initial_comment=out.caption or None,
                    thread_ts=out.thread_id,
                )
            )
            files = resp.get("files") or [{}]
            return str(files[0].get("id", ""))

        return await self._retrier.run(once)

    async def typing(self, chat_id: str) -> None:
        """Slack offers bots no typing indicator in channels or DMs: nothing to do."""

    async def _close_socket(self) -> None:
        socket, self._socket = self._socket, None
        if socket is not None:
            try:
                await socket.close()
            except (aiohttp.ClientError, OSError) as e:
                log.debug("slack %s: close: %s", self.account, type(e).__name__)

    async def close(self) -> None:
        await self._close_socket()
        session, self._session, self._web = self._session, None, None
        if session is not None:
            await session.close()


def _attachments(files: Any) -> tuple[Attachment, ...]:
    """The files of a ``file_share`` event as references (their ``url_private``)."""
    out: list[Attachment] = []
    for f in files if isinstance(files, list) else []:
        if not isinstance(f, dict) or f.get("mode") in ("tombstone", "external"):
            continue
        url = f.get("url_private_download") or f.get("url_private")
        if not isinstance(url, str):
            continue
        mime = str(f.get("mimetype") or "")
        kind = (
            "image"
            if mime.startswith("image/")
            else "audio"
            if mime.startswith("audio/")
            else "document"
        )
        size = f.get("size")
        out.append(
            Attachment(
                kind=kind,
                name=str(f.get("name") or ""),
                declared_mime=mime,
                ref=url,
                size=size if isinstance(size, int) else 0,
            )
        )
    return tuple(out)
