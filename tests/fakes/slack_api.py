"""A fake Slack Web API + Socket Mode endpoint on 127.0.0.1, for the real slack-sdk clients.

Web API: ``auth.test`` and ``chat.postMessage`` (bot token), ``apps.connections.open`` (app
token; returns the URL of this fake's own Socket Mode WebSocket). Bad tokens get
``{"ok": false, "error": "invalid_auth"}`` like Slack.

Socket Mode: a connection gets ``hello``, then every envelope not yet acked (Slack re-delivers
unacked envelopes on reconnect), then new envelopes as they are injected (to the newest
connection). ``{"envelope_id": ...}`` from the client acks.

Test API: ``inject_message``, ``inject_mention``, ``inject_event``, ``sent``, ``acked``,
``pending``, ``fail(method, count, status, retry_after)``, ``disconnect()``, ``calls``.
Standalone: ``python -m tests.fakes.slack_api --port 8082`` with ``POST /_fake/inject``
(JSON kwargs of inject_message), ``GET /_fake/sent``, ``POST /_fake/fail``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from collections import Counter
from typing import Any

from aiohttp import WSMsgType, web

from tests.fakes.base import Failures, FakeServer

BOT_TOKEN = "xoxb-fake-bot-token"
APP_TOKEN = "xapp-fake-app-token"


class FakeSlack(FakeServer):
    def __init__(
        self,
        bot_token: str = BOT_TOKEN,
        app_token: str = APP_TOKEN,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        bot_user_id: str = "UBOT0001",
        team_id: str = "T0001",
    ) -> None:
        self.bot_token, self.app_token = bot_token, app_token
        self.host, self.port = host, port
        self.bot_user_id, self.bot_id, self.team_id = bot_user_id, "BBOT0001", team_id
        self.pending: dict[str, dict[str, Any]] = {}  # envelope_id -> envelope, in order
        self.acked: list[str] = []
        self.sent: list[dict[str, Any]] = []
        self.calls: Counter[str] = Counter()
        self.connections = 0
        self._sockets: list[web.WebSocketResponse] = []
        self._failures = Failures()
        self._ts = 0
        self._tasks: set[asyncio.Task[None]] = set()
        self.files: dict[str, bytes] = {}  # file id -> content served at its url_private
        self.file_downloads: list[tuple[str, str]] = []  # (file id, bearer token given)
        self.uploads: dict[str, dict[str, Any]] = {}  # upload v2: file id -> filename, data
        self.sent_files: list[dict[str, Any]] = []  # completed uploads shared to a channel

    # --- lifecycle -----------------------------------------------------------------------
    @property
    def api_base(self) -> str:
        return f"http://{self.host}:{self.port}/api/"

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/api/{method}", self._handle)
        app.router.add_get("/api/{method}", self._handle)
        app.router.add_get("/socket", self._socket)
        app.router.add_get("/files-pri/{team}-{file_id}/{name}", self._file_private)
        app.router.add_post("/upload/v1/{file_id}", self._upload)

    async def stop(self) -> None:
        await self.disconnect()
        await super().stop()

    # --- test API ------------------------------------------------------------------------
    def _next_ts(self) -> str:
        self._ts += 1
        return f"{int(time.time())}.{self._ts:06d}"

    def inject_event(self, event: dict[str, Any]) -> str:
        envelope_id = str(uuid.uuid4())
        envelope = {
            "envelope_id": envelope_id,
            "type": "events_api",
            "accepts_response_payload": False,
            "retry_attempt": 0,
            "retry_reason": "",
            "payload": {
                "token": "verification",
                "team_id": self.team_id,
                "api_app_id": "A0001",
                "event": event,
                "type": "event_callback",
                "event_id": f"Ev{uuid.uuid4().hex[:10]}",
                "event_time": int(time.time()),
            },
        }
        self.pending[envelope_id] = envelope
        if self._sockets:
            task = asyncio.get_running_loop().create_task(self._push(self._sockets[-1], envelope))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return envelope_id

    def inject_message(
        self,
        *,
        channel: str,
        user: str,
        text: str,
        channel_type: str = "im",
        thread_ts: str | None = None,
        ts: str | None = None,
        bot_id: str | None = None,
        subtype: str | None = None,
    ) -> str:
        event: dict[str, Any] = {
            "type": "message",
            "channel": channel,
            "user": user,
            "text": text,
            "ts": ts or self._next_ts(),
            "channel_type": channel_type,
            "team": self.team_id,
        }
        event["event_ts"] = event["ts"]
        for key, value in (("thread_ts", thread_ts), ("bot_id", bot_id), ("subtype", subtype)):
            if value is not None:
                event[key] = value
        return self.inject_event(event)

    def inject_file_message(
        self,
        *,
        channel: str,
        user: str,
        data: bytes,
        name: str,
        mimetype: str,
        text: str = "",
        declared_size: int | None = None,
        url_host: str | None = None,
    ) -> str:
        """A ``file_share`` message with one file (as the Events API sends it: ``files``
        with ``url_private`` / ``url_private_download`` that need the bot token)."""
        file_id = f"F{uuid.uuid4().hex[:10].upper()}"
        self.files[file_id] = data
        host = url_host or f"{self.host}:{self.port}"
        url = f"http://{host}/files-pri/{self.team_id}-{file_id}/{name}"
        ts = self._next_ts()
        event: dict[str, Any] = {
            "type": "message",
            "subtype": "file_share",
            "channel": channel,
            "user": user,
            "text": text,
            "ts": ts,
            "event_ts": ts,
            "channel_type": "im",
            "team": self.team_id,
            "files": [
                {
                    "id": file_id,
                    "name": name,
                    "title": name,
                    "mimetype": mimetype,
                    "filetype": name.rsplit(".", 1)[-1],
                    "size": len(data) if declared_size is None else declared_size,
                    "url_private": url,
                    "url_private_download": url + "?dl=1",
                    "mode": "hosted",
                    "is_external": False,
                }
            ],
        }
        return self.inject_event(event)

    async def _file_private(self, request: web.Request) -> web.Response:
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        file_id = request.match_info["file_id"]
        self.file_downloads.append((file_id, token))
        if token != self.bot_token:  # Slack answers a login page, not the file
            return web.Response(text="<html>sign in</html>", content_type="text/html")
        data = self.files.get(file_id)
        if data is None:
            return web.Response(status=404)
        return web.Response(body=data, content_type="application/octet-stream")

    async def _upload(self, request: web.Request) -> web.Response:
        file_id = request.match_info["file_id"]
        if file_id not in self.uploads:
            return web.Response(status=404, text="unknown upload")
        data = await request.read()
        self.uploads[file_id]["data"] = data
        return web.Response(text=f"OK - {len(data)}")

    def _get_upload_url(self, body: dict[str, Any]) -> web.Response:
        if not body.get("filename") or not str(body.get("length", "")).isdigit():
            return web.json_response({"ok": False, "error": "invalid_arguments"})
        file_id = f"F{uuid.uuid4().hex[:10].upper()}"
        self.uploads[file_id] = {"filename": body["filename"], "length": int(body["length"])}
        url = f"http://{self.host}:{self.port}/upload/v1/{file_id}"
        return web.json_response({"ok": True, "upload_url": url, "file_id": file_id})

    def _complete_upload(self, body: dict[str, Any]) -> web.Response:
        files = body.get("files")
        items = json.loads(files) if isinstance(files, str) else files
        if not isinstance(items, list) or not items:
            return web.json_response({"ok": False, "error": "invalid_arguments"})
        done = []
        for item in items:
            up = self.uploads.get(str(item.get("id")))
            if up is None or "data" not in up or len(up["data"]) != up["length"]:
                return web.json_response({"ok": False, "error": "file_not_found"})
            self.sent_files.append(
                {
                    "channel": body.get("channel_id"),
                    "filename": up["filename"],
                    "data": up["data"],
                    "title": item.get("title"),
                    "initial_comment": body.get("initial_comment"),
                    "thread_ts": body.get("thread_ts"),
                }
            )
            done.append({"id": item["id"], "title": item.get("title") or up["filename"]})
        return web.json_response({"ok": True, "files": done})

    def inject_mention(self, *, channel: str, user: str, text: str, ts: str | None = None) -> str:
        ts = ts or self._next_ts()
        return self.inject_event(
            {
                "type": "app_mention",
                "channel": channel,
                "user": user,
                "text": text,
                "ts": ts,
                "event_ts": ts,
                "team": self.team_id,
            }
        )

    def fail(
        self, method: str, count: int = 1, status: int = 500, retry_after: float | None = None
    ) -> None:
        self._failures.add(method, count, status, retry_after)

    async def disconnect(self) -> None:
        for ws in list(self._sockets):
            await ws.close()

    async def wait_sent(self, n: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        async with asyncio.timeout(timeout):
            while len(self.sent) < n:
                await asyncio.sleep(0.01)
        return self.sent

    async def wait_acked(self, n: int, timeout: float = 5.0) -> list[str]:
        async with asyncio.timeout(timeout):
            while len(self.acked) < n:
                await asyncio.sleep(0.01)
        return self.acked

    # --- Web API -------------------------------------------------------------------------
    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        self.calls[method] += 1
        failure = self._failures.take(method)
        if failure is not None:
            status, retry_after = failure
            if status == 429:
                return web.json_response(
                    {"ok": False, "error": "ratelimited"},
                    status=429,
                    headers={"Retry-After": str(retry_after if retry_after is not None else 1)},
                )
            if status >= 500:
                return web.Response(
                    status=status, text="<html>upstream error</html>", content_type="text/html"
                )
            return web.json_response({"ok": False, "error": "invalid_auth"}, status=status)
        token = request.headers.get("Authorization", "").removeprefix("Bearer ")
        body: dict[str, Any] = dict(request.query)
        if request.content_type == "application/json":
            body.update(await request.json())
        elif request.can_read_body:
            body.update({k: v for k, v in (await request.post()).items() if isinstance(v, str)})
            token = token or str(body.get("token", ""))
        wanted = self.app_token if method == "apps.connections.open" else self.bot_token
        if token != wanted:
            return web.json_response({"ok": False, "error": "invalid_auth"})
        if method == "auth.test":
            return web.json_response(
                {
                    "ok": True,
                    "url": "https://fake.slack.com/",
                    "team": "Fake Team",
                    "user": "moltbot",
                    "team_id": self.team_id,
                    "user_id": self.bot_user_id,
                    "bot_id": self.bot_id,
                    "is_enterprise_install": False,
                }
            )
        if method == "apps.connections.open":
            ticket = uuid.uuid4().hex
            return web.json_response(
                {"ok": True, "url": f"ws://{self.host}:{self.port}/socket?ticket={ticket}"}
            )
        if method == "chat.postMessage":
            return self._post_message(body)
        if method == "files.getUploadURLExternal":
            return self._get_upload_url(body)
        if method == "files.completeUploadExternal":
            return self._complete_upload(body)
        return web.json_response({"ok": False, "error": "unknown_method"}, status=404)

    def _post_message(self, body: dict[str, Any]) -> web.Response:
        text = str(body.get("text") or "")
        if not body.get("channel"):
            return web.json_response({"ok": False, "error": "channel_not_found"})
        if not text.strip():
            return web.json_response({"ok": False, "error": "no_text"})
        if len(text) > 40000:
            return web.json_response({"ok": False, "error": "msg_too_long"})
        ts = self._next_ts()
        self.sent.append({**body, "ts": ts})
        return web.json_response(
            {
                "ok": True,
                "channel": body["channel"],
                "ts": ts,
                "message": {
                    "type": "message",
                    "text": text,
                    "ts": ts,
                    "bot_id": self.bot_id,
                    "user": self.bot_user_id,
                },
            }
        )

    # --- Socket Mode ---------------------------------------------------------------------
    async def _push(self, ws: web.WebSocketResponse, envelope: dict[str, Any]) -> None:
        if not ws.closed:
            try:
                await ws.send_str(json.dumps(envelope))
            except ConnectionError:
                pass  # stays pending: re-delivered on the next connection

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self.connections += 1
        self._sockets.append(ws)
        try:
            await ws.send_str(
                json.dumps(
                    {
                        "type": "hello",
                        "num_connections": len(self._sockets),
                        "debug_info": {"host": "fake", "approximate_connection_time": 3600},
                        "connection_info": {"app_id": "A0001"},
                    }
                )
            )
            for envelope in list(self.pending.values()):
                await ws.send_str(json.dumps(envelope))
            async for msg in ws:
                if msg.type != WSMsgType.TEXT:
                    continue
                data = json.loads(msg.data)
                envelope_id = data.get("envelope_id")
                if envelope_id in self.pending:
                    del self.pending[envelope_id]
                    self.acked.append(envelope_id)
        finally:
            self._sockets.remove(ws)
        return ws

    # --- control endpoints (standalone use) --------------------------------------------------
    async def _ctl_inject(self, request: web.Request) -> web.Response:
        return web.json_response({"envelope_id": self.inject_message(**await request.json())})

    async def _ctl_sent(self, request: web.Request) -> web.Response:
        return web.json_response(self.sent)

    async def _ctl_fail(self, request: web.Request) -> web.Response:
        self.fail(**await request.json())
        return web.json_response({"ok": True})


async def _serve(port: int) -> None:
    async with FakeSlack(port=port) as fake:
        print(
            json.dumps(
                {
                    "api_base": fake.api_base,
                    "bot_token": fake.bot_token,
                    "app_token": fake.app_token,
                }
            ),
            flush=True,
        )
        await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description="fake Slack Web API + Socket Mode")
    parser.add_argument("--port", type=int, default=8082)
    asyncio.run(_serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
