"""Files on Discord: a message's ``attachments`` as references (their CDN ``url``), fetched
through web_fetch's SSRF-guarded downloader (a CDN URL is not Discord's API: it is vetted like
any public URL, every redirect too), and a file sent as a multipart message."""

from __future__ import annotations

import io
from typing import Any

import discord
from discord.http import MultipartParameters, handle_message_parameters

from moltbot.media.sniff import kind_hint
from moltbot.messages import Attachment, OutboundFile


def attachments(data: dict[str, Any]) -> tuple[Attachment, ...]:
    out: list[Attachment] = []
    for a in data.get("attachments") or []:
        if not isinstance(a, dict) or not isinstance(a.get("url"), str):
            continue
        mime = str(a.get("content_type") or "")
        size = a.get("size")
        out.append(
            Attachment(
                kind=kind_hint(mime),
                name=str(a.get("filename") or ""),
                declared_mime=mime,
                size=size if isinstance(size, int) else 0,
                ref=a["url"],
            )
        )
    return tuple(out)


def file_message(out: OutboundFile) -> MultipartParameters:
    """The multipart body (``payload_json`` + ``files[0]``) of a message carrying ``out``."""
    upload = discord.File(io.BytesIO(out.data), filename=out.name)
    return handle_message_parameters(
        content=out.caption or None,
        file=upload,
        allowed_mentions=discord.AllowedMentions.none(),
    )
