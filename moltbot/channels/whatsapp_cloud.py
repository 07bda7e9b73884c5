"""WhatsApp through the Business Cloud API: Meta's webhooks in, the Graph API (httpx) out.

Receiving: Meta POSTs to the gateway's ``/hooks/whatsapp/<account>``; the gateway carries the
request here (``webhook``). A POST must carry ``X-Hub-Signature-256: sha256=<hex>``, the
HMAC-SHA256 of the raw body keyed with the app secret (compared in constant time), else 401
and an audit record. Its messages go through the sink (access check, journal + fsync) and the
answer is 200 only once every one of them was accepted; any failure answers 503, and Meta
delivers the whole POST again later. A POST delivered twice (Meta's retry, or a replay of a
captured one: its signature is still good) carries the same ``wamid`` ids, and the journal
de-duplicates on them, so it is not answered twice. The GET handshake (``hub.mode`` =
``subscribe``, ``hub.verify_token``) echoes ``hub.challenge`` when the token matches.

The Cloud API has no groups in its webhook shape used here: every chat is a DM with the
sender's ``wa_id``. ``sender_id`` is the number in E.164 (``+15551234567``), as in
``allow_from`` and ``owners``; ``chat_id`` is the bare ``wa_id`` the API sends to.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import random
from collections import OrderedDict
from typing import Any, TypeVar
from urllib.parse import parse_qs

import httpx
import msgspec

from moltbot.channels.base import InboundSink, sink_together
from moltbot.channels.formatting import render
from moltbot.channels.hooks import HookReply, HookRequest, refused
from moltbot.channels.retry import DEFAULT_RETRY, Retrier, RetryPolicy, Sleep
from moltbot.channels.whatsapp_cloud_media import (
    KINDS,
    Media,
    attachment,
    check_media_id,
    declared_size,
    media_hosts,
    message_body,
)
from moltbot.channels.whatsapp_graph import GraphClient
from moltbot.clock import SYSTEM_CLOCK, Clock
from moltbot.errors import PlatformRejected
from moltbot.messages import Attachment, InboundMessage, OutboundFile, OutboundMessage

log = logging.getLogger(__name__)
T = TypeVar("T")

WHATSAPP_LIMIT = 4096  # characters of a text message body (Cloud API)
SIGNATURE_HEADER = "x-hub-signature-256"
_LAST_IN = 1024  # chats whose newest inbound id is kept (read receipts, typing)


def signature_ok(app_secret: str, body: bytes, header: str | None) -> bool:
    """True when ``header`` is ``sha256=<hex of HMAC-SHA256(app_secret, body)>``."""
    if not header or not header.startswith("sha256="):
        return False
    want = hmac.new(app_secret.encode(), body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(
        want.encode(), header.removeprefix("sha256=").strip().lower().encode()
    )


class _Text(msgspec.Struct):
    body: str = ""


class _Button(msgspec.Struct):
    text: str = ""


class _Reply(msgspec.Struct):
    title: str = ""


class _Interactive(msgspec.Struct):
    button_reply: _Reply | None = None
    list_reply: _Reply | None = None


class _Message(msgspec.Struct, rename={"sender": "from"}):
    sender: str
    id: str
    type: str = "text"
    timestamp: str = "0"
    text: _Text | None = None
    button: _Button | None = None
    interactive: _Interactive | None = None
    image: Media | None = None
    document: Media | None = None
    audio: Media | None = None
    video: Media | None = None
    sticker: Media | None = None


class _Profile(msgspec.Struct):
    name: str = ""


class _Contact(msgspec.Struct):
    wa_id: str = ""
    profile: _Profile | None = None


class _Metadata(msgspec.Struct):
    phone_number_id: str = ""
    display_phone_number: str = ""


class _Value(msgspec.Struct):
    metadata: _Metadata | None = None
    contacts: list[_Contact] = []
    messages: list[_Message] = []


class _Change(msgspec.Struct):
    value: _Value | None = None
    field: str = ""


class _Entry(msgspec.Struct):
    changes: list[_Change] = []


class _Payload(msgspec.Struct):
    object: str = ""
    entry: list[_Entry] = []


def _text_of(m: _Message) -> str:
    if m.type == "text" and m.text is not None:
        return m.text.body
    if m.type == "button" and m.button is not None:
        return m.button.text
    if m.type == "interactive" and m.interactive is not None:
        picked = m.interactive.button_reply or m.interactive.list_reply
        return picked.title if picked is not None else ""
    media = getattr(m, m.type, None) if m.type in KINDS else None
    return media.caption if isinstance(media, Media) else ""  # reactions, locations...: none


class WhatsAppCloudAdapter:
    channel = "whatsapp"

    def __init__(
        self,
        *,
        account: str,
        phone_number_id: str,
        access_token: str,
        app_secret: str,
        verify_token: str,
        api_base: str = "https://graph.facebook.com",
        api_version: str = "v21.0",
        retry: RetryPolicy = DEFAULT_RETRY,
        clock: Clock = SYSTEM_CLOCK,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.account = account
        self.last_activity = clock.monotonic()
        self._number_id = phone_number_id
        self._app_secret, self._verify_token = app_secret, verify_token
        self._media_hosts = media_hosts(api_base)
        self._graph = GraphClient(
            api_base=api_base, api_version=api_version, token=access_token, transport=transport
        )
        self._clock = clock
        self._retrier = Retrier(
            retry, platform="WhatsApp", channel="whatsapp", sleep=sleep, clock=clock, rng=rng
        )
        self._sink: InboundSink | None = None
        self._last_in: OrderedDict[str, str] = OrderedDict()  # chat -> newest wamid

    def __repr__(self) -> str:  # never the secrets
        return f"WhatsAppCloudAdapter(account={self.account!r})"

    async def connect(self) -> dict[str, Any]:
        info = await self._graph.get(
            self._number_id, params={"fields": "display_phone_number,verified_name"}
        )
        self.last_activity = self._clock.monotonic()
        return {
            "id": self._number_id,
            "number": str(info.get("display_phone_number", "")),
            "name": str(info.get("verified_name", "")),
        }

    # --- receiving -------------------------------------------------------------------------
    async def run(self, sink: InboundSink) -> None:
        """Nothing to poll: Meta pushes to the gateway. Open for webhooks until cancelled."""
        self._sink = sink
        try:
            while True:  # the webhook keeps ``last_activity``; this only keeps it from aging
                self.last_activity = self._clock.monotonic()
                await asyncio.sleep(30.0)
        finally:
            self._sink = None

    async def webhook(self, req: HookRequest) -> HookReply:
        if req.method == "GET":
            return self._handshake(req)
        if req.method != "POST":
            return HookReply(status=405, body="GET or POST\n")
        if not signature_ok(self._app_secret, req.body, req.headers.get(SIGNATURE_HEADER)):
            log.warning("whatsapp %s: webhook with a bad signature refused", self.account)
            return refused(401, "bad signature\n", "bad_signature", req)
        try:
            payload = msgspec.json.decode(req.body, type=_Payload)
        except (msgspec.DecodeError, msgspec.ValidationError):
            log.warning("whatsapp %s: a signed webhook we cannot read; ignored", self.account)
            return HookReply(status=400, body="unreadable payload\n")
        msgs = self.parse(payload)
        sink = self._sink
        if sink is None:  # not running yet: Meta tries again later
            return HookReply(status=503, body="not ready\n")
        self.last_activity = self._clock.monotonic()
        for problem in await sink_together(sink, msgs):
            if problem is not None:
                log.warning(
                    "whatsapp %s: webhook not journaled (%s); Meta will deliver it again",
                    self.account,
                    getattr(problem, "code", type(problem).__name__),
                )
                return HookReply(status=503, body="try again\n")
        for m in msgs:
            self._remember(m.chat_id, m.id.rsplit(":", 1)[-1])
        return HookReply(status=200, body="ok\n")

    def _handshake(self, req: HookRequest) -> HookReply:
        q = {k: v[0] for k, v in parse_qs(req.query, keep_blank_values=True).items()}
        token = q.get("hub.verify_token", "")
        if q.get("hub.mode") == "subscribe" and hmac.compare_digest(
            token.encode(), self._verify_token.encode()
        ):
            return HookReply(status=200, body=q.get("hub.challenge", ""))
        return refused(403, "verification failed\n", "bad_verify_token", req)

    def parse(self, payload: _Payload) -> list[InboundMessage]:
        """The messages (text, or files with their captions) of a webhook payload sent to this
        account's number."""
        out: list[InboundMessage] = []
        for entry in payload.entry:
            for change in entry.changes:
                value = change.value
                if change.field != "messages" or value is None:
                    continue
                if value.metadata is None or value.metadata.phone_number_id != self._number_id:
                    continue  # another number of the same app
                names = {c.wa_id: c.profile.name for c in value.contacts if c.profile}
                for m in value.messages:
                    text = _text_of(m).strip()
                    att = attachment(m.type, getattr(m, m.type, None) if m.type in KINDS else None)
                    files = (att,) if att is not None else ()
                    if not (text or files) or not m.sender.isdigit():
                        continue
                    out.append(
                        InboundMessage(
                            id=f"whatsapp:{self.account}:{m.id}",
                            channel="whatsapp",
                            account=self.account,
                            chat_id=m.sender,
                            sender_id=f"+{m.sender}",
                            sender_name=names.get(m.sender, ""),
                            text=text,
                            received_at=self._clock.time(),
                            attachments=files,
                        )
                    )
        return out

    def _remember(self, chat_id: str, wamid: str) -> None:
        self._last_in[chat_id] = wamid
        self._last_in.move_to_end(chat_id)
        while len(self._last_in) > _LAST_IN:
            self._last_in.popitem(last=False)

    # --- sending ---------------------------------------------------------------------------
    async def send(self, out: OutboundMessage) -> list[str]:
        ids: list[str] = []
        for piece in render(out.text, "signal", WHATSAPP_LIMIT, plain=out.plain):
            body = {
                "messaging_product": "whatsapp",
                "recipient_type": "individual",
                "to": out.chat_id,
                "type": "text",
                "text": {"preview_url": False, "body": piece},
            }

            async def once(body: dict[str, Any] = body) -> str:
                answer = await self._graph.post(f"{self._number_id}/messages", body)
                sent = answer.get("messages") or [{}]
                return str(sent[0].get("id", "")) if isinstance(sent[0], dict) else ""

            ids.append(await self._retrier.run(once))
        return ids

    # --- files -----------------------------------------------------------------------------
    async def download(self, att: Attachment, max_bytes: int) -> bytes:
        """The media id's url from the Graph API, then the file from Meta's host (capped)."""
        info = await self._graph.get(check_media_id(att.ref))
        url = declared_size(info, max_bytes)
        return await self._graph.download(url, max_bytes, self._media_hosts)

    async def send_file(self, out: OutboundFile) -> str:
        """Upload, then a message of type image or document with the media id."""

        async def upload() -> str:
            fields = {"messaging_product": "whatsapp", "type": out.mime}
            answer = await self._graph.upload(
                f"{self._number_id}/media", fields, (out.name, out.data, out.mime)
            )
            media_id = str(answer.get("id", ""))
            if not media_id:
                raise PlatformRejected("WhatsApp gave no id for the uploaded file")
            return media_id

        media_id = await self._retrier.run(upload)

        async def send() -> str:
            answer = await self._graph.post(
                f"{self._number_id}/messages", message_body(out, media_id)
            )
            sent = answer.get("messages") or [{}]
            return str(sent[0].get("id", "")) if isinstance(sent[0], dict) else ""

        return await self._retrier.run(send)

    async def typing(self, chat_id: str) -> None:
        """Marks the chat's newest message read and shows the typing indicator (Cloud API:
        both ride on the read receipt, which needs that message's id)."""
        wamid = self._last_in.get(chat_id)
        if wamid is None:
            return
        body = {
            "messaging_product": "whatsapp",
            "status": "read",
            "message_id": wamid,
            "typing_indicator": {"type": "text"},
        }
        await self._graph.post(f"{self._number_id}/messages", body)

    async def close(self) -> None:
        await self._graph.aclose()
