"""The real ``WaClient`` (``moltbot.channels.whatsapp_port``): neonize's async client.

neonize runs whatsmeow (Go) in its own threads and schedules our event handlers on the loop
that called ``connect``; each handler turns neonize's protobuf event into a port event
(``to_event``: plain data) and puts it in a bounded queue, which ``next_event`` reads. Errors
of neonize's calls become ``PlatformUnavailable`` (connection, a send not taken) or
``PlatformRejected`` (logged out); never its message text, which may name numbers.

Not tested against WhatsApp (its servers cannot be faked); ``to_event`` is tested on neonize's
own protobuf types, and everything above this class against a fake of the port.
"""

from __future__ import annotations

import asyncio
import base64
import logging
from pathlib import Path
from typing import Any

from moltbot.channels.whatsapp_port import (
    WaConnected,
    WaDisconnected,
    WaEvent,
    WaLoggedOut,
    WaMedia,
    WaMessage,
    WaPaired,
    WaQr,
)
from moltbot.errors import MediaRefused, PlatformRejected, PlatformUnavailable

log = logging.getLogger(__name__)

QUEUE = 256  # events waiting for the adapter at most (neonize's handlers wait when full)


def jid_text(jid: Any) -> str:
    """``user@server`` (``user:device@server`` for a device) of a neonize JID protobuf."""
    if jid is None or not getattr(jid, "Server", ""):
        return ""
    user, device = jid.User, int(getattr(jid, "Device", 0) or 0)
    if not user:
        return str(jid.Server)
    return f"{user}:{device}@{jid.Server}" if device else f"{user}@{jid.Server}"


def message_text(message: Any) -> tuple[str, list[str]]:
    """The text (a file's caption) of a WhatsApp ``Message`` protobuf and the JIDs it
    mentions."""
    if message.conversation:
        return message.conversation, []
    if message.HasField("extendedTextMessage"):
        ext = message.extendedTextMessage
        return ext.text, list(ext.contextInfo.mentionedJID)
    for field in ("imageMessage", "documentMessage", "videoMessage"):
        if message.HasField(field):
            part = getattr(message, field)
            return part.caption, list(part.contextInfo.mentionedJID)
    return "", []  # locations, reactions and the rest: not text


# the media parts of a Message we take, and our word for each (a video is kept as a file)
MEDIA_FIELDS = {
    "imageMessage": "image",
    "stickerMessage": "image",
    "audioMessage": "audio",
    "documentMessage": "document",
    "videoMessage": "document",
}


def media_of(message: Any) -> list[WaMedia]:
    """The file of a ``Message`` protobuf as a ``WaMedia``: its ref is a ``Message`` holding
    only that media part (where it lies, its key and hashes; no thumbnail, no context),
    serialised: all ``download_any`` needs, and small enough for the journal."""
    from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import Message

    for field, kind in MEDIA_FIELDS.items():
        if not message.HasField(field):
            continue
        part = type(getattr(message, field))()
        part.CopyFrom(getattr(message, field))
        for extra in ("JPEGThumbnail", "contextInfo", "waveform", "streamingSidecar"):
            if extra in part.DESCRIPTOR.fields_by_name:
                part.ClearField(extra)
        only = Message(**{field: part})
        ref = base64.urlsafe_b64encode(only.SerializeToString()).decode()
        name = getattr(part, "fileName", "") if field == "documentMessage" else ""
        return [
            WaMedia(kind=kind, ref=ref, name=name, mime=part.mimetype, size=int(part.fileLength))
        ]
    return []


def media_message(ref: str) -> tuple[Any, int]:
    """The ``Message`` of a ``WaMedia.ref`` and the file length it declares (ValueError: not
    one of ours)."""
    from google.protobuf.message import DecodeError
    from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import Message

    try:
        message = Message.FromString(base64.urlsafe_b64decode(ref.encode()))
    except (DecodeError, ValueError):
        raise ValueError("not a media reference") from None
    fields = [f.name for f, _ in message.ListFields()]
    if len(fields) != 1 or fields[0] not in MEDIA_FIELDS:
        raise ValueError("not a media reference")
    return message, int(getattr(message, fields[0]).fileLength)


def to_event(kind: str, ev: Any) -> WaEvent | None:
    """A neonize event as a port event (None: of no interest)."""
    if kind == "message":
        src = ev.Info.MessageSource
        text, mentions = message_text(ev.Message)
        return WaMessage(
            id=ev.Info.ID,
            chat=jid_text(src.Chat),
            sender=jid_text(src.Sender),
            text=text,
            sender_name=ev.Info.Pushname,
            is_group=src.IsGroup,
            from_me=src.IsFromMe,
            mentions=mentions,
            timestamp=int(ev.Info.Timestamp),
            media=media_of(ev.Message),
        )
    if kind == "pair":
        return WaPaired(jid=jid_text(ev.ID)) if ev.Status == ev.SUCCESS else None
    if kind == "connected":
        return WaConnected()
    if kind == "disconnected":
        return WaDisconnected()
    if kind == "logged_out":
        return WaLoggedOut(reason=str(getattr(ev, "Reason", "")))
    return None


