"""A fake BlueBubbles server (its REST API, v1) on 127.0.0.1, for the iMessage adapter.

Shaped after BlueBubbles' public API docs: every request carries the server password in the
``password`` query parameter (``guid`` is accepted too), else 401; every answer is the envelope
``{"status", "message", "data"}`` (errors add ``"error": {"type", "message"}``).

``GET /api/v1/ping``, ``GET /api/v1/server/info``, ``POST /api/v1/message/query`` (``after`` /
``before`` in ms since the epoch, ``after`` inclusive like the real server; ``limit``, ``offset``,
``sort`` "ASC" | "DESC" by ``dateCreated``; ``with`` may ask for "chat" / "handle"; ``chatGuid``),
``POST /api/v1/message/text`` (``chatGuid``, ``message``, ``method`` "apple-script" |
"private-api", ``tempGuid``; the sent message lands in the store as ``isFromMe``),
``POST /api/v1/chat/<guid>/typing`` (Private API only, else 400).

Chats: DMs ``iMessage;-;<address>`` (style 45) and the group ``iMessage;+;chat123`` (style 43).

Test API: ``inject_message(...)``, ``sent``, ``typing``, ``queries``, ``calls``,
``fail(method, count, status)`` for ping/info/query/send/typing, ``await go_down("503" |
"refuse")`` and ``await come_back()``. Standalone: ``python -m tests.fakes.bluebubbles_api
--port 1234 --password pw`` with ``POST /_fake/inject``, ``GET /_fake/sent``, ``POST /_fake/fail``.
"""

from __future__ import annotations

import argparse
import asyncio
import hmac
import json
import time
import uuid
from collections import Counter
from typing import Any

from aiohttp import web

from tests.fakes.base import Failures, FakeServer

PASSWORD = "fake-bb-password"
ME = "bot@icloud.com"
DM_ADDRESS = "+15551234567"
DM_CHAT = f"iMessage;-;{DM_ADDRESS}"
GROUP_CHAT = "iMessage;+;chat123"
GROUP_STYLE, DM_STYLE = 43, 45


def _envelope(data: Any, status: int = 200, message: str = "Success", **extra: Any) -> web.Response:
    return web.json_response(
        {"status": status, "message": message, "data": data, **extra}, status=status
    )


def _error(status: int, kind: str, text: str) -> web.Response:
    return web.json_response(
        {"status": status, "message": text, "error": {"type": kind, "message": text}}, status=status
    )


