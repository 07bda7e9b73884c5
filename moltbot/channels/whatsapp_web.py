"""WhatsApp web mode: moltbot linked as a device of the user's own WhatsApp (like WhatsApp Web),
through neonize behind the ``WaClient`` port (``moltbot.channels.whatsapp_port``).

Durability: each message goes through the sink (access check, journal + fsync) and only then
is it marked read (the blue ticks say "it is safe with moltbot"). WhatsApp's servers keep
what arrives while the device is offline and hand it over on the next connect, so a reconnect
or a restart catches up by itself; whatever is handed over twice carries the same message id
and the journal de-duplicates it. What the port cannot give: whatsmeow acknowledges delivery
to the server as it hands a message to Python, so a process killed in that instant (before the
journal write) loses that one message; after the write, a crash replays it from the journal.

Files: a message's media come as ``WaMedia`` refs (for neonize, the message's media part with
its per-file key, so a replay from the journal can still fetch it); ``download`` refuses a
declared size over the cap before fetching, and the bytes after; ``send_file`` sends an image
or a document through the port.

The session (device keys) is kept encrypted (``moltbot.channels.whatsapp_session``): decrypted
for the run, saved back after connecting, within ``dirty_save_s`` of each message taken (its
Signal session moved on), at least every ``save_every_s``, and on close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
from collections import deque
from typing import Any

from moltbot.channels.base import InboundSink
from moltbot.channels.formatting import render
from moltbot.channels.link import current_link
from moltbot.channels.retry import DEFAULT_RETRY, ReceiveBackoff, Retrier, RetryPolicy, Sleep
from moltbot.channels.whatsapp_port import (
    WaClient,
    WaConnected,
    WaDisconnected,
    WaEvent,
    WaLoggedOut,
    WaMessage,
    WaPaired,
    WaQr,
)
from moltbot.channels.whatsapp_session import SessionFile
from moltbot.clock import SYSTEM_CLOCK, Clock
from moltbot.errors import MediaRefused, PlatformRejected, PlatformUnavailable
from moltbot.messages import Attachment, InboundMessage, OutboundFile, OutboundMessage

log = logging.getLogger(__name__)

WEB_LIMIT = 4096  # chosen: WhatsApp takes far longer texts, but they read badly
PHONE_SERVER = "s.whatsapp.net"


def not_linked(account: str, why: str) -> PlatformRejected:
    return PlatformRejected(
        f"WhatsApp account {account!r} is not linked ({why})",
        hint=f"link it: moltbot channels login whatsapp:{account}",
    )


def user_of(jid: str) -> str:
    """``15551234567`` of ``15551234567:12@s.whatsapp.net`` (device and server dropped)."""
    return jid.split("@", 1)[0].split(":", 1)[0]


def sender_id(jid: str) -> str:
    """E.164 for a phone-number JID (``+15551234567``), else the JID as it is (``...@lid``)."""
    user, _, server = jid.partition("@")
    user = user.split(":", 1)[0]
    return f"+{user}" if server == PHONE_SERVER and user.isdigit() else f"{user}@{server}"


class WhatsAppWebAdapter:
    channel = "whatsapp"

    def __init__(
        self,
        *,
        account: str,
        client: WaClient,
        session: SessionFile,
        mention_names: list[str] | tuple[str, ...] = ("moltbot",),
        save_every_s: float = 30.0,
        dirty_save_s: float = 1.0,
        connect_timeout_s: float = 12.0,
        retry: RetryPolicy = DEFAULT_RETRY,
        clock: Clock = SYSTEM_CLOCK,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self.account = account
        self.last_activity = clock.monotonic()
        self._client, self._session = client, session
        names = [re.escape(n.strip()) for n in mention_names if n.strip()]
        self._mention = (
            re.compile(rf"(?<!\w)@?(?:{'|'.join(names)})(?!\w)", re.IGNORECASE) if names else None
        )
        self._save_every, self._connect_timeout = save_every_s, connect_timeout_s
        self._dirty_save = dirty_save_s
        self._dirty = False  # a message was taken since the last save
        self._clock = clock
        self._retrier = Retrier(
            retry, platform="WhatsApp", channel="whatsapp", sleep=sleep, clock=clock, rng=rng
        )
        self._started = False
        self._me = ""
        self._early: deque[WaEvent] = deque()  # what came before connect() saw the connection

    def __repr__(self) -> str:
        return f"WhatsAppWebAdapter(account={self.account!r})"

    async def connect(self) -> dict[str, Any]:
        if self._me:
            return {"id": self._me}
        if not self._started:
            if not self._session.exists():
                raise not_linked(self.account, "no device session yet")
            db = await asyncio.to_thread(self._session.open)
            await self._client.start(db)
            self._started = True
        try:
            async with asyncio.timeout(self._connect_timeout):
                while True:
                    ev = await self._client.next_event()
                    if isinstance(ev, WaConnected | WaPaired):
                        self._me = ev.jid or self._me
                        break
                    self._check(ev)
                    if isinstance(ev, WaDisconnected):
                        raise PlatformUnavailable(
                            "WhatsApp could not be reached", hint="the client keeps trying"
                        )
                    self._early.append(ev)
        except TimeoutError:
            raise PlatformUnavailable("WhatsApp did not answer in time") from None
        self.last_activity = self._clock.monotonic()
        await asyncio.to_thread(self._session.save)
        return {"id": self._me}

    def _check(self, ev: WaEvent) -> None:
        """Events that end the account's run: it has to be linked again."""
        if isinstance(ev, WaLoggedOut):
            raise not_linked(self.account, "the phone removed this linked device")
        if isinstance(ev, WaQr):
            raise not_linked(self.account, "WhatsApp asks for a new QR scan")

    # --- receiving -------------------------------------------------------------------------
    async def run(self, sink: InboundSink) -> None:
        backoff = self._retrier.receiving()
        if not self._me:
            await backoff.call(self.connect)
        backoff.ok()
        saver = asyncio.create_task(self._keep_saving(), name="whatsapp-session-save")
        try:  # owned here: cancelled and awaited on the way out, whatever ends the receive
            await self._receive(sink, backoff)
        finally:
            saver.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await saver

    async def _receive(self, sink: InboundSink, backoff: ReceiveBackoff) -> None:
        link = current_link.get()
        while True:
            ev = self._early.popleft() if self._early else await self._client.next_event()
            self.last_activity = self._clock.monotonic()
            self._check(ev)
            if isinstance(ev, WaDisconnected):
                if link is not None:  # the client reconnects by itself: nothing to wait here
                    link.retrying(PlatformUnavailable("WhatsApp connection lost"), 1, 0.0)
                continue
            if isinstance(ev, WaConnected):
                backoff.ok()
                continue
            if not isinstance(ev, WaMessage):
                continue
            self._dirty = True  # whatsmeow's Signal session moved on: saved within a second
            msg = self.to_inbound(ev)
            if msg is None:
                continue
            await sink(msg)  # journaled (or refused) before the read receipt goes out
            try:
                await self._client.mark_read(ev.chat, ev.sender, [ev.id])
            except (PlatformUnavailable, PlatformRejected) as e:
                log.info("whatsapp %s: read receipt not sent: %s", self.account, e.code)

    async def _keep_saving(self) -> None:
        last = self._clock.monotonic()
        while True:
            await asyncio.sleep(min(self._dirty_save, self._save_every))
            if not self._dirty and self._clock.monotonic() - last < self._save_every:
                continue
            self._dirty = False
            try:
                await asyncio.to_thread(self._session.save)
                last = self._clock.monotonic()
            except Exception:  # a failed snapshot must not stop receiving; the next may work
                self._dirty = True
                log.exception("whatsapp %s: session not saved", self.account)

    def to_inbound(self, ev: WaMessage) -> InboundMessage | None:
        text = ev.text.strip()
        files = tuple(
            Attachment(kind=m.kind, name=m.name, size=m.size, declared_mime=m.mime, ref=m.ref)
            for m in ev.media
            if m.kind in ("image", "audio", "document") and m.ref
        )
        if ev.from_me or not (text or files) or ev.chat == "status@broadcast":
            return None
        me = user_of(self._me) if self._me else ""
        mentioned = ev.is_group and (
            (bool(me) and any(user_of(j) == me for j in ev.mentions))
            or (self._mention is not None and bool(self._mention.search(text)))
        )
        return InboundMessage(
            id=f"whatsapp:{self.account}:{ev.chat}:{ev.id}",
            channel="whatsapp",
            account=self.account,
            chat_id=ev.chat,
            sender_id=sender_id(ev.sender),
            sender_name=ev.sender_name,
            text=text,
            is_group=ev.is_group,
            mentioned=mentioned,
            received_at=self._clock.time(),
            attachments=files,
        )

    # --- sending ---------------------------------------------------------------------------
    async def send(self, out: OutboundMessage) -> list[str]:
        ids: list[str] = []
        for piece in render(out.text, "signal", WEB_LIMIT, plain=out.plain):

            async def once(piece: str = piece) -> str:
                return await self._client.send_text(out.chat_id, piece)

            ids.append(await self._retrier.run(once))
        return ids

    # --- files -----------------------------------------------------------------------------
    async def download(self, att: Attachment, max_bytes: int) -> bytes:
        if att.size > max_bytes:
            raise MediaRefused("the file is larger than the limit")
        data = await self._client.download(att.ref, max_bytes)
        if len(data) > max_bytes:  # the client's own check, held to it here too
            raise MediaRefused("the file is larger than the limit")
        return data

    async def send_file(self, out: OutboundFile) -> str:
        async def once() -> str:
            return await self._client.send_file(
                out.chat_id, out.name, out.mime, out.data, out.caption[:1024]
            )

        return await self._retrier.run(once)

    async def typing(self, chat_id: str) -> None:
        await self._client.typing(chat_id)

    async def close(self) -> None:
        try:
            if self._started:
                await self._client.stop()
        finally:
            self._started, self._me = False, ""
            await asyncio.to_thread(self._session.close)
