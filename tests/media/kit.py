"""Small real files for the media tests (made with Pillow, or by hand)."""

from __future__ import annotations

import io

from PIL import Image

from moltbot.messages import Attachment, InboundMessage

# an Ogg page header with an Opus head: what a voice note starts with
OGG_OPUS = b"OggS\x00\x02" + b"\x00" * 20 + b"\x01\x13OpusHead\x01\x01" + b"\x00" * 64
ELF = b"\x7fELF\x02\x01\x01" + b"\x00" * 120
PDF = b"%PDF-1.7\n1 0 obj << /Type /Catalog >> endobj\ntrailer << >>\n%%EOF\n"


def png(width: int = 8, height: int = 6, color: tuple[int, int, int] = (200, 30, 30)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (width, height), color).save(out, format="PNG")
    return out.getvalue()


def bomb() -> bytes:
    """A small PNG that declares 400 million pixels."""
    out = io.BytesIO()
    Image.new("1", (20000, 20000)).save(out, format="PNG")
    return out.getvalue()


def message(*atts: Attachment, text: str = "look", sender: str = "7") -> InboundMessage:
    return InboundMessage(
        id=f"telegram:main:{sender}:1",
        channel="telegram",
        account="main",
        chat_id=sender,
        sender_id=sender,
        text=text,
        received_at=1_780_000_000.0,
        attachments=atts,
    )
