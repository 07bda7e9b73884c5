"""A fake of Meta's Graph API for the WhatsApp Cloud API, on 127.0.0.1, and a webhook poster.

Shaped after Meta's public Cloud API docs: every call needs ``Authorization: Bearer <token>``
(else 401 with an ``OAuthException`` code 190 body). ``GET /<ver>/<phone_number_id>`` answers
the number's ``display_phone_number`` and ``verified_name``. ``POST /<ver>/<id>/messages``
takes ``{"messaging_product": "whatsapp", "to", "type": "text", "text": {"body"}}`` (answer:
``contacts`` and ``messages: [{"id": "wamid..."}]``; a body over 4096 characters: 400 code
100) or a read receipt ``{"status": "read", "message_id", "typing_indicator"?}`` (answer:
``{"success": true}``). Errors always come as ``{"error": {"message", "type", "code",
"fbtrace_id"}}``.

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
) -> dict[str, Any]:
    """What Meta POSTs for one incoming message."""
    message: dict[str, Any] = {
        "from": sender,
        "id": wamid or f"wamid.{uuid.uuid4().hex}",
        "timestamp": str(int(time.time())),
        "type": kind,
    }
    if kind == "text":
        message["text"] = {"body": text}
    else:
        message[kind] = {"id": uuid.uuid4().hex, "mime_type": "image/jpeg"}
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

    @property
    def api_base(self) -> str:
        return f"http://{self.host}:{self.port}"

    def fail(self, method: str, count: int = 1, status: int = 500) -> None:
        self._failures.add(method, count, status, None)

    def texts(self) -> list[str]:
        return [m["text"]["body"] for m in self.sent]

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/{version}/{number}", self._info)
        app.router.add_post("/{version}/{number}/messages", self._messages)

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
