"""Discord through discord.py: its gateway client receives, its HTTP client sends.

Durability: Discord's gateway has no ack and nothing is re-delivered to a new session. So the
adapter keeps, per channel, the id of the last message the sink accepted (a :class:`CursorBook`
in the injected :class:`CursorStore`), and on every READY (first connect, and every reconnect
that could not RESUME) reads each known channel's REST history after that id, oldest first,
through the same sink; ``SeenIds`` and the cursors drop what the live stream also brings. A
RESUME replays missed events itself. Live events reach us as raw gateway payloads (the same
shape REST history returns) in a bounded inbox, READY marks in order between them; when the
inbox is full, later messages are noted per channel and read from history once it is empty,
so a slow sink loses nothing. A channel's first message gets a cursor just before it before it
is sunk, so a refusal (or a stop) there is caught up too.

Limits: a DM channel the bot never heard from before has no cursor, so a first DM sent while
the adapter was down is not caught up; a catch-up reads at most ``catch_up_max`` messages per
channel (the oldest after the cursor; the rest are skipped, with a warning).
"""

from __future__ import annotations

import asyncio
import logging
import random
import re
from collections import deque
from collections.abc import Awaitable
from typing import Any, TypeVar

import aiohttp
import discord
import msgspec
import yarl
from discord.http import MultipartParameters

from moltbot.channels.base import (
    RECEIVE_BATCH,
    CursorStore,
    InboundSink,
    SeenIds,
    sink_together,
)
from moltbot.channels.cursors import Cursor, CursorBook
from moltbot.channels.discord_client import DEFAULT_API, Client, Frame, Http, map_error
from moltbot.channels.discord_media import attachments, file_message
from moltbot.channels.formatting import DISCORD_LIMIT, render
from moltbot.channels.retry import DEFAULT_RETRY, Retrier, RetryPolicy, Sleep
from moltbot.clock import SYSTEM_CLOCK, Clock
from moltbot.errors import MoltbotError, PlatformRejected, PlatformUnavailable
from moltbot.messages import Attachment, InboundMessage, OutboundFile, OutboundMessage
from moltbot.tools.web_fetch import WebFetcher

T = TypeVar("T")
log = logging.getLogger(__name__)

_TEXT_TYPES = {0, 19}  # DEFAULT, REPLY
_SDK_ERRORS = (discord.DiscordException, aiohttp.ClientError, TimeoutError, OSError)