class FakeBlueBubbles(FakeServer):
    def __init__(
        self,
        *,
        password: str = PASSWORD,
        private_api: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.password, self.private_api, self.host, self.port = password, private_api, host, port
        self.messages: list[dict[str, Any]] = []  # the iMessage database, in insertion order
        self.chats: dict[str, dict[str, Any]] = {}
        self.sent: list[dict[str, Any]] = []
        self.typing: list[str] = []
        self.files: dict[str, bytes] = {}  # attachment guid -> content
        self.downloads: list[str] = []
        self.sent_files: list[dict[str, Any]] = []
        self.queries: list[dict[str, Any]] = []
        self.calls: Counter[str] = Counter()
        self.unauthorized = 0
        self.refused_while_down = 0  # calls answered 503 by go_down("503")
        self._failures = Failures()
        self._down: str | None = None
        self._rowid = 0
        self._last_ms = 0
        self._chat(GROUP_CHAT, display_name="Team", participants=[DM_ADDRESS, "+15557654321"])

    @property
    def api_base(self) -> str:
        return f"http://{self.host}:{self.port}"

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/api/v1/ping", self._ping)
        app.router.add_get("/api/v1/server/info", self._info)
        app.router.add_post("/api/v1/message/query", self._query)
        app.router.add_post("/api/v1/message/text", self._send)
        app.router.add_post("/api/v1/chat/{guid}/typing", self._typing)
        app.router.add_get("/api/v1/attachment/{guid}/download", self._download)
        app.router.add_post("/api/v1/message/attachment", self._send_attachment)

    # --- test API ------------------------------------------------------------------------
    def inject_message(
        self,
        text: str,
        *,
        sender: str = DM_ADDRESS,
        chat: str | None = None,
        from_me: bool = False,
        item_type: int = 0,
        associated: str | None = None,
        created_ms: int | None = None,
        files: list[tuple[str, str, bytes]] | None = None,
    ) -> dict[str, Any]:
        """A message arriving in the Mac's database (``chat`` default: the sender's DM;
        ``created_ms``: its dateCreated, e.g. older than one already there). ``files``: (name,
        mime type, bytes) as its ``attachments`` (listed when a query asks ``with``
        ``attachment``; their bytes at ``/api/v1/attachment/<guid>/download``)."""
        chat_guid = chat or f"iMessage;-;{sender}"
        self._chat(chat_guid)
        msg = self._store(
            text,
            sender=sender,
            chat_guid=chat_guid,
            from_me=from_me,
            item_type=item_type,
            associated=associated,
            created_ms=created_ms,
        )
        for name, mime, data in files or []:
            guid = str(uuid.uuid4()).upper()
            self.files[guid] = data
            msg["attachments"].append(
                {
                    "originalROWID": self._rowid,
                    "guid": guid,
                    "uti": "public.data",
                    "mimeType": mime,
                    "transferName": name,
                    "totalBytes": len(data),
                    "isOutgoing": False,
                    "hideAttachment": False,
                }
            )
        return msg

    def fail(self, method: str, count: int = 1, status: int = 500) -> None:
        self._failures.add(method, count, status, None)

    async def go_down(self, how: str = "503") -> None:
        """``"503"``: every API call answers 503; ``"refuse"``: the port is closed."""
        self._down = how
        if how == "refuse" and self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def come_back(self) -> None:
        if self._down == "refuse":
            await self.start()  # same port: FakeServer.start kept the one it got
        self._down = None

    async def wait_sent(self, n: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        async with asyncio.timeout(timeout):
            while len(self.sent) < n:
                await asyncio.sleep(0.01)
        return self.sent

    # --- the database --------------------------------------------------------------------
    def _chat(
        self, guid: str, *, display_name: str = "", participants: list[str] | None = None
    ) -> dict[str, Any]:
        if guid not in self.chats:
            group = ";+;" in guid
            ident = guid.rsplit(";", 1)[-1]
            self.chats[guid] = {
                "originalROWID": len(self.chats) + 1,
                "guid": guid,
                "style": GROUP_STYLE if group else DM_STYLE,
                "chatIdentifier": ident,
                "isArchived": False,
                "displayName": display_name,
                "participants": [
                    {"address": a, "service": "iMessage"} for a in (participants or [ident])
                ],
            }
        return self.chats[guid]

    def _now_ms(self) -> int:
        self._last_ms = max(int(time.time() * 1000), self._last_ms + 1)
        return self._last_ms

    def _store(
        self,
        text: str,
        *,
        sender: str,
        chat_guid: str,
        from_me: bool,
        item_type: int = 0,
        associated: str | None = None,
        created_ms: int | None = None,
    ) -> dict[str, Any]:
        self._rowid += 1
        msg = {
            "originalROWID": self._rowid,
            "guid": str(uuid.uuid4()).upper(),
            "text": text,
            "handle": None
            if from_me
            else {
                "address": sender,
                "service": "iMessage",
                "country": "us",
                "uncanonicalizedId": None,
            },
            "handleId": 0 if from_me else self._rowid,
            "isFromMe": from_me,
            "dateCreated": self._now_ms() if created_ms is None else created_ms,
            "dateRead": None,
            "dateDelivered": None,
            "itemType": item_type,
            "associatedMessageGuid": associated,
            "associatedMessageType": "love" if associated else None,
            "attachments": [],
            "subject": None,
            "error": 0,
            "chat": chat_guid,
        }
        self.messages.append(msg)
        return msg

    def _public(self, msg: dict[str, Any], with_: set[str]) -> dict[str, Any]:
        out = {k: v for k, v in msg.items() if k != "chat"}
        if "chat" in with_ or "chats" in with_:
            chat = self.chats[msg["chat"]]
            out["chats"] = [{k: v for k, v in chat.items() if k != "participants"}]
        if not ({"handle", "handles"} & with_):
            out.pop("handle")
        if not ({"attachment", "attachments"} & with_):
            out["attachments"] = []
        return out

    # --- HTTP ----------------------------------------------------------------------------
    def _gate(self, request: web.Request, method: str) -> web.Response | None:
        if self._down == "503":
            self.refused_while_down += 1
            return _error(503, "Server Error", "Service Unavailable")
        given = request.query.get("password") or request.query.get("guid") or ""
        if not hmac.compare_digest(given.encode(), self.password.encode()):
            self.unauthorized += 1
            return _error(
                401, "Authentication Error", "You are not authorized to access this resource"
            )
        self.calls[method] += 1
        failure = self._failures.take(method)
        if failure is not None:
            return _error(failure[0], "Server Error", "injected failure")
        return None

    async def _ping(self, request: web.Request) -> web.Response:
        return self._gate(request, "ping") or _envelope("pong", message="Ping received!")

    async def _info(self, request: web.Request) -> web.Response:
        return self._gate(request, "info") or _envelope(
            {
                "computer_id": "fake-mac",
                "os_version": "14.5",
                "server_version": "1.9.9",
                "private_api": self.private_api,
                "helper_connected": self.private_api,
                "proxy_service": "lan-url",
                "detected_icloud": ME,
                "detected_imessage": ME,
            }
        )

    async def _query(self, request: web.Request) -> web.Response:
        err = self._gate(request, "query")
        if err is not None:
            return err
        body = await request.json()
        self.queries.append(body)
        with_ = {str(w).lower() for w in body.get("with", [])}
        found = [
            m
            for m in self.messages
            if (body.get("after") is None or m["dateCreated"] >= int(body["after"]))
            and (body.get("before") is None or m["dateCreated"] < int(body["before"]))
            and body.get("chatGuid") in (None, m["chat"])
        ]
        found.sort(
            key=lambda m: (m["dateCreated"], m["originalROWID"]),
            reverse=str(body.get("sort", "DESC")).upper() == "DESC",
        )
        offset, limit = int(body.get("offset", 0)), min(int(body.get("limit", 100)), 1000)
        page = found[offset : offset + limit]
        return _envelope(
            [self._public(m, with_) for m in page],
            metadata={"offset": offset, "limit": limit, "total": len(found)},
        )

    async def _send(self, request: web.Request) -> web.Response:
        err = self._gate(request, "send")
        if err is not None:
            return err
        body = await request.json()
        chat, text = str(body.get("chatGuid", "")), str(body.get("message", ""))
        method = body.get("method", "apple-script")
        if not chat or not text or not body.get("tempGuid"):
            return _error(400, "Validation Error", "chatGuid, tempGuid and message are required")
        if method not in ("apple-script", "private-api"):
            return _error(400, "Validation Error", "unknown send method")
        if method == "private-api" and not self.private_api:
            return _error(400, "iMessage Error", "iMessage Private API is not enabled!")
        if chat not in self.chats and ";+;" in chat:
            return _error(404, "Database Error", "Chat does not exist")
        self._chat(chat)
        msg = self._store(text, sender=ME, chat_guid=chat, from_me=True)
        self.sent.append({**body, "guid": msg["guid"]})
        return _envelope(self._public(msg, {"chat"}), message="Message sent!")

    async def _download(self, request: web.Request) -> web.Response:
        err = self._gate(request, "download")
        if err is not None:
            return err
        guid = request.match_info["guid"]
        if guid not in self.files:
            return _error(404, "Database Error", "Attachment does not exist")
        self.downloads.append(guid)
        return web.Response(body=self.files[guid], content_type="application/octet-stream")

    async def _send_attachment(self, request: web.Request) -> web.Response:
        err = self._gate(request, "send_attachment")
        if err is not None:
            return err
        form = await request.post()
        upload = form.get("attachment")
        chat = str(form.get("chatGuid") or "")
        if not isinstance(upload, web.FileField) or not chat or not form.get("tempGuid"):
            return _error(400, "Validation Error", "chatGuid, tempGuid and attachment are required")
        self._chat(chat)
        msg = self._store("\ufffc", sender=ME, chat_guid=chat, from_me=True)
        self.sent_files.append(
            {
                "chatGuid": chat,
                "name": str(form.get("name") or upload.filename),
                "data": upload.file.read(),
                "method": form.get("method"),
                "guid": msg["guid"],
            }
        )
        return _envelope(self._public(msg, {"chat"}), message="Attachment sent!")

    async def _typing(self, request: web.Request) -> web.Response:
        err = self._gate(request, "typing")
        if err is not None:
            return err
        if not self.private_api:
            return _error(400, "iMessage Error", "iMessage Private API is not enabled!")
        guid = request.match_info["guid"]
        if guid not in self.chats:
            return _error(404, "Database Error", "Chat does not exist")
        self.typing.append(guid)
        return _envelope(None, message="Successfully started typing!")

    # --- control endpoints (standalone use) --------------------------------------------------
    async def _ctl_inject(self, request: web.Request) -> web.Response:
        body = await request.json()
        return web.json_response(self.inject_message(str(body.pop("text")), **body))

    async def _ctl_sent(self, request: web.Request) -> web.Response:
        return web.json_response(self.sent)

    async def _ctl_fail(self, request: web.Request) -> web.Response:
        self.fail(**await request.json())
        return web.json_response({"ok": True})


async def _serve(port: int, password: str) -> None:
    async with FakeBlueBubbles(port=port, password=password) as fake:
        print(json.dumps({"api_base": fake.api_base}), flush=True)
        await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description="fake BlueBubbles server")
    parser.add_argument("--port", type=int, default=1234)
    parser.add_argument("--password", default=PASSWORD)
    args = parser.parse_args()
    asyncio.run(_serve(args.port, args.password))


if __name__ == "__main__":
    main()
