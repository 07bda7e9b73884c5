"""A fake Telegram Bot API on 127.0.0.1, spoken to by the real aiogram client.

Test API: ``inject_message(...)`` queues an update; ``sent`` / ``actions`` record what the bot
sent; ``fail(method, count, status, retry_after)`` makes the next ``count`` calls of a method
fail; ``calls`` counts requests per method. getUpdates behaves like Telegram: long poll up to
``timeout``; an update is dropped only when a later ``offset`` is requested; a newer
getUpdates ends an older waiting one with 409.

Standalone (benchmarks): ``python -m tests.fakes.telegram_api --port 8081 --token T`` with
control endpoints ``POST /_fake/inject`` (JSON kwargs of inject_message), ``GET /_fake/sent``,
``POST /_fake/fail``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import time
from collections import Counter
from html.parser import HTMLParser
from typing import Any

from aiohttp import web

from tests.fakes.base import Failures, FakeServer

DEFAULT_TOKEN = "123456:TEST-fake-token"
_ALLOWED_TAGS = {
    "b",
    "strong",
    "i",
    "em",
    "u",
    "ins",
    "s",
    "strike",
    "del",
    "code",
    "pre",
    "a",
    "span",
    "tg-spoiler",
    "blockquote",
}


class _HtmlCheck(HTMLParser):
    """What Telegram's entity parser refuses: unknown tags, unbalanced tags."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.text: list[str] = []
        self.error = ""

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _ALLOWED_TAGS:
            self.error = self.error or f'unsupported start tag "{tag}"'
        self.stack.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack.pop() != tag:
            self.error = self.error or f'unmatched end tag "{tag}"'

    def handle_data(self, data: str) -> None:
        self.text.append(data)


def parse_html(text: str) -> tuple[str, str]:
    """(plain text, error) like Telegram's parse_mode=HTML."""
    if re.search(r"<(?![a-zA-Z/])", text):
        return "", "unescaped '<'"
    p = _HtmlCheck()
    p.feed(text)
    p.close()
    if p.stack and not p.error:
        p.error = f'unclosed tag "{p.stack[-1]}"'
    return "".join(p.text), p.error


