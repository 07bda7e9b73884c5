"""A fake signal-cli-rest-api on 127.0.0.1, for the adapter's httpx + websockets clients.

``GET /v1/about``, ``GET /v1/accounts``, ``GET /v1/receive/<number>`` (polling: long poll up to
``timeout``, at most ``max_messages``, deleted on read; or, in ``json-rpc`` mode, a WebSocket
at the same path that pushes each message once, without ack), ``POST /v2/send``,
``PUT /v1/typing-indicator/<number>``. Unknown numbers get 400 ``{"error": ...}`` like the real
server.

Test API: ``inject_message(...)``, ``sent``, ``typing``, ``queued``,
``fail(method, count, status, retry_after)`` for method in about/accounts/receive/send/typing.
Standalone: ``python -m tests.fakes.signal_api --port 8083 [--mode json-rpc|normal]`` with
``POST /_fake/inject``, ``GET /_fake/sent``, ``POST /_fake/fail``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import time
from collections import Counter
from typing import Any

from aiohttp import web

from tests.fakes.base import Failures, FakeServer

NUMBER = "+15550001111"
BOT_UUID = "00000000-0000-4000-8000-000000000b07"


def group_chat_id(group_id: str) -> str:
    """The recipient id signal-cli-rest-api wants for a group: ``group.`` + base64(id)."""
    return "group." + base64.b64encode(group_id.encode()).decode()


class FakeSignal(FakeServer):
    def __init__(
        self,
        number: str = NUMBER,
        *,
        mode: str = "json-rpc",
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.number, self.mode, self.host, self.port = number, mode, host, port
        self.queued: list[dict[str, Any]] = []
        self.sent: list[dict[str, Any]] = []
        self.typing: list[dict[str, Any]] = []
        self.calls: Counter[str] = Counter()
        self.ws_connections = 0
        self._failures = Failures()
        self._changed = asyncio.Event()
        self._ts = int(time.time() * 1000)
        self._closing = False
        self.attachments: dict[str, bytes] = {}  # attachment id -> content
        self.attachment_reads: list[str] = []

    @property
    def api_base(self) -> str:
        return f"http://{self.host}:{self.port}"

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/v1/about", self._about)
        app.router.add_get("/v1/accounts", self._accounts)
        app.router.add_get("/v1/receive/{number}", self._receive)
        app.router.add_post("/v2/send", self._send)
        app.router.add_put("/v1/typing-indicator/{number}", self._typing)
        app.router.add_get("/v1/attachments/{id}", self._attachment)

    async def stop(self) -> None:
        self._closing = True
        self._changed.set()
        await super().stop()

    # --- test API ------------------------------------------------------------------------
    def inject_message(
        self,
        *,
        source: str,
        text: str,
        uuid: str | None = None,
        name: str = "Alice",
        group_id: str | None = None,
        mention_me: bool = False,
        quote_me: bool = False,
        files: list[tuple[str | None, str, bytes]] | None = None,
    ) -> dict[str, Any]:
        """``files``: (file name or None, content type, bytes), listed in ``attachments`` as
        signal-cli-rest-api does (``id``, ``contentType``, ``filename``, ``size``); their
        bytes are served at ``/v1/attachments/<id>``. A voice note has no file name."""
        self._ts += 1
        data: dict[str, Any] = {
            "timestamp": self._ts,
            "message": text or None,
            "expiresInSeconds": 0,
            "viewOnce": False,
        }
        for n, (filename, ctype, content) in enumerate(files or []):
            att_id = f"att{self._ts}{n}.{ctype.rsplit('/', 1)[-1]}"
            self.attachments[att_id] = content
            data.setdefault("attachments", []).append(
                {"contentType": ctype, "filename": filename, "id": att_id, "size": len(content)}
            )
        if group_id is not None:
            data["groupInfo"] = {"groupId": group_id, "type": "DELIVER"}
        if mention_me:
            data["message"] = "\ufffc " + text
            data["mentions"] = [
                {
                    "name": self.number,
                    "number": self.number,
                    "uuid": BOT_UUID,
                    "start": 0,
                    "length": 1,
                }
            ]
        if quote_me:
            data["quote"] = {
                "id": self._ts - 100,
                "author": self.number,
                "authorNumber": self.number,
                "authorUuid": BOT_UUID,
                "text": "earlier",
            }
        item = {
            "envelope": {
                "source": source,
                "sourceNumber": source,
                "sourceUuid": uuid or f"uuid-{source}",
                "sourceName": name,
                "sourceDevice": 1,
                "timestamp": self._ts,
                "dataMessage": data,
            },
            "account": self.number,
        }
        self.queued.append(item)
        self._wake()
        return item

    def fail(
        self, method: str, count: int = 1, status: int = 500, retry_after: float | None = None
    ) -> None:
        self._failures.add(method, count, status, retry_after)

    async def wait_sent(self, n: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        async with asyncio.timeout(timeout):
            while len(self.sent) < n:
                await asyncio.sleep(0.01)
        return self.sent

    # --- HTTP ----------------------------------------------------------------------------
    def _wake(self) -> None:
        self._changed.set()
        self._changed = asyncio.Event()

    def _failure(self, method: str) -> web.Response | None:
        self.calls[method] += 1
        failure = self._failures.take(method)
        if failure is None:
            return None
        status, retry_after = failure
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
        return web.json_response({"error": "injected failure"}, status=status, headers=headers)

    def _unknown(self, number: str) -> web.Response | None:
        if number == self.number:
            return None
        return web.json_response({"error": f"User {number} is not registered."}, status=400)

    async def _about(self, request: web.Request) -> web.Response:
        return self._failure("about") or web.json_response(
            {
                "versions": ["v1", "v2"],
                "build": 2,
                "mode": self.mode,
                "version": "0.92",
                "capabilities": {"v2/send": ["quotes", "mentions"]},
            }
        )

    async def _accounts(self, request: web.Request) -> web.Response:
        return self._failure("accounts") or web.json_response([self.number])

    async def _receive(self, request: web.Request) -> web.StreamResponse:
        number = request.match_info["number"]
        err = self._failure("receive") or self._unknown(number)
        if err is not None:
            return err
        if request.headers.get("Upgrade", "").lower() == "websocket":
            return await self._receive_ws(request)
        if self.mode == "json-rpc":
            return web.json_response(
                {"error": "receive via HTTP is not supported in json-rpc mode, use websocket"},
                status=400,
            )
        timeout = float(request.query.get("timeout", "1"))
        limit = int(request.query.get("max_messages", "0")) or len(self.queued) or 1
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while not self.queued and not self._closing and loop.time() < end:
            changed = self._changed
            try:
                await asyncio.wait_for(changed.wait(), end - loop.time())
            except TimeoutError:
                pass
        batch, self.queued = self.queued[:limit], self.queued[limit:]
        return web.json_response(batch)

    async def _receive_ws(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        self.ws_connections += 1
        reader = asyncio.ensure_future(ws.receive())  # the client never sends: this ends on close
        try:
            while not self._closing:
                while self.queued and not ws.closed:
                    item = self.queued.pop(0)  # pushed once, no ack: like signal-cli json-rpc
                    await ws.send_str(json.dumps(item))
                waiter = asyncio.ensure_future(self._changed.wait())
                done, _ = await asyncio.wait({waiter, reader}, return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                if reader in done:
                    break
        finally:
            reader.cancel()
            await ws.close()
        return ws

    async def _send(self, request: web.Request) -> web.Response:
        err = self._failure("send")
        if err is not None:
            return err
        body = await request.json()
        number = str(body.get("number", ""))
        err = self._unknown(number)
        if err is not None:
            return err
        files = []
        for item in body.get("base64_attachments") or []:
            head, _, b64 = str(item).rpartition(",")  # data:<type>;filename=<name>;base64,<data>
            parts = dict(p.split("=", 1) for p in head.split(";") if "=" in p)
            ctype = head.removeprefix("data:").split(";", 1)[0] if head else ""
            try:
                content = base64.b64decode(b64, validate=True)
            except ValueError:
                return web.json_response({"error": "invalid base64 attachment"}, status=400)
            files.append((ctype, parts.get("filename", ""), content))
        if not body.get("recipients") or not (str(body.get("message", "")).strip() or files):
            return web.json_response({"error": "recipients and message required"}, status=400)
        self._ts += 1
        self.sent.append({**body, "timestamp": self._ts, "files": files})
        return web.json_response({"timestamp": str(self._ts)}, status=201)

    async def _attachment(self, request: web.Request) -> web.Response:
        att_id = request.match_info["id"]
        data = self.attachments.get(att_id)
        if data is None:
            return web.json_response({"error": "attachment not found"}, status=404)
        self.attachment_reads.append(att_id)
        return web.Response(body=data, content_type="application/octet-stream")

    async def _typing(self, request: web.Request) -> web.Response:
        err = self._failure("typing") or self._unknown(request.match_info["number"])
        if err is not None:
            return err
        self.typing.append(await request.json())
        return web.Response(status=204)

    # --- control endpoints (standalone use) --------------------------------------------------
    async def _ctl_inject(self, request: web.Request) -> web.Response:
        return web.json_response(self.inject_message(**await request.json()))

    async def _ctl_sent(self, request: web.Request) -> web.Response:
        return web.json_response(self.sent)

    async def _ctl_fail(self, request: web.Request) -> web.Response:
        self.fail(**await request.json())
        return web.json_response({"ok": True})


async def _serve(port: int, mode: str) -> None:
    async with FakeSignal(port=port, mode=mode) as fake:
        print(json.dumps({"api_base": fake.api_base, "number": fake.number}), flush=True)
        await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description="fake signal-cli-rest-api")
    parser.add_argument("--port", type=int, default=8083)
    parser.add_argument("--mode", default="json-rpc", choices=["json-rpc", "normal", "native"])
    args = parser.parse_args()
    asyncio.run(_serve(args.port, args.mode))


if __name__ == "__main__":
    main()