class NeonizeClient:
    def __init__(self, account: str) -> None:
        self._account = account
        self._queue: asyncio.Queue[WaEvent] = asyncio.Queue(QUEUE)
        self._client: Any = None
        self._task: asyncio.Future[Any] | None = None

    async def start(self, db_path: Path) -> None:
        from neonize.aioze.client import NewAClient
        from neonize.aioze.events import (
            ConnectedEv,
            DisconnectedEv,
            LoggedOutEv,
            MessageEv,
            PairStatusEv,
        )

        client = NewAClient(str(db_path), uuid=f"moltbot-{self._account}")
        for kind, ev_type in (
            ("message", MessageEv),
            ("pair", PairStatusEv),
            ("connected", ConnectedEv),
            ("disconnected", DisconnectedEv),
            ("logged_out", LoggedOutEv),
        ):
            client.event(ev_type)(self._handler(kind))

        async def on_qr(_client: Any, data: bytes) -> None:
            await self._queue.put(WaQr(code=data.decode("utf-8", "replace")))

        client.event.qr(on_qr)
        self._client = client
        try:
            self._task = await client.connect()
        except Exception as e:
            raise PlatformUnavailable(
                f"WhatsApp client did not start ({type(e).__name__})"
            ) from None

    def _handler(self, kind: str) -> Any:
        async def handle(_client: Any, ev: Any) -> None:
            out = to_event(kind, ev)
            if kind == "connected" and self._client is not None and self._client.me:
                out = WaConnected(jid=jid_text(self._client.me.JID))
            if out is not None:
                await self._queue.put(out)

        return handle

    async def next_event(self) -> WaEvent:
        return await self._queue.get()

    def _need(self) -> Any:
        if self._client is None:
            raise PlatformUnavailable("the WhatsApp client is not started")
        return self._client

    async def send_text(self, chat: str, text: str) -> str:
        from neonize.utils.jid import build_jid

        user, _, server = chat.partition("@")
        try:
            resp = await self._need().send_message(
                build_jid(user, server or "s.whatsapp.net"), text
            )
        except PlatformUnavailable:
            raise
        except Exception as e:
            raise PlatformUnavailable(
                f"WhatsApp did not take the message ({type(e).__name__})"
            ) from None
        return str(resp.ID)

    async def download(self, ref: str, max_bytes: int) -> bytes:
        """whatsmeow fetches the file, checks its hashes and decrypts it in memory: the size
        WhatsApp declares is checked before, the bytes after."""
        try:
            message, declared = media_message(ref)
        except ValueError:
            raise PlatformRejected("the file reference is not valid") from None
        if declared > max_bytes:
            raise MediaRefused("the file is larger than the limit")
        client = self._need()
        try:
            data = await client.download_any(message)
        except Exception as e:
            raise PlatformUnavailable(
                f"the file could not be downloaded ({type(e).__name__})"
            ) from None
        if not isinstance(data, bytes) or len(data) > max_bytes:
            raise MediaRefused("the file is larger than the limit")
        return data

    async def send_file(self, chat: str, name: str, mime: str, data: bytes, caption: str) -> str:
        from neonize.utils.jid import build_jid

        user, _, server = chat.partition("@")
        to = build_jid(user, server or "s.whatsapp.net")
        client = self._need()
        try:
            if mime in ("image/jpeg", "image/png"):
                resp = await client.send_image(to, data, caption=caption or None)
            else:
                resp = await client.send_document(
                    to, data, caption=caption or None, title=name, filename=name, mimetype=mime
                )
        except Exception as e:
            raise PlatformUnavailable(
                f"WhatsApp did not take the file ({type(e).__name__})"
            ) from None
        return str(resp.ID)

    async def mark_read(self, chat: str, sender: str, ids: list[str]) -> None:
        from neonize.utils.enum import ReceiptType
        from neonize.utils.jid import build_jid

        def jid(text: str) -> Any:
            user, _, server = text.partition("@")
            return build_jid(user.split(":", 1)[0], server or "s.whatsapp.net")

        try:
            await self._need().mark_read(
                *ids, chat=jid(chat), sender=jid(sender), receipt=ReceiptType.READ
            )
        except Exception as e:
            raise PlatformUnavailable(f"read receipt not sent ({type(e).__name__})") from None

    async def typing(self, chat: str) -> None:
        from neonize.utils.enum import ChatPresence, ChatPresenceMedia
        from neonize.utils.jid import build_jid

        user, _, server = chat.partition("@")
        try:
            await self._need().send_chat_presence(
                build_jid(user, server or "s.whatsapp.net"),
                ChatPresence.CHAT_PRESENCE_COMPOSING,
                ChatPresenceMedia.CHAT_PRESENCE_MEDIA_TEXT,
            )
        except Exception as e:
            raise PlatformUnavailable(f"typing not shown ({type(e).__name__})") from None

    async def logout(self) -> None:
        try:
            await self._need().logout()
        except Exception as e:
            raise PlatformUnavailable(
                f"WhatsApp did not confirm the logout ({type(e).__name__})"
            ) from None

    async def stop(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            await client.disconnect()
            await client.stop()
        except Exception:
            log.warning("whatsapp %s: the client did not stop cleanly", self._account)
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
