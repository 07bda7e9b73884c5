"""A fake of WhatsApp at moltbot's ``WaClient`` port (``moltbot.channels.whatsapp_port``).

The WhatsApp servers (and whatsmeow's protocol) cannot be faked here, so this fake stands where
neonize stands: ``FakeWhatsApp`` is "WhatsApp" (who is linked, what waits for an offline
device, what was sent and read); ``FakeWhatsApp.client()`` is one device's ``WaClient``.

Linking writes a real SQLite database at the path the adapter gives ``start`` (a ``device``
table with the linked JID), as neonize's store would, so the adapter's encrypted session file
is exercised for real; a database without that row asks for a QR scan (``WaQr`` every
``qr_every_s``) until the test calls ``scan()``. Messages sent to a device that is not
connected wait, as WhatsApp's servers keep them, and are handed over on the next connect.

Files: ``deliver(..., files=[WaMedia...])`` with refs from ``keep_file(data)`` (WhatsApp's
media servers: ``download`` hands the bytes over, ``MediaRefused`` past the cap as the real
client checks); ``send_file`` records in ``sent_files``.

Test API: ``deliver(text, ...)``, ``scan()``, ``drop()`` (the connection is lost: a
``WaDisconnected``; the client reconnects after ``reconnect_s``), ``unlink()`` (the phone
removes the device: ``WaLoggedOut``), ``gate`` (sends wait for it), ``fail_sends``, ``sent``,
``reads``, ``typing``, ``logged_out``.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
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

ME = "15550001111:7@s.whatsapp.net"
ALICE = "15551234567@s.whatsapp.net"
GROUP = "120363000000000001@g.us"
_ids = itertools.count(1)


def linked_jid(db: Path) -> str | None:
    if not db.is_file():
        return None
    conn = sqlite3.connect(db)
    try:
        row = conn.execute("SELECT jid FROM device").fetchone()
    except sqlite3.Error:
        return None
    finally:
        conn.close()
    return str(row[0]) if row else None


class FakeWhatsApp:
    def __init__(self, *, qr_every_s: float = 0.05, reconnect_s: float = 0.1) -> None:
        self.qr_every_s, self.reconnect_s = qr_every_s, reconnect_s
        self.waiting: list[WaMessage] = []  # held for the device while it is offline
        self.sent: list[tuple[str, str]] = []
        self.reads: list[str] = []
        self.typing: list[str] = []
        self.fail_sends = 0
        self.logged_out = 0
        self.qrs_shown = 0
        self.device: FakeClient | None = None  # the one connected now
        self.scan_after: int | None = None  # the "phone" scans the n-th QR code by itself
        self.gate: asyncio.Event | None = None  # set: sends wait for it (a send in flight)
        self.sending = 0  # sends that reached the gate
        self.files: dict[str, bytes] = {}  # ref -> the file on the media servers
        self.downloads: list[str] = []
        self.sent_files: list[dict[str, Any]] = []

    def keep_file(self, data: bytes) -> str:
        ref = f"media-{len(self.files) + 1}"
        self.files[ref] = data
        return ref

    def client(self) -> FakeClient:
        return FakeClient(self)

    def deliver(
        self,
        text: str,
        *,
        sender: str = ALICE,
        chat: str | None = None,
        name: str = "Alice",
        mentions: list[str] | None = None,
        msg_id: str | None = None,
        files: list[WaMedia] | None = None,
    ) -> WaMessage:
        chat = chat or sender
        msg = WaMessage(
            id=msg_id or f"3EB0{next(_ids):08X}",
            chat=chat,
            sender=sender,
            text=text,
            sender_name=name,
            is_group=chat.endswith("@g.us"),
            mentions=mentions or [],
            media=files or [],
        )
        if self.device is not None and self.device.online:
            self.device.push(msg)
        else:
            self.waiting.append(msg)
        return msg

    def scan(self) -> None:
        assert self.device is not None and self.device.db is not None, "no device waits for a scan"
        self.device.link()

    def drop(self) -> None:
        if self.device is not None:
            self.device.lose_connection()

    def unlink(self) -> None:
        if self.device is not None:
            self.device.push(WaLoggedOut(reason="removed on the phone"))


class FakeClient:
    def __init__(self, wa: FakeWhatsApp) -> None:
        self.wa = wa
        self.db: Path | None = None
        self.online = False
        self.stopped = False
        self._events: asyncio.Queue[WaEvent] = asyncio.Queue(256)
        self._tasks: set[asyncio.Task[Any]] = set()

    def push(self, ev: WaEvent) -> None:
        self._events.put_nowait(ev)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def start(self, db_path: Path) -> None:
        self.db = db_path
        self.wa.device = self
        if linked_jid(db_path):
            self._come_online()
        else:
            self._spawn(self._show_qrs())

    def _come_online(self) -> None:
        self.online = True
        jid = linked_jid(self.db) if self.db else None
        self.push(WaConnected(jid=jid or ""))
        waiting, self.wa.waiting = self.wa.waiting, []
        for msg in waiting:
            self.push(msg)

    async def _show_qrs(self) -> None:
        n = 0
        while not self.online and not self.stopped:
            n += 1
            self.wa.qrs_shown += 1
            self.push(WaQr(code=f"2@fake-qr-{n},abc,def"))
            await asyncio.sleep(self.wa.qr_every_s)
            if self.wa.scan_after is not None and n >= self.wa.scan_after:
                self.link()

    def link(self) -> None:
        assert self.db is not None
        conn = sqlite3.connect(self.db)
        try:
            conn.execute("CREATE TABLE IF NOT EXISTS device (jid TEXT)")
            conn.execute("INSERT INTO device VALUES (?)", (ME,))
            conn.commit()
        finally:
            conn.close()
        self.push(WaPaired(jid=ME))
        self._come_online()

    def lose_connection(self) -> None:
        self.online = False
        self.push(WaDisconnected(reason="stream error"))
        self._spawn(self._reconnect())

    async def _reconnect(self) -> None:
        await asyncio.sleep(self.wa.reconnect_s)
        if not self.stopped:
            self._come_online()

    async def next_event(self) -> WaEvent:
        return await self._events.get()

    async def send_text(self, chat: str, text: str) -> str:
        if not self.online:
            raise PlatformUnavailable("not connected")
        if self.wa.gate is not None:
            self.wa.sending += 1
            await self.wa.gate.wait()
        if self.wa.fail_sends:
            self.wa.fail_sends -= 1
            raise PlatformUnavailable("WhatsApp did not take the message")
        self.wa.sent.append((chat, text))
        return f"3EB0{next(_ids):08X}"

    async def download(self, ref: str, max_bytes: int) -> bytes:
        if not self.online:
            raise PlatformUnavailable("not connected")
        if ref not in self.wa.files:
            raise PlatformRejected("the file is gone from WhatsApp's servers")
        self.wa.downloads.append(ref)
        data = self.wa.files[ref]
        if len(data) > max_bytes:
            raise MediaRefused("the file is larger than the limit")
        return data

    async def send_file(self, chat: str, name: str, mime: str, data: bytes, caption: str) -> str:
        if not self.online:
            raise PlatformUnavailable("not connected")
        msg_id = f"3EB0{next(_ids):08X}"
        self.wa.sent_files.append(
            {
                "chat": chat,
                "name": name,
                "mime": mime,
                "data": data,
                "caption": caption,
                "id": msg_id,
            }
        )
        return msg_id

    async def mark_read(self, chat: str, sender: str, ids: list[str]) -> None:
        self.wa.reads.extend(ids)

    async def typing(self, chat: str) -> None:
        self.wa.typing.append(chat)

    async def logout(self) -> None:
        self.wa.logged_out += 1

    async def stop(self) -> None:
        self.stopped, self.online = True, False
        if self.wa.device is self:
            self.wa.device = None
        for task in list(self._tasks):
            task.cancel()
