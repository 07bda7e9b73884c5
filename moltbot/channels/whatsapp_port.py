"""The narrow boundary between the WhatsApp web-mode adapter and neonize (whatsmeow).

The WhatsApp servers cannot be faked, so the adapter talks to this protocol only: the real
implementation is ``moltbot.channels.whatsapp_neonize.NeonizeClient``; tests drive the adapter
with a fake of this protocol. Everything crossing it is plain data (frozen Structs, JID
strings such as ``15551234567@s.whatsapp.net`` or ``1203630@g.us``). Errors raised are moltbot
errors: ``PlatformUnavailable`` (not connected, a send that did not go out) or
``PlatformRejected`` (refused for good).
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import msgspec


class WaQr(msgspec.Struct, frozen=True, tag="qr"):
    """A QR code to show (its text); a new one replaces it every ~20 s while not linked."""

    code: str


class WaPaired(msgspec.Struct, frozen=True, tag="paired"):
    """The phone scanned the QR: this device is linked as ``jid``."""

    jid: str


class WaConnected(msgspec.Struct, frozen=True, tag="connected"):
    jid: str = ""


class WaDisconnected(msgspec.Struct, frozen=True, tag="disconnected"):
    """The connection dropped; the client reconnects by itself."""

    reason: str = ""


class WaLoggedOut(msgspec.Struct, frozen=True, tag="logged_out"):
    """The phone removed this device (or the session is no longer valid): link again."""

    reason: str = ""


class WaMedia(msgspec.Struct, frozen=True, kw_only=True):
    """A file of a message: ``kind`` image / audio / document, what the sender's side declares
    (``name``, ``mime``, ``size``) and ``ref``, opaque to the adapter: what ``download`` needs
    (for neonize, the media part of the message, serialised; it holds that file's key)."""

    kind: str
    ref: str
    name: str = ""
    mime: str = ""
    size: int = 0


class WaMessage(msgspec.Struct, frozen=True, tag="message", kw_only=True):
    id: str
    chat: str  # JID of the chat (a person, or a group ``...@g.us``)
    sender: str  # JID of the sender
    text: str
    sender_name: str = ""
    is_group: bool = False
    from_me: bool = False
    mentions: list[str] = []  # JIDs mentioned
    timestamp: int = 0
    media: list[WaMedia] = []  # the text is then the caption ('' if none)


WaEvent = WaQr | WaPaired | WaConnected | WaDisconnected | WaLoggedOut | WaMessage


class WaClient(Protocol):
    """One linked device's connection. ``start`` connects with the session database at
    ``db_path`` (a new one when it does not exist: then QR events come); events arrive in
    order through ``next_event``."""

    async def start(self, db_path: Path) -> None: ...

    async def next_event(self) -> WaEvent: ...

    async def send_text(self, chat: str, text: str) -> str:
        """Send; the message id WhatsApp gave it."""
        ...

    async def download(self, ref: str, max_bytes: int) -> bytes:
        """The file of a ``WaMedia.ref`` (decrypted), ``MediaRefused`` past ``max_bytes``."""
        ...

    async def send_file(self, chat: str, name: str, mime: str, data: bytes, caption: str) -> str:
        """Send an image (JPEG/PNG) or a document; the message id WhatsApp gave it."""
        ...

    async def mark_read(self, chat: str, sender: str, ids: list[str]) -> None: ...

    async def typing(self, chat: str) -> None: ...

    async def logout(self) -> None:
        """Unlink this device on WhatsApp's side (the phone's list of linked devices)."""
        ...

    async def stop(self) -> None: ...
