"""A fake of Meta's Graph API for the WhatsApp Cloud API, on 127.0.0.1, and a webhook poster.

Shaped after Meta's public Cloud API docs: every call needs ``Authorization: Bearer <token>``
(else 401 with an ``OAuthException`` code 190 body). ``GET /<ver>/<phone_number_id>`` answers
the number's ``display_phone_number`` and ``verified_name``. ``POST /<ver>/<id>/messages``
takes ``{"messaging_product": "whatsapp", "to", "type": "text", "text": {"body"}}`` (answer:
``contacts`` and ``messages: [{"id": "wamid..."}]``; a body over 4096 characters: 400 code
100) or a read receipt ``{"status": "read", "message_id", "typing_indicator"?}`` (answer:
``{"success": true}``). Errors always come as ``{"error": {"message", "type", "code",
"fbtrace_id"}}``.

Media (Meta's media endpoints): ``add_media(data, mime)`` keeps a file under a numeric media id
(what an incoming picture carries); ``GET /<ver>/<media-id>`` answers ``{"url", "mime_type",
"sha256", "file_size", "id", "messaging_product"}`` with a url on this server
(``/_media/<id>``, served only with the bearer token: else 401); ``POST /<ver>/<id>/media``
takes a multipart upload (``messaging_product=whatsapp``, ``type``, ``file``) and answers
``{"id"}``; a message of type image / document sends ``{"id", "caption"?, "filename"?}`` of an
uploaded file (``sent_files``). ``media_url`` (a function of the id) makes the lookup point
elsewhere, as a compromised or confused API might; ``media_redirect`` makes the media url
answer a redirect.

Webhooks go the other way: ``payload(...)`` builds what Meta POSTs for an incoming text,
``sign(body, secret)`` its ``X-Hub-Signature-256`` value, ``post_webhook(url, body, secret)``
POSTs it as Meta does (``secret=None``: no signature header).

Test API: ``sent``, ``reads``, ``calls``, ``fail(method, count, status)`` with method "send" or
"info". Standalone: ``python -m tests.fakes.whatsapp_api --port 8443`` (``/_fake/sent``).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import hmac
import json
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
from aiohttp import web

from tests.fakes.base import Failures, FakeServer

TOKEN = "fake-wa-token"
APP_SECRET = "fake-app-secret"
VERIFY_TOKEN = "fake-verify-token"
NUMBER_ID = "109876543210"
DISPLAY_NUMBER = "15550001111"
VERSION = "v21.0"
SENDER = "15551234567"  # a wa_id: the number without "+"
LIMIT = 4096

_CODES = {401: 190, 403: 200, 429: 130429, 400: 100, 500: 131000, 503: 131000}


def _error(status: int, message: str, code: int | None = None) -> web.Response:
    body = {
        "error": {
            "message": message,
            "type": "OAuthException",
            "code": code if code is not None else _CODES.get(status, 1),
            "fbtrace_id": uuid.uuid4().hex[:16],
        }
    }
    return web.json_response(body, status=status)


def payload(
    text: str,
    *,
    wamid: str | None = None,
    sender: str = SENDER,
    name: str = "Kerry",
    number_id: str = NUMBER_ID,
    kind: str = "text",
    media: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """What Meta POSTs for one incoming message (``media``: the object of an image /
    document / audio message, e.g. ``{"id": <from add_media>, "mime_type", "caption"}``)."""
    message: dict[str, Any] = {
        "from": sender,
        "id": wamid or f"wamid.{uuid.uuid4().hex}",
        "timestamp": str(int(time.time())),
        "type": kind,
    }
    if kind == "text":
        message["text"] = {"body": text}
    else:
        message[kind] = media or {"id": uuid.uuid4().hex, "mime_type": "image/jpeg"}
    value = {
        "messaging_product": "whatsapp",
        "metadata": {"display_phone_number": DISPLAY_NUMBER, "phone_number_id": number_id},
        "contacts": [{"profile": {"name": name}, "wa_id": sender}],
        "messages": [message],
    }
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "WABA_ID", "changes": [{"value": value, "field": "messages"}]}],
    }


def sign(body: bytes, secret: str) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


async def post_webhook(
    url: str, body: bytes, secret: str | None, *, signature: str | None = None
) -> httpx.Response:
    """POST ``body`` as Meta does: JSON, signed with ``secret`` (or the given ``signature``)."""
    headers = {"Content-Type": "application/json", "User-Agent": "facebookexternalua"}
    if signature is not None:
        headers["X-Hub-Signature-256"] = signature
    elif secret is not None:
        headers["X-Hub-Signature-256"] = sign(body, secret)
    async with httpx.AsyncClient(timeout=15.0, verify=False) as client:
        return await client.post(url, content=body, headers=headers)


class FakeGraph(FakeServer):
    def __init__(
        self,
        *,
        token: str = TOKEN,
        number_id: str = NUMBER_ID,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.token, self.number_id, self.host, self.port = token, number_id, host, port
        self.sent: list[dict[str, Any]] = []
        self.reads: list[dict[str, Any]] = []
        self.calls: Counter[str] = Counter()
        self.unauthorized = 0
        self._failures = Failures()
        self.media: dict[str, tuple[bytes, str]] = {}  # media id -> (data, mime)
        self.downloads: list[str] = []  # media ids whose bytes were fetched
        self.uploads: list[dict[str, Any]] = []
        self.sent_files: list[dict[str, Any]] = []
        self.media_url: Callable[[str], str] | None = None
        self.media_redirect = ""  # set: the media url answers 302 to this location

    def add_media(self, data: bytes, mime: str) -> str:
        media_id = str(len(self.media) + 1_000_000_000_001)
        self.media[media_id] = (data, mime)
        return media_id

    @property
    def api_base(self) -> str:
        return f"http://{self.host}:{self.port}"

    def fail(self, method: str, count: int = 1, status: int = 500) -> None:
        self._failures.add(method, count, status, None)

    def texts(self) -> list[str]:
        return [m["text"]["body"] for m in self.sent]

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/_media/{id}", self._media_bytes)
        app.router.add_get("/{version}/{number}", self._info)
        app.router.add_post("/{version}/{number}/messages", self._messages)
        app.router.add_post("/{version}/{number}/media", self._upload)

    def _refusal(self, request: web.Request, method: str) -> web.Response | None:
        self.calls[method] += 1
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            self.unauthorized += 1
            return _error(401, "Invalid OAuth access token - Cannot parse access token")
        if request.match_info["version"] != VERSION or request.match_info["number"] != (
            self.number_id
        ):
            return _error(400, "Unsupported request: object does not exist", 100)
        planned = self._failures.take(method)
        if planned is not None:
            return _error(planned[0], "planned failure")
        return None

    async def _info(self, request: web.Request) -> web.Response:
        if request.match_info["number"] in self.media:
            return self._media_info(request)
        refusal = self._refusal(request, "info")
        if refusal is not None:
            return refusal
        return web.json_response(
            {
                "display_phone_number": DISPLAY_NUMBER,
                "verified_name": "Moltbot Test",
                "id": self.number_id,
            }
        )

    async def _messages(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except ValueError:
            return _error(400, "Invalid JSON", 100)
        if body.get("status") == "read":
            refusal = self._refusal(request, "read")
            if refusal is not None:
                return refusal
            self.reads.append(body)
            return web.json_response({"success": True})
        refusal = self._refusal(request, "send")
        if refusal is not None:
            return refusal
        is_file = body.get("type") in ("image", "document")
        if body.get("messaging_product") == "whatsapp" and is_file:
            return self._file_message(body)
        if body.get("messaging_product") != "whatsapp" or body.get("type") != "text":
            return _error(400, "(#100) Invalid parameter", 100)
        text = (body.get("text") or {}).get("body", "")
        if not text or len(text) > LIMIT:
            return _error(400, "(#100) Param text['body'] must be at most 4096 characters", 100)
        wamid = f"wamid.{uuid.uuid4().hex}"
        self.sent.append({**body, "id": wamid})
        return web.json_response(
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": body.get("to"), "wa_id": body.get("to")}],
                "messages": [{"id": wamid}],
            }
        )

    def _media_info(self, request: web.Request) -> web.Response:
        self.calls["media_info"] += 1
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            self.unauthorized += 1
            return _error(401, "Invalid OAuth access token - Cannot parse access token")
        media_id = request.match_info["number"]
        data, mime = self.media[media_id]
        url = self.media_url(media_id) if self.media_url else f"{self.api_base}/_media/{media_id}"
        return web.json_response(
            {
                "messaging_product": "whatsapp",
                "url": url,
                "mime_type": mime,
                "sha256": hashlib.sha256(data).hexdigest(),
                "file_size": str(len(data)),
                "id": media_id,
            }
        )

    async def _media_bytes(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            self.unauthorized += 1
            return web.Response(status=401, text="unauthorized")
        media_id = request.match_info["id"]
        if self.media_redirect:
            raise web.HTTPFound(self.media_redirect)
        if media_id not in self.media:
            return web.Response(status=404)
        self.downloads.append(media_id)
        data, mime = self.media[media_id]
        return web.Response(body=data, content_type=mime)

    async def _upload(self, request: web.Request) -> web.Response:
        refusal = self._refusal(request, "upload")
        if refusal is not None:
            return refusal
        form = await request.post()
        upload = form.get("file")
        if form.get("messaging_product") != "whatsapp" or not isinstance(upload, web.FileField):
            return _error(400, "(#100) The parameter messaging_product is required.", 100)
        data = upload.file.read()
        media_id = self.add_media(data, str(form.get("type") or upload.content_type))
        self.uploads.append(
            {"id": media_id, "filename": upload.filename, "type": form.get("type"), "data": data}
        )
        return web.json_response({"id": media_id})

    def _file_message(self, body: dict[str, Any]) -> web.Response:
        kind = body["type"]
        media = body.get(kind) or {}
        if media.get("id") not in self.media:
            return _error(400, "(#131053) Media upload error: unknown media id", 131053)
        wamid = f"wamid.{uuid.uuid4().hex}"
        data, mime = self.media[media["id"]]
        self.sent_files.append({**body, "id": wamid, "data": data, "mime": mime})
        return web.json_response(
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": body.get("to"), "wa_id": body.get("to")}],
                "messages": [{"id": wamid}],
            }
        )

    async def _ctl_inject(self, request: web.Request) -> web.Response:
        return _error(400, "webhooks are POSTed to moltbot: use post_webhook()")

    async def _ctl_sent(self, request: web.Request) -> web.Response:
        return web.json_response(self.sent)

    async def _ctl_fail(self, request: web.Request) -> web.Response:
        data = await request.json()
        self.fail(str(data["method"]), int(data.get("count", 1)), int(data.get("status", 500)))
        return web.json_response({"ok": True})


async def _main(port: int) -> None:
    async with FakeGraph(port=port) as fake:
        print(json.dumps({"api_base": fake.api_base, "token": fake.token}), flush=True)
        await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=8443)
    asyncio.run(_main(parser.parse_args().port))
