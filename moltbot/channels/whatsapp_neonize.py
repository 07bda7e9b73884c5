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
import logging
from pathlib import Path
from typing import Any

from moltbot.channels.whatsapp_port import (
    WaConnected,
    WaDisconnected,
    WaEvent,
    WaLoggedOut,
    WaMessage,
    WaPaired,
    WaQr,
)
from moltbot.errors import PlatformUnavailable

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
    """The text of a WhatsApp ``Message`` protobuf and the JIDs it mentions."""
    if message.conversation:
        return message.conversation, []
    if message.HasField("extendedTextMessage"):
        ext = message.extendedTextMessage
        return ext.text, list(ext.contextInfo.mentionedJID)
    return "", []  # media and the rest: not text (media is handled elsewhere)


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
