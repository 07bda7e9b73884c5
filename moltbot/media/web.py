"""Files sent from the web page (``chat.send`` with ``files``): taken in like a channel's, into
the workspace of the gateway's operator (the web chat's sender), and turned into the turn's
user content."""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import AsyncGenerator
from typing import Any

import msgspec

from moltbot.channels.media_step import with_notes
from moltbot.media.ingest import MediaIntake
from moltbot.media.note import user_content
from moltbot.messages import Attachment, ChatDelta, ChatEvent, ChatFinal, InboundMessage

OPERATOR = ""  # the gateway's operator: the sender of web chats (``tools.scope``)


class Upload(msgspec.Struct, frozen=True, kw_only=True):
    name: str
    data: bytes


async def web_content(
    intake: MediaIntake, session: str, text: str, uploads: list[Upload], image_max_bytes: int
) -> tuple[list[dict[str, Any]], list[str]]:
    """(the user content with the files, what the user must be told about refused ones)."""
    atts = tuple(
        Attachment(kind="document", name=u.name[:255], size=len(u.data), ref=str(i))
        for i, u in enumerate(uploads)
    )
    msg = InboundMessage(
        id=f"web:gateway:{session}:{secrets.token_hex(8)}",
        channel="web",
        account="gateway",
        chat_id=session,
        sender_id="operator",
        text=text,
        received_at=time.time(),
        attachments=atts,
    )

    async def download(att: Attachment, cap: int) -> bytes:
        return uploads[int(att.ref)].data

    taken, tell = await intake.take(msg, download, sender=OPERATOR)
    return user_content(taken, intake.workspace, image_max_bytes, OPERATOR), tell


async def told_first(
    session: str, tell: list[str], events: AsyncGenerator[ChatEvent, None]
) -> AsyncGenerator[ChatEvent, None]:
    """A turn's events with what the user must be told in front (a delta, and in the final)."""
    if tell:
        yield ChatDelta(session=session, text=with_notes(tell, "") + "\n\n")
    async with contextlib.aclosing(events) as turn:
        async for event in turn:
            if tell and isinstance(event, ChatFinal):
                event = msgspec.structs.replace(event, text=with_notes(tell, event.text))
            yield event