class FakeTelegram(FakeServer):
    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        bot_id: int = 999000,
        username: str = "moltbot_test_bot",
    ) -> None:
        self.token, self.host, self.port = token, host, port
        self.bot = {"id": bot_id, "is_bot": True, "first_name": "Moltbot", "username": username}
        self.updates: list[dict[str, Any]] = []
        self.sent: list[dict[str, Any]] = []
        self.actions: list[dict[str, Any]] = []
        self.calls: Counter[str] = Counter()
        self.offsets: list[int | None] = []
        self._failures = Failures()
        self._next_update = 1
        self._next_message = 100
        self._changed = asyncio.Event()
        self._poll_gen = 0
        self._closing = False
        self.files: dict[str, bytes] = {}  # file_id -> content (what getFile serves)
        self.downloads: list[str] = []  # file paths downloaded
        self.sent_files: list[dict[str, Any]] = []  # sendPhoto / sendDocument

    # --- lifecycle -----------------------------------------------------------------------
    @property
    def api_base(self) -> str:
        return f"http://{self.host}:{self.port}"

    def routes(self, app: web.Application) -> None:
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        app.router.add_get("/file/bot{token}/{path:.+}", self._download)

    async def stop(self) -> None:
        self._closing = True
        self._changed.set()
        await super().stop()

    # --- test API ------------------------------------------------------------------------
    def inject_message(
        self,
        *,
        chat_id: int,
        user_id: int,
        text: str,
        chat_type: str = "private",
        first_name: str = "Alice",
        chat_title: str = "Group",
        reply_to_bot: bool = False,
        thread_id: int | None = None,
    ) -> int:
        """Queue an update with a text message; ``@mentions`` get entities like Telegram's."""
        chat: dict[str, Any] = {"id": chat_id, "type": chat_type}
        if chat_type == "private":
            chat["first_name"] = first_name
        else:
            chat["title"] = chat_title
        self._next_message += 1
        msg: dict[str, Any] = {
            "message_id": self._next_message,
            "date": int(time.time()),
            "chat": chat,
            "from": {"id": user_id, "is_bot": False, "first_name": first_name},
            "text": text,
        }
        entities = [
            {"type": "mention", "offset": m.start(), "length": m.end() - m.start()}
            for m in re.finditer(r"@\w{3,}", text)
        ]
        if entities:
            msg["entities"] = entities
        if reply_to_bot:
            msg["reply_to_message"] = {
                "message_id": 1,
                "date": int(time.time()),
                "chat": chat,
                "from": self.bot,
                "text": "earlier answer",
            }
        if thread_id is not None:
            msg["message_thread_id"] = thread_id
            msg["is_topic_message"] = True
        update_id = self._next_update
        self._next_update += 1
        self.updates.append({"update_id": update_id, "message": msg})
        self._wake()
        return update_id

    def inject_file(
        self,
        *,
        chat_id: int,
        user_id: int,
        kind: str,
        data: bytes,
        file_name: str | None = None,
        mime_type: str | None = None,
        caption: str | None = None,
        declared_size: int | None = None,
    ) -> int:
        """Queue a message with a ``photo`` (sizes, largest last), ``document``, ``voice`` or
        ``audio``, as Telegram sends them; the bytes are served by getFile + the file URL."""
        self._next_message += 1
        file_id = f"F{self._next_message}"
        self.files[file_id] = data
        size = len(data) if declared_size is None else declared_size
        common = {"file_id": file_id, "file_unique_id": f"U{file_id}", "file_size": size}
        msg: dict[str, Any] = {
            "message_id": self._next_message,
            "date": int(time.time()),
            "chat": {"id": chat_id, "type": "private", "first_name": "Alice"},
            "from": {"id": user_id, "is_bot": False, "first_name": "Alice"},
        }
        if kind == "photo":
            thumb = {"file_id": f"T{file_id}", "file_unique_id": "t", "width": 90, "height": 60}
            msg["photo"] = [thumb, {**common, "width": 800, "height": 600}]
        elif kind == "voice":
            msg["voice"] = {**common, "duration": 3, "mime_type": mime_type or "audio/ogg"}
        else:
            doc = {**common, **({"file_name": file_name} if file_name else {})}
            if mime_type:
                doc["mime_type"] = mime_type
            msg[kind] = {**doc, "duration": 3} if kind == "audio" else doc
        if caption is not None:
            msg["caption"] = caption
        update_id = self._next_update
        self._next_update += 1
        self.updates.append({"update_id": update_id, "message": msg})
        self._wake()
        return update_id

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

    @staticmethod
    def _ok(result: Any) -> web.Response:
        return web.json_response({"ok": True, "result": result})

    @staticmethod
    def _error(status: int, description: str, retry_after: float | None = None) -> web.Response:
        body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
        if retry_after is not None:
            body["parameters"] = {"retry_after": retry_after}
        return web.json_response(body, status=status)

    async def _params(self, request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query)
        if request.content_type == "application/json":
            params.update(await request.json())
        elif request.can_read_body:
            form = await request.post()
            params.update({k: v for k, v in form.items() if isinstance(v, str)})
            uploads = {
                k: (v.filename, v.file.read(), v.content_type)
                for k, v in form.items()
                if isinstance(v, web.FileField)
            }
            if uploads:
                params["_files"] = uploads
        return params

    async def _handle(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        self.calls[method] += 1
        if request.match_info["token"] != self.token:
            return self._error(401, "Unauthorized")
        failure = self._failures.take(method)
        if failure is not None:
            status, retry_after = failure
            if status == 429:
                return self._error(
                    429,
                    f"Too Many Requests: retry after {retry_after}",
                    retry_after if retry_after is not None else 1,
                )
            return self._error(status, "Internal Server Error" if status >= 500 else "Bad Request")
        params = await self._params(request)
        handler = {
            "getMe": self._get_me,
            "getUpdates": self._get_updates,
            "sendMessage": self._send_message,
            "sendChatAction": self._send_chat_action,
            "deleteWebhook": self._delete_webhook,
            "getFile": self._get_file,
            "sendPhoto": self._send_file,
            "sendDocument": self._send_file,
        }.get(method)
        if handler is None:
            return self._error(404, "Not Found: method not found")
        return await handler(params)

    async def _get_me(self, params: dict[str, Any]) -> web.Response:
        return self._ok(self.bot)

    async def _delete_webhook(self, params: dict[str, Any]) -> web.Response:
        return self._ok(True)

    async def _get_updates(self, params: dict[str, Any]) -> web.Response:
        offset = int(params["offset"]) if params.get("offset") not in (None, "") else None
        timeout = float(params.get("timeout") or 0)
        limit = int(params.get("limit") or 100)
        self.offsets.append(offset)
        if offset is not None:  # confirming: everything before offset is forgotten
            self.updates = [u for u in self.updates if u["update_id"] >= offset]
        self._poll_gen += 1
        gen = self._poll_gen
        self._wake()  # an older waiting getUpdates ends with 409, like Telegram
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while True:
            if gen != self._poll_gen:
                return self._error(409, "Conflict: terminated by other getUpdates request")
            if self.updates or loop.time() >= end or self._closing:
                return self._ok(self.updates[:limit])
            changed = self._changed
            try:
                await asyncio.wait_for(changed.wait(), end - loop.time())
            except TimeoutError:
                pass

    async def _send_message(self, params: dict[str, Any]) -> web.Response:
        text = str(params.get("text") or "")
        if not params.get("chat_id"):
            return self._error(400, "Bad Request: chat_id is empty")
        plain = text
        if params.get("parse_mode") == "HTML":
            plain, err = parse_html(text)
            if err:
                return self._error(400, f"Bad Request: can't parse entities: {err}")
        if not plain.strip():
            return self._error(400, "Bad Request: message text is empty")
        if len(plain) > 4096:
            return self._error(400, "Bad Request: message is too long")
        self._next_message += 1
        record = {"message_id": self._next_message, **params, "plain": plain}
        self.sent.append(record)
        chat_id = int(params["chat_id"])
        return self._ok(
            {
                "message_id": self._next_message,
                "date": int(time.time()),
                "chat": {"id": chat_id, "type": "private" if chat_id > 0 else "group"},
                "from": self.bot,
                "text": plain,
            }
        )

    async def _get_file(self, params: dict[str, Any]) -> web.Response:
        file_id = str(params.get("file_id") or "")
        data = self.files.get(file_id)
        if data is None:
            return self._error(400, "Bad Request: invalid file_id")
        if len(data) > 20 * 1024 * 1024:  # the Bot API serves files up to 20 MB
            return self._error(400, "Bad Request: file is too big")
        path = f"documents/{file_id}"
        return self._ok(
            {
                "file_id": file_id,
                "file_unique_id": f"U{file_id}",
                "file_size": len(data),
                "file_path": path,
            }
        )

    async def _download(self, request: web.Request) -> web.Response:
        if request.match_info["token"] != self.token:
            return web.Response(status=401)
        path = request.match_info["path"]
        data = self.files.get(path.removeprefix("documents/"))
        if data is None:
            return web.Response(status=404)
        self.downloads.append(path)
        return web.Response(body=data, content_type="application/octet-stream")

    async def _send_file(self, params: dict[str, Any]) -> web.Response:
        files = dict(params.get("_files", {}))
        for key in ("photo", "document"):  # a field may name its upload: "attach://<name>"
            ref = params.get(key)
            if isinstance(ref, str) and ref.startswith("attach://"):
                if ref.removeprefix("attach://") in files:
                    files[key] = files[ref.removeprefix("attach://")]
        field = "photo" if "photo" in files else "document"
        if field not in files or not params.get("chat_id"):
            return self._error(400, f"Bad Request: there is no {field} in the request")
        filename, data, _ctype = files[field]
        if field == "photo" and len(data) > 10 * 1024 * 1024:
            return self._error(400, "Bad Request: PHOTO_INVALID_DIMENSIONS")
        self._next_message += 1
        self.sent_files.append(
            {
                "method": "sendPhoto" if field == "photo" else "sendDocument",
                "chat_id": params["chat_id"],
                "filename": filename,
                "data": data,
                "caption": params.get("caption", ""),
            }
        )
        chat_id = int(params["chat_id"])
        return self._ok(
            {
                "message_id": self._next_message,
                "date": int(time.time()),
                "chat": {"id": chat_id, "type": "private"},
                "from": self.bot,
            }
        )

    async def _send_chat_action(self, params: dict[str, Any]) -> web.Response:
        self.actions.append(params)
        return self._ok(True)

    # --- control endpoints (standalone use) --------------------------------------------------
    async def _ctl_inject(self, request: web.Request) -> web.Response:
        return web.json_response({"update_id": self.inject_message(**await request.json())})

    async def _ctl_sent(self, request: web.Request) -> web.Response:
        return web.json_response(self.sent)

    async def _ctl_fail(self, request: web.Request) -> web.Response:
        self.fail(**await request.json())
        return web.json_response({"ok": True})


async def _serve(port: int, token: str) -> None:
    async with FakeTelegram(token, port=port) as fake:
        print(json.dumps({"api_base": fake.api_base, "token": token}), flush=True)
        await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description="fake Telegram Bot API")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--token", default=DEFAULT_TOKEN)
    args = parser.parse_args()
    asyncio.run(_serve(args.port, args.token))


if __name__ == "__main__":
    main()