class DiscordAdapter:
    channel = "discord"

    def __init__(
        self,
        *,
        account: str,
        token: str,
        cursors: CursorStore,
        api_base: str = DEFAULT_API,
        catch_up_max: int = 200,
        queue_size: int = 256,
        identify_delay: float = 5.0,
        retry: RetryPolicy = DEFAULT_RETRY,
        clock: Clock = SYSTEM_CLOCK,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        fetcher: WebFetcher | None = None,
    ) -> None:
        self.account = account
        self._fetcher = fetcher or WebFetcher()  # attachments: on a CDN, vetted like any URL
        self.last_activity = clock.monotonic()
        self._token, self._api_base, self._identify_delay = token, api_base, identify_delay
        self._book = CursorBook(cursors, f"cursor.discord.{account}")
        self._catch_up_max, self._queue_size = catch_up_max, queue_size
        self._clock = clock
        self._retrier = Retrier(
            retry, platform="Discord", channel="discord", sleep=sleep, clock=clock, rng=rng
        )
        self._client: Client | None = None
        self._used = False  # the client's gateway ran once: a new run() logs in afresh
        self._me: dict[str, str] = {}
        self._seen = SeenIds()
        # gateway messages, and None where a new session began (READY)
        self._inbox: deque[dict[str, Any] | None] = deque()
        self._overflow = False  # the inbox was full: read the history when it is empty
        self._gaps: dict[str, Cursor] = {}  # channel -> (first dropped id - 1, guild)
        self._wake = asyncio.Event()
        self._fatal: MoltbotError | None = None
        self._my_roles: set[str] = set()  # ids of the roles Discord made for this bot
        self._login = asyncio.Lock()  # run() and send() may both want a client

    def __repr__(self) -> str:  # never show the token
        return f"DiscordAdapter(account={self.account!r})"

    async def _call(self, aw: Awaitable[T]) -> T:
        try:
            return await aw
        except _SDK_ERRORS as e:
            log.debug("discord %s: %s", self.account, type(e).__name__)
            raise map_error(e) from None

    async def connect(self) -> dict[str, Any]:
        """Log in (GET /users/@me) and learn the gateway URL (GET /gateway/bot)."""
        async with self._login:
            return await self._connect()

    async def _connect(self) -> dict[str, Any]:
        old, self._client = self._client, None
        if old is not None:
            await old.close()
        client = Client(
            on_raw=self._on_raw,
            on_ready=self._on_ready,
            api_base=self._api_base,
            identify_delay=self._identify_delay,
        )
        try:
            await self._call(client.login(self._token))
            _shards, url, _limit = await self._call(client.api.get_bot_gateway())
        except BaseException:
            await client.close()
            raise
        client.api.gateway = yarl.URL(url)
        self._client, self._used = client, False
        user = client.user
        if user is None:
            raise PlatformUnavailable("Discord did not say who the bot is")
        self._me = {
            "id": str(user.id),
            "username": user.name,
            "name": user.global_name or user.name,
        }
        self.last_activity = self._clock.monotonic()
        return dict(self._me)

    async def _http(self) -> Http:
        async with self._login:
            if self._client is None or self._client.is_closed():
                await self._connect()
            assert self._client is not None
            return self._client.api

    # --- receiving -------------------------------------------------------------------------
    async def run(self, sink: InboundSink) -> None:
        backoff = self._retrier.receiving()
        if self._client is None or self._used or self._client.is_closed():
            await backoff.call(self.connect)
        client = self._client
        assert client is not None
        self._used, self._fatal = True, None
        self._inbox.clear()
        problem: Exception | None = None
        async with asyncio.TaskGroup() as tg:
            gateway = tg.create_task(self._gateway(client))
            try:
                await self._receive(sink)
            except Exception as e:  # raised after the gateway task is stopped
                problem = e
            gateway.cancel()
        if problem is not None:
            raise problem

    async def _gateway(self, client: Client) -> None:
        try:
            await client.connect(reconnect=True)
            self._fatal = PlatformUnavailable("Discord's gateway connection ended")
        except _SDK_ERRORS as e:
            log.warning("discord %s: gateway stopped: %s", self.account, type(e).__name__)
            self._fatal = map_error(e)
        finally:
            self._wake.set()

    async def _receive(self, sink: InboundSink) -> None:
        """The gateway's messages and READY marks, in order: a READY reads each known channel's
        history first; after an overflow, the queue is emptied, then the history is read."""
        await self._book.load()
        while True:
            if self._fatal is not None:
                raise self._fatal
            if not self._inbox:
                if self._overflow:
                    await self._catch_up(sink)
                    continue
                self._wake.clear()
                await self._wake.wait()
                continue
            first = self._inbox.popleft()
            if first is None:
                await self._catch_up(sink)
                continue
            batch = [first]
            while len(batch) < RECEIVE_BATCH and self._inbox:
                nxt = self._inbox[0]
                if nxt is None:
                    break
                batch.append(nxt)
                self._inbox.popleft()
            await self._mark_new_channels(batch)
            await self._deliver(batch, sink)

    async def _mark_new_channels(self, batch: list[dict[str, Any]]) -> None:
        """A cursor just before the first message of every channel that has none yet (this
        batch and what waits behind it): if the sink refuses it, or we stop before it is
        sunk, the next catch-up starts there instead of never knowing the channel."""
        if self._new_channel_cursors(batch):
            await self._book.save()

    def _new_channel_cursors(self, batch: list[dict[str, Any]]) -> bool:
        """:meth:`_mark_new_channels` in the book only (no await): whether it must be saved."""
        fresh: dict[str, Cursor] = {}
        for data in [*batch, *(d for d in self._inbox if d is not None)]:
            channel = str(data["channel_id"])
            if channel in self._book.channels or self.to_inbound(data) is None:
                continue
            before = int(data["id"]) - 1
            if channel not in fresh or before < fresh[channel].last:
                fresh[channel] = Cursor(before, str(data.get("guild_id") or ""))
        return bool(fresh) and self._book.advanced(fresh)

    def _push(self, item: dict[str, Any] | None) -> bool:
        if self._overflow or len(self._inbox) >= self._queue_size:
            self._overflow = True
            return False
        self._inbox.append(item)
        return True

    def _on_raw(self, raw: str | bytes) -> None:
        """Every gateway payload (from discord.py's reading loop): keep the MESSAGE_CREATEs."""
        self.last_activity = self._clock.monotonic()
        text = raw if isinstance(raw, str) else raw.decode("utf-8", "replace")
        if '"MESSAGE_CREATE"' not in text and '"GUILD_CREATE"' not in text:
            return
        try:
            frame = msgspec.json.decode(text, type=Frame)
        except msgspec.DecodeError:
            return
        data = frame.d
        if not isinstance(data, dict):
            return
        if frame.t == "GUILD_CREATE":
            self._note_my_role(data)
            return
        if frame.t != "MESSAGE_CREATE":
            return
        channel = str(data.get("channel_id") or "")
        if not channel.isdigit() or not str(data.get("id") or "").isdigit():
            return
        if not self._push(data):  # read from history once the queue is empty
            if channel not in self._gaps:
                log.warning(
                    "discord %s: receive queue full; channel %s is read from history",
                    self.account,
                    channel,
                )
                self._gaps[channel] = Cursor(int(data["id"]) - 1, str(data.get("guild_id") or ""))
        self._wake.set()

    def _note_my_role(self, guild: dict[str, Any]) -> None:
        """The bot's own role in a guild: typing @bot there may mention it instead of us."""
        for role in guild.get("roles") or []:
            tags = role.get("tags") if isinstance(role, dict) else None
            if isinstance(tags, dict) and str(tags.get("bot_id")) == self._me.get("id"):
                self._my_roles.add(str(role.get("id")))

    def _on_ready(self) -> None:
        """A new session: what was sent since the last one is only in the history."""
        self._push(None)  # when the queue is full, the overflow's catch-up covers it
        self._wake.set()

    async def _catch_up(self, sink: InboundSink) -> None:
        """Every known channel's messages after its cursor (and every overflowed channel's
        from its first dropped message), oldest first, through the sink. A READY mark can be
        read before messages still queued: a new channel among them gets its cursor first, just
        before its first queued message, so the catch-up starts there and not past it."""
        marked = self._new_channel_cursors([])  # with the gaps taken, before any await
        gaps, self._gaps, self._overflow = self._gaps, {}, False
        if marked:
            await self._book.save()
        starts = dict(gaps)
        starts.update(self._book.channels)
        for channel, start in starts.items():
            await self._catch_up_channel(channel, start, sink)

    async def _catch_up_channel(self, channel: str, start: Cursor, sink: InboundSink) -> None:
        after, fetched, backoff = start.last, 0, self._retrier.receiving()
        while fetched < self._catch_up_max:
            limit = min(100, self._catch_up_max - fetched)

            async def page(after: int = after, limit: int = limit) -> list[Any] | None:
                http = await self._http()
                try:
                    return await http.logs_from(channel, limit, after=after)
                except (discord.NotFound, discord.Forbidden):
                    return None
                except _SDK_ERRORS as e:
                    raise map_error(e) from None

            got = await backoff.call(page)
            if got is None:  # deleted, or the bot lost access: nothing more will come
                log.warning(
                    "discord %s: channel %s is gone; its cursor is dropped", self.account, channel
                )
                self._book.forget(channel)
                await self._book.save()
                return
            found = sorted(got, key=lambda m: int(m["id"]))
            fetched += len(found)
            if found:
                after = int(found[-1]["id"])
                await self._deliver(
                    [{**m, "guild_id": start.guild} if start.guild else m for m in found], sink
                )
            if len(found) < limit:
                return
        log.warning(
            "discord %s: more than %d messages missed in channel %s; the rest are "
            "skipped (channels.discord catch_up_max)",
            self.account,
            fetched,
            channel,
        )

    async def _deliver(self, batch: list[dict[str, Any]], sink: InboundSink) -> None:
        """Sink the batch's new messages together; move each channel's cursor up to (not past)
        its first refused message; then raise that refusal."""
        pairs: list[tuple[dict[str, Any], InboundMessage | None]] = []
        taken: set[str] = set()
        for data in batch:
            msg = self.to_inbound(data)
            if msg is not None and (
                msg.id in self._seen
                or msg.id in taken
                or int(data["id"]) <= self._book.last(msg.chat_id)
            ):
                msg = None
            if msg is not None:
                taken.add(msg.id)
            pairs.append((data, msg))
        outcomes = iter(await sink_together(sink, [m for _, m in pairs if m is not None]))
        moves: dict[str, Cursor] = {}
        blocked: set[str] = set()
        first: Exception | None = None
        for data, msg in pairs:
            channel = str(data["channel_id"])
            problem = next(outcomes) if msg is not None else None
            if problem is not None:
                first = first or problem
                blocked.add(channel)
            if channel in blocked:
                continue
            if msg is not None:
                self._seen.add(msg.id)
            if msg is not None or channel in self._book.channels:
                moves[channel] = Cursor(int(data["id"]), str(data.get("guild_id") or ""))
        if self._book.advanced(moves):
            await self._book.save()
        if first is not None:
            raise first

    def to_inbound(self, data: dict[str, Any]) -> InboundMessage | None:
        """A message payload (gateway MESSAGE_CREATE or REST history) as an InboundMessage."""
        author = data.get("author") or {}
        content, channel, mid = data.get("content"), data.get("channel_id"), data.get("id")
        if author.get("bot") or author.get("system") or data.get("webhook_id"):
            return None  # other bots, webhooks and the bot itself
        if not author.get("id") or str(author["id"]) == self._me.get("id"):
            return None
        if data.get("type", 0) not in _TEXT_TYPES or not isinstance(content, str):
            return None
        files = attachments(data)
        if not (content.strip() or files) or not channel or not mid:
            return None
        is_group = bool(data.get("guild_id"))
        mentioned = is_group and self._mentions_me(data, content)
        text = content
        if mentioned:
            text = self._me_tag().sub("", content).strip() or content
        member = data.get("member") or {}
        name = member.get("nick") or author.get("global_name") or author.get("username") or ""
        return InboundMessage(
            id=f"discord:{self.account}:{channel}:{mid}",
            channel="discord",
            account=self.account,
            chat_id=str(channel),
            sender_id=str(author["id"]),
            sender_name=str(name),
            text=text,
            is_group=is_group,
            mentioned=mentioned,
            received_at=self._clock.time(),
            attachments=files,
        )

    def _mentions_me(self, data: dict[str, Any], content: str) -> bool:
        me = self._me.get("id", "")
        if not me:
            return False
        if any(str(u.get("id")) == me for u in data.get("mentions") or []):
            return True
        if any(str(r) in self._my_roles for r in data.get("mention_roles") or []):
            return True
        replied = (data.get("referenced_message") or {}).get("author") or {}
        return str(replied.get("id")) == me or bool(self._me_tag().search(content))

    def _me_tag(self) -> re.Pattern[str]:
        """``<@id>``, ``<@!id>`` (nickname form) and ``<@&role>`` of the bot's own roles."""
        tags = [rf"<@!?{self._me.get('id', '')}>", *(f"<@&{r}>" for r in self._my_roles)]
        return re.compile("|".join(tags))

    # --- sending ---------------------------------------------------------------------------
    async def send(self, out: OutboundMessage) -> list[str]:
        if not out.chat_id.isdigit():
            raise PlatformRejected(
                "not a Discord channel id", hint="a Discord chat id is the channel's number"
            )
        reply_to = _message_id(out.in_reply_to, out.chat_id)
        ids: list[str] = []
        for i, piece in enumerate(render(out.text, "discord", DISCORD_LIMIT, plain=out.plain)):
            payload: dict[str, Any] = {"content": piece, "allowed_mentions": {"parse": []}}
            if reply_to is not None and i == 0:
                payload["message_reference"] = {
                    "message_id": reply_to,
                    "channel_id": out.chat_id,
                    "fail_if_not_exists": False,
                }

            async def once(payload: dict[str, Any] = payload) -> str:
                http = await self._http()
                params = MultipartParameters(payload=payload, multipart=None, files=None)
                sent = await self._call(http.send_message(out.chat_id, params=params))
                return str(sent["id"])

            ids.append(await self._retrier.run(once))
        return ids

    async def download(self, att: Attachment, max_bytes: int) -> bytes:
        return await self._fetcher.download(att.ref, max_bytes)  # the SSRF-guarded path

    async def send_file(self, out: OutboundFile) -> str:
        if not out.chat_id.isdigit():
            raise PlatformRejected("not a Discord channel id")

        async def once() -> str:
            with file_message(out) as params:
                sent = await self._call(
                    (await self._http()).send_message(out.chat_id, params=params)
                )
            return str(sent["id"])

        return await self._retrier.run(once)

    async def typing(self, chat_id: str) -> None:
        if not chat_id.isdigit():
            raise PlatformRejected("not a Discord channel id")
        http = await self._http()
        await self._call(http.send_typing(chat_id))

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                await client.close()
            except (discord.DiscordException, aiohttp.ClientError, OSError) as e:
                log.debug("discord %s: close: %s", self.account, type(e).__name__)


def _message_id(inbound_id: str | None, chat_id: str) -> str | None:
    """The Discord message id of ``inbound_id`` when it was sent in ``chat_id``."""
    if not inbound_id or not inbound_id.startswith("discord:"):
        return None
    parts = inbound_id.split(":")
    if len(parts) != 4 or parts[2] != chat_id or not parts[3].isdigit():
        return None
    return parts[3]
