"""discord.py, bent to the adapter's needs: per-instance base URLs, raw gateway payloads,
the one mapping of its errors to moltbot errors."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import aiohttp
import discord
import msgspec
import yarl
from discord.gateway import DiscordWebSocket
from discord.http import HTTPClient, Route

from moltbot.errors import MoltbotError, PlatformRejected, PlatformUnavailable, RateLimited

DEFAULT_API = "https://discord.com/api/v10"
INTENTS = discord.Intents(guilds=True, guild_messages=True, dm_messages=True, message_content=True)
_TOKEN_HINT = "check channels.discord token (Developer Portal > your app > Bot > Reset Token)"  # noqa: S105
_INTENT_HINT = (
    "enable MESSAGE CONTENT INTENT under Bot > Privileged Gateway Intents in the "
    "Discord Developer Portal for the bot of channels.discord"
)
_FATAL_CLOSE = {
    4010: "invalid shard",
    4011: "sharding required",
    4012: "invalid API version",
    4013: "invalid intents",
}


def map_error(exc: BaseException) -> MoltbotError:
    """The one place discord.py / aiohttp errors become moltbot errors (no token, no body)."""
    if isinstance(exc, discord.LoginFailure):
        return PlatformRejected("Discord refused the bot token", hint=_TOKEN_HINT)
    if isinstance(exc, discord.PrivilegedIntentsRequired):
        return PlatformRejected("Discord refused the message content intent", hint=_INTENT_HINT)
    if isinstance(exc, discord.ConnectionClosed):
        if exc.code == 4004:
            return PlatformRejected("Discord refused the bot token", hint=_TOKEN_HINT)
        if exc.code == 4014:
            return PlatformRejected("Discord refused the message content intent", hint=_INTENT_HINT)
        if exc.code in _FATAL_CLOSE:
            return PlatformRejected(f"Discord closed the gateway ({_FATAL_CLOSE[exc.code]})")
        return PlatformUnavailable(f"Discord closed the gateway (code {exc.code})")
    if isinstance(exc, discord.RateLimited):
        return RateLimited("Discord is rate limiting us", retry_after=float(exc.retry_after))
    if isinstance(exc, discord.GatewayNotFound):
        cause = exc.__cause__
        if isinstance(cause, discord.HTTPException):
            return map_error(cause)
        return PlatformUnavailable("Discord's gateway could not be found")
    if isinstance(exc, discord.HTTPException):
        return _map_status(exc)
    if isinstance(exc, aiohttp.ClientError | TimeoutError | OSError):
        return PlatformUnavailable("Discord could not be reached")
    return PlatformRejected("Discord request failed")


def _map_status(exc: discord.HTTPException) -> MoltbotError:
    status = exc.status
    if status == 429:
        after = exc.response.headers.get("Retry-After") if exc.response is not None else None
        try:
            delay = max(0.0, float(after)) if after else 1.0
        except ValueError:
            delay = 1.0
        return RateLimited("Discord is rate limiting us", retry_after=delay)
    if status >= 500:
        return PlatformUnavailable(f"Discord is unavailable right now (HTTP {status})")
    if status == 401:
        return PlatformRejected("Discord refused the bot token", hint=_TOKEN_HINT)
    if status == 403:
        return PlatformRejected(
            "Discord refused access to that channel (HTTP 403)",
            hint="give the bot View Channel, Send Messages and Read Message History there",
        )
    if status == 404:
        return PlatformRejected("Discord does not know that channel or message (HTTP 404)")
    return PlatformRejected(f"Discord rejected the request (HTTP {status}, code {exc.code})")


class Http(HTTPClient):
    """discord.py's HTTP client pointed at ``api_base`` and at the gateway GET /gateway/bot
    named (discord.py keeps both in class attributes; this keeps them per adapter)."""

    def __init__(self, loop: Any, *, api_base: str, **options: Any) -> None:
        super().__init__(loop, **options)
        self.api_base = api_base.rstrip("/")
        self.gateway: yarl.URL | None = None

    async def request(self, route: Route, **kwargs: Any) -> Any:
        if self.api_base != Route.BASE and route.url.startswith(Route.BASE):
            route.url = self.api_base + route.url[len(Route.BASE) :]
        return await super().request(route, **kwargs)

    async def ws_connect(self, url: str, *, compress: int = 0) -> aiohttp.ClientWebSocketResponse:
        wanted = yarl.URL(url)
        if self.gateway is not None and wanted.host == DiscordWebSocket.DEFAULT_GATEWAY.host:
            url = str(self.gateway.with_query(wanted.query))
        return await super().ws_connect(url, compress=compress)


class Frame(msgspec.Struct):
    """A gateway payload: its event name and data."""

    t: str | None = None
    d: Any = None


class Client(discord.Client):
    """discord.py's client, handing every raw gateway payload to ``on_raw`` (in its reading
    loop, in order) and calling ``on_ready`` at each READY (a new session began)."""

    def __init__(
        self,
        *,
        on_raw: Callable[[str | bytes], None],
        on_ready: Callable[[], None],
        api_base: str,
        identify_delay: float,
    ) -> None:
        super().__init__(
            intents=INTENTS,
            max_messages=None,
            chunk_guilds_at_startup=False,
            member_cache_flags=discord.MemberCacheFlags.none(),
            enable_debug_events=True,
            max_ratelimit_timeout=30.0,
        )
        self.api = Http(self.loop, api_base=api_base, max_ratelimit_timeout=30.0)
        self.http = self._connection.http = self.api
        self._on_raw, self._on_ready, self._identify_delay = on_raw, on_ready, identify_delay

    def dispatch(self, event: str, /, *args: Any, **kwargs: Any) -> None:
        if event == "socket_raw_receive":
            self._on_raw(args[0])
            return
        if event == "socket_raw_send":
            return
        if event == "connect":  # READY: a new session, nothing of the gap will be replayed
            self._on_ready()
        super().dispatch(event, *args, **kwargs)

    async def before_identify_hook(self, shard_id: int | None, *, initial: bool = False) -> None:
        if not initial:  # Discord allows one IDENTIFY per 5 s
            await asyncio.sleep(self._identify_delay)
