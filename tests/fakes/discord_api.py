"""A fake Discord (REST v10 + gateway) on 127.0.0.1, for the real discord.py client.

REST under ``/api/v10`` with ``Authorization: Bot <token>`` (401 otherwise): ``GET /users/@me``,
``GET /oauth2/applications/@me``, ``GET /gateway/bot`` (the URL of this fake's gateway),
``POST /channels/{id}/messages`` (2000 characters at most), ``GET /channels/{id}/messages``
(``after`` / ``before`` / ``limit``, newest first like Discord), ``POST /channels/{id}/typing``,
``GET /channels/{id}``. A 429 carries ``retry_after`` in its JSON body and a ``Via`` header, as
Discord's edge does.

Gateway at ``/gateway?v=10&encoding=json[&compress=zlib-stream]``: HELLO (op 10) -> IDENTIFY
(op 2) -> READY (op 0) then GUILD_CREATE per guild; heartbeats (op 1) are ACKed (op 11); RESUME
(op 6) of a known session replays the dispatches after its ``seq`` then RESUMED, an unknown or
invalidated session gets INVALID_SESSION (op 9, false). A bad token closes with 4004; asking for
the MESSAGE_CONTENT intent when ``message_content_allowed`` is False closes with 4014.

Test API: ``inject_message``, ``add_guild_channel``, ``delete_channel``, ``sent``, ``typing``,
``calls``, ``fail(route, count, status, retry_after)``, ``drop()`` (close every gateway
socket; the session stays resumable), ``hold()`` / ``release()`` (new gateway sockets wait
before HELLO), ``invalidate_sessions()``, ``stop()`` / ``start()``.
Standalone: ``python -m tests.fakes.discord_api --port 8083`` with ``POST /_fake/inject``
(JSON kwargs of inject_message), ``GET /_fake/sent``, ``POST /_fake/fail``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import time
import uuid
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from tests.fakes.base import Failures, FakeServer

BOT_TOKEN = "MTAwMDAw.fake.discord-bot-token"
BOT_ID = "900000000000000001"
GUILD_ID = "100000000000000001"
GUILD_CHANNEL_ID = "200000000000000001"
MESSAGE_CONTENT = 1 << 15
LIMIT = 2000
_FIRST_SNOWFLAKE = 1_300_000_000_000_000_000


@dataclass
class Session:
    id: str
    seq: int = 0
    events: list[tuple[int, str, dict[str, Any]]] = field(default_factory=list)
    valid: bool = True
    socket: Connection | None = None


@dataclass
class Connection:
    """One gateway socket; frames go out in order through ``outbox`` (see ``writer``)."""

    ws: web.WebSocketResponse
    deflate: Any = None  # a zlib compressobj when the client asked for zlib-stream
    outbox: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)

    def send(self, payload: dict[str, Any]) -> None:
        self.outbox.put_nowait(payload)

    async def writer(self) -> None:
        while True:
            raw = json.dumps(await self.outbox.get(), separators=(",", ":"))
            try:
                if self.deflate is None:
                    await self.ws.send_str(raw)
                else:
                    data = self.deflate.compress(raw.encode())
                    await self.ws.send_bytes(data + self.deflate.flush(zlib.Z_SYNC_FLUSH))
            except ConnectionError:
                return  # dispatches stay in the session: replayed on RESUME


class FakeDiscord(FakeServer):
    def __init__(
        self,
        token: str = BOT_TOKEN,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        heartbeat_interval_ms: int = 41250,
        message_content_allowed: bool = True,
    ) -> None:
        self.token, self.host, self.port = token, host, port
        self.heartbeat_interval_ms = heartbeat_interval_ms
        self.message_content_allowed = message_content_allowed
        self.bot = {
            "id": BOT_ID,
            "username": "moltbot",
            "discriminator": "0",
            "global_name": "Moltbot",
            "avatar": None,
            "bot": True,
        }
        self.guilds: dict[str, dict[str, str]] = {GUILD_ID: {GUILD_CHANNEL_ID: "general"}}
        self.channels: dict[str, dict[str, Any]] = {
            GUILD_CHANNEL_ID: {
                "id": GUILD_CHANNEL_ID,
                "type": 0,
                "guild_id": GUILD_ID,
                "name": "general",
                "position": 0,
                "permission_overwrites": [],
            }
        }
        self.history: dict[str, list[dict[str, Any]]] = {}
        self.sent: list[dict[str, Any]] = []  # {"channel_id", **json body}
        self.sent_files: list[dict[str, Any]] = []  # multipart posts: {"channel_id", "files"}
        self.cdn: dict[str, bytes] = {}  # attachment id -> bytes (served at its url)
        self.cdn_reads: list[str] = []
        self.typing: list[str] = []
        self.calls: Counter[str] = Counter()
        self.call_times: dict[str, list[float]] = {}
        self.heartbeats = self.identifies = self.resumes = self.connections = 0
        self.intents: int | None = None
        self.query: dict[str, str] = {}
        self.session: Session | None = None
        self._snowflakes = itertools.count(_FIRST_SNOWFLAKE)
        self._failures = Failures()
        self._open = asyncio.Event()
        self._open.set()
        self._sockets: set[web.WebSocketResponse] = set()

    # --- lifecycle -----------------------------------------------------------------------
    @property
    def api_base(self) -> str:
        return f"http://{self.host}:{self.port}/api/v10"

    @property
    def gateway_url(self) -> str:
        return f"ws://{self.host}:{self.port}/gateway"

    def routes(self, app: web.Application) -> None:
        api = "/api/v10"
        app.router.add_get(f"{api}/users/@me", self._rest("users_me", self._users_me))
        app.router.add_get(f"{api}/oauth2/applications/@me", self._rest("app", self._app))
        app.router.add_get(f"{api}/gateway/bot", self._rest("gateway_bot", self._gateway_bot))
        app.router.add_post(
            f"{api}/channels/{{cid}}/messages", self._rest("create_message", self._create_message)
        )
        app.router.add_get(f"{api}/channels/{{cid}}/messages", self._rest("history", self._list))
        app.router.add_post(f"{api}/channels/{{cid}}/typing", self._rest("typing", self._typing))
        app.router.add_get(f"{api}/channels/{{cid}}", self._rest("channel", self._channel))
        app.router.add_get("/gateway", self._gateway)
        app.router.add_get("/attachments/{cid}/{aid}/{name}", self._attachment)

    async def stop(self) -> None:
        await self.drop()
        await super().stop()

    # --- test API ------------------------------------------------------------------------
    def snowflake(self) -> str:
        return str(next(self._snowflakes))

    def bot_role(self, guild_id: str = GUILD_ID) -> str:
        """The id of the role Discord manages for the bot in ``guild_id``."""
        return str(int(guild_id) + 1)

    def add_guild_channel(self, channel_id: str, guild_id: str = GUILD_ID) -> None:
        self.guilds.setdefault(guild_id, {})[channel_id] = f"channel-{channel_id[-4:]}"
        self.channels[channel_id] = {
            "id": channel_id,
            "type": 0,
            "guild_id": guild_id,
            "name": f"channel-{channel_id[-4:]}",
            "position": 0,
            "permission_overwrites": [],
        }

    def delete_channel(self, channel_id: str) -> None:
        self.channels.pop(channel_id, None)
        self.history.pop(channel_id, None)
        for channels in self.guilds.values():
            channels.pop(channel_id, None)

    def inject_message(
        self,
        *,
        channel_id: str,
        author_id: str,
        content: str,
        username: str = "alice",
        guild_id: str | None = None,
        mention_bot: bool = False,
        mention_role: str | None = None,
        bot: bool = False,
        reply_to: str | None = None,
        files: list[tuple[str, str, bytes]] | None = None,
        url_host: str | None = None,
    ) -> dict[str, Any]:
        """A user's message: kept in the channel's history and dispatched as MESSAGE_CREATE.
        ``guild_id`` None: a DM channel (created on first use). ``files``: (file name, content
        type, bytes) as ``attachments`` whose ``url`` this server answers (the CDN's part);
        ``url_host`` puts another host in those URLs."""
        if guild_id is None and channel_id not in self.channels:
            self.channels[channel_id] = {
                "id": channel_id,
                "type": 1,
                "last_message_id": None,
                "recipients": [self._user(author_id, username)],
            }
        author = self._user(author_id, username, bot=bot)
        if mention_bot:
            content = f"<@{BOT_ID}> {content}"
        if mention_role is not None:
            content = f"<@&{mention_role}> {content}"
        msg = self._message(
            channel_id,
            author,
            content,
            mentions=[self.bot] if mention_bot else [],
            reply_to=reply_to,
        )
        if mention_role is not None:
            msg["mention_roles"] = [mention_role]
        for filename, ctype, data in files or []:
            aid = self.snowflake()
            self.cdn[aid] = data
            host = url_host or f"{self.host}:{self.port}"
            url = f"http://{host}/attachments/{channel_id}/{aid}/{filename}"
            msg["attachments"].append(
                {
                    "id": aid,
                    "filename": filename,
                    "size": len(data),
                    "url": url,
                    "proxy_url": url,
                    "content_type": ctype,
                }
            )
        self._record(msg, guild_id, member={"nick": None, "roles": [], "joined_at": _iso()})
        return msg

    def fail(
        self, route: str, count: int = 1, status: int = 500, retry_after: float | None = None
    ) -> None:
        self._failures.add(route, count, status, retry_after)

    async def drop(self, code: int = 4000) -> None:
        """Close every gateway socket (as a network drop would); the session stays resumable."""
        for ws in list(self._sockets):
            await ws.close(code=code)

    def hold(self) -> None:
        """New gateway connections wait (no HELLO) until ``release``."""
        self._open.clear()

    def release(self) -> None:
        self._open.set()

    def invalidate_sessions(self) -> None:
        if self.session is not None:
            self.session.valid = False

    async def wait_sent(self, n: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        async with asyncio.timeout(timeout):
            while len(self.sent) < n:
                await asyncio.sleep(0.01)
        return self.sent

    async def wait_for(self, check: Any, timeout: float = 5.0) -> None:
        async with asyncio.timeout(timeout):
            while not check():
                await asyncio.sleep(0.01)

    # --- objects -------------------------------------------------------------------------
    def _user(self, user_id: str, username: str, *, bot: bool = False) -> dict[str, Any]:
        return {
            "id": user_id,
            "username": username,
            "discriminator": "0",
            "global_name": username.title(),
            "avatar": None,
            "bot": bot,
        }

    def _message(
        self,
        channel_id: str,
        author: dict[str, Any],
        content: str,
        *,
        mentions: list[dict[str, Any]],
        reply_to: str | None,
    ) -> dict[str, Any]:
        msg: dict[str, Any] = {
            "id": self.snowflake(),
            "channel_id": channel_id,
            "author": author,
            "content": content,
            "timestamp": _iso(),
            "edited_timestamp": None,
            "tts": False,
            "mention_everyone": False,
            "mentions": mentions,
            "mention_roles": [],
            "attachments": [],
            "embeds": [],
            "pinned": False,
            "type": 0,
            "flags": 0,
        }
        if reply_to is not None:  # a reply: Discord mentions the replied-to author by default
            ref = next((m for m in self.history.get(channel_id, []) if m["id"] == reply_to), None)
            msg["type"] = 19
            msg["message_reference"] = {"message_id": reply_to, "channel_id": channel_id}
            msg["referenced_message"] = ref
        return msg

    def _record(
        self, msg: dict[str, Any], guild_id: str | None, member: dict[str, Any] | None = None
    ) -> None:
        self.history.setdefault(msg["channel_id"], []).append(msg)
        event = dict(msg)
        if guild_id is not None:
            event["guild_id"] = guild_id
            if member is not None:
                event["member"] = member
        self._dispatch_event("MESSAGE_CREATE", event)

    def _guild(self, guild_id: str) -> dict[str, Any]:
        return {
            "id": guild_id,
            "name": f"guild {guild_id[-4:]}",
            "icon": None,
            "owner_id": "1",
            "unavailable": False,
            "member_count": 2,
            "large": False,
            "features": [],
            "roles": [
                {
                    "id": guild_id,
                    "name": "@everyone",
                    "permissions": "1024",
                    "position": 0,
                    "color": 0,
                    "hoist": False,
                    "managed": False,
                    "mentionable": False,
                },
                {
                    "id": self.bot_role(guild_id),
                    "name": "moltbot",
                    "permissions": "3072",
                    "position": 1,
                    "color": 0,
                    "hoist": False,
                    "managed": True,
                    "mentionable": False,
                    "tags": {"bot_id": BOT_ID},
                },
            ],
            "emojis": [],
            "stickers": [],
            "members": [],
            "voice_states": [],
            "presences": [],
            "threads": [],
            "stage_instances": [],
            "guild_scheduled_events": [],
            "channels": [self.channels[c] for c in self.guilds[guild_id]],
            "joined_at": _iso(),
            "verification_level": 0,
            "premium_tier": 0,
            "preferred_locale": "en-US",
            "system_channel_flags": 0,
            "nsfw_level": 0,
        }

    # --- REST ------------------------------------------------------------------------------
    def _rest(self, name: str, handler: Any) -> Any:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            self.calls[name] += 1
            self.call_times.setdefault(name, []).append(time.monotonic())
            if request.headers.get("Authorization") != f"Bot {self.token}":
                return _json({"message": "401: Unauthorized", "code": 0}, status=401)
            failure = self._failures.take(name)
            if failure is not None:
                return _failure(*failure)
            response: web.StreamResponse = await handler(request)
            return response

        return wrapped

    async def _users_me(self, request: web.Request) -> web.Response:
        return _json({**self.bot, "verified": True, "flags": 0, "mfa_enabled": False})

    async def _app(self, request: web.Request) -> web.Response:
        return _json(
            {
                "id": BOT_ID,
                "name": "moltbot",
                "icon": None,
                "description": "",
                "bot_public": False,
                "bot_require_code_grant": False,
                "owner": self._user("1", "owner"),
                "verify_key": "00" * 32,
                "flags": 0,
                "team": None,
                "summary": "",
            }
        )

    async def _gateway_bot(self, request: web.Request) -> web.Response:
        return _json(
            {
                "url": self.gateway_url,
                "shards": 1,
                "session_start_limit": {
                    "total": 1000,
                    "remaining": 999,
                    "reset_after": 0,
                    "max_concurrency": 1,
                },
            }
        )

    async def _attachment(self, request: web.Request) -> web.Response:
        data = self.cdn.get(request.match_info["aid"])
        self.cdn_reads.append(request.match_info["aid"])
        if data is None:
            return web.Response(status=404)
        return web.Response(body=data, content_type="application/octet-stream")

    async def _create_message(self, request: web.Request) -> web.Response:
        cid = request.match_info["cid"]
        if cid not in self.channels:
            return _json({"message": "Unknown Channel", "code": 10003}, status=404)
        files: list[tuple[str, bytes]] = []
        if request.content_type == "multipart/form-data":  # payload_json + files[n]
            form = await request.post()
            body = json.loads(str(form.get("payload_json") or "{}"))
            for key, value in form.items():
                if key.startswith("files[") and isinstance(value, web.FileField):
                    files.append((value.filename, value.file.read()))
        else:
            body = await request.json()
        content = body.get("content") or ""
        if files and not content.strip() and len(content) <= LIMIT:
            self.sent_files.append({"channel_id": cid, "files": files, **body})
            msg = self._message(cid, self.bot, content, mentions=[], reply_to=None)
            return _json(msg)
        if files:
            self.sent_files.append({"channel_id": cid, "files": files, **body})
        if not content.strip() or len(content) > LIMIT:
            return _json(
                {
                    "message": "Invalid Form Body",
                    "code": 50035,
                    "errors": {
                        "content": {
                            "_errors": [
                                {"code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 2000 or fewer"}
                            ]
                        }
                    },
                },
                status=400,
            )
        self.sent.append({"channel_id": cid, **body})
        msg = self._message(cid, self.bot, content, mentions=[], reply_to=None)
        self._record(msg, self.channels[cid].get("guild_id"))  # the bot sees its own, as on Discord
        return _json(msg)

    async def _list(self, request: web.Request) -> web.Response:
        cid = request.match_info["cid"]
        if cid not in self.channels:
            return _json({"message": "Unknown Channel", "code": 10003}, status=404)
        try:
            limit = int(request.query.get("limit", "50"))
        except ValueError:
            limit = 0
        if not 1 <= limit <= 100:
            return _json({"message": "Invalid Form Body", "code": 50035}, status=400)
        msgs = sorted(self.history.get(cid, []), key=lambda m: int(m["id"]))
        if "after" in request.query:
            after = int(request.query["after"])
            msgs = [m for m in msgs if int(m["id"]) > after][:limit]
        else:
            if "before" in request.query:
                before = int(request.query["before"])
                msgs = [m for m in msgs if int(m["id"]) < before]
            msgs = msgs[-limit:]
        return _json(list(reversed(msgs)))  # newest first, as Discord answers

    async def _typing(self, request: web.Request) -> web.Response:
        cid = request.match_info["cid"]
        if cid not in self.channels:
            return _json({"message": "Unknown Channel", "code": 10003}, status=404)
        self.typing.append(cid)
        return web.Response(status=204)

    async def _channel(self, request: web.Request) -> web.Response:
        channel = self.channels.get(request.match_info["cid"])
        if channel is None:
            return _json({"message": "Unknown Channel", "code": 10003}, status=404)
        return _json(channel)

    # --- gateway ---------------------------------------------------------------------------
    def _dispatch_event(self, name: str, data: dict[str, Any]) -> None:
        """Sequence an event in the session and push it if a socket is attached."""
        session = self.session
        if session is None or not session.valid:
            return  # nobody identified: like Discord, the event is not kept for anyone
        session.seq += 1
        session.events.append((session.seq, name, data))
        del session.events[:-1000]
        if session.socket is not None and not session.socket.ws.closed:
            session.socket.send({"op": 0, "t": name, "s": session.seq, "d": data})

    async def _gateway(self, request: web.Request) -> web.StreamResponse:
        query = dict(request.query)
        compress = query.get("compress")
        if (
            query.get("v") != "10"
            or query.get("encoding") != "json"
            or compress not in (None, "zlib-stream")
        ):
            return _json({"message": "unsupported gateway query"}, status=400)
        ws = web.WebSocketResponse(autoping=True, max_msg_size=4096 * 1024)
        await ws.prepare(request)
        self.query, self.connections = query, self.connections + 1
        conn = Connection(ws, zlib.compressobj() if compress else None)
        self._sockets.add(ws)
        try:
            async with asyncio.TaskGroup() as tg:
                writer = tg.create_task(conn.writer())
                await self._open.wait()
                conn.send(
                    {
                        "op": 10,
                        "s": None,
                        "t": None,
                        "d": {"heartbeat_interval": self.heartbeat_interval_ms},
                    }
                )
                async for frame in ws:
                    if frame.type == WSMsgType.TEXT:
                        await self._on_frame(conn, json.loads(frame.data))
                writer.cancel()
        finally:
            self._sockets.discard(ws)
            if self.session is not None and self.session.socket is conn:
                self.session.socket = None
        return ws

    async def _on_frame(self, conn: Connection, msg: dict[str, Any]) -> None:
        op, data = msg.get("op"), msg.get("d")
        if op == 1:
            self.heartbeats += 1
            conn.send({"op": 11, "s": None, "t": None, "d": None})
        elif op == 2:
            await self._identify(conn, data or {})
        elif op == 6:
            await self._resume(conn, data or {})

    async def _identify(self, conn: Connection, data: dict[str, Any]) -> None:
        self.identifies += 1
        if data.get("token") != self.token:
            await conn.ws.close(code=4004, message=b"Authentication failed.")
            return
        self.intents = int(data.get("intents") or 0)
        if self.intents & MESSAGE_CONTENT and not self.message_content_allowed:
            await conn.ws.close(code=4014, message=b"Disallowed intent(s).")
            return
        if self.session is not None and self.session.socket is not None:
            await self.session.socket.ws.close(code=4000)
        self.session = session = Session(id=uuid.uuid4().hex, socket=conn)
        session.seq = 1
        conn.send(
            {
                "op": 0,
                "t": "READY",
                "s": 1,
                "d": {
                    "v": 10,
                    "user": self.bot,
                    "session_id": session.id,
                    "resume_gateway_url": self.gateway_url,
                    "private_channels": [],
                    "guilds": [{"id": g, "unavailable": True} for g in self.guilds],
                    "application": {"id": BOT_ID, "flags": 0},
                    "shard": [0, 1],
                },
            }
        )
        for guild_id in self.guilds:
            self._dispatch_event("GUILD_CREATE", self._guild(guild_id))

    async def _resume(self, conn: Connection, data: dict[str, Any]) -> None:
        self.resumes += 1
        session = self.session
        if (
            data.get("token") != self.token
            or session is None
            or not session.valid
            or data.get("session_id") != session.id
        ):
            conn.send({"op": 9, "s": None, "t": None, "d": False})
            return
        session.socket = conn
        since = int(data.get("seq") or 0)
        for seq, name, event in list(session.events):
            if seq > since:
                conn.send({"op": 0, "t": name, "s": seq, "d": event})
        session.seq += 1
        session.events.append((session.seq, "RESUMED", {}))
        conn.send({"op": 0, "t": "RESUMED", "s": session.seq, "d": {}})

    # --- control endpoints (standalone use) --------------------------------------------------
    async def _ctl_inject(self, request: web.Request) -> web.Response:
        return _json(self.inject_message(**await request.json()))

    async def _ctl_sent(self, request: web.Request) -> web.Response:
        return _json({"sent": self.sent, "typing": self.typing})

    async def _ctl_fail(self, request: web.Request) -> web.Response:
        self.fail(**await request.json())
        return _json({"ok": True})


def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    """JSON with Discord's exact content type (discord.py parses only ``application/json``)."""
    return web.Response(
        body=json.dumps(data).encode(),
        status=status,
        headers={**(headers or {}), "Content-Type": "application/json"},
    )


def _failure(status: int, retry_after: float | None) -> web.Response:
    if status == 429:
        after = retry_after if retry_after is not None else 1.0
        return _json(
            {"message": "You are being rate limited.", "retry_after": after, "global": False},
            status=429,
            headers={"Retry-After": str(after), "Via": "1.1 google", "X-RateLimit-Scope": "user"},
        )
    if status >= 500:
        return web.Response(status=status, text="upstream error", content_type="text/plain")
    return _json({"message": "Missing Access", "code": 50001}, status=status)


def _iso() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000000+00:00", time.gmtime())


async def _serve(port: int) -> None:
    async with FakeDiscord(port=port) as fake:
        print(json.dumps({"api_base": fake.api_base, "token": fake.token}), flush=True)
        await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description="fake Discord REST v10 + gateway")
    parser.add_argument("--port", type=int, default=8083)
    asyncio.run(_serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
