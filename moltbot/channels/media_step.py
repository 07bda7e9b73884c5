"""The media steps of a channel account's pipeline (``ChannelService``): the files of a message
taken in before its turn, and a file from the agent sent through the adapter."""

from __future__ import annotations

import logging

import msgspec

from moltbot.channels.base import ChannelAdapter
from moltbot.errors import MediaRefused
from moltbot.media.ingest import MediaIntake
from moltbot.messages import InboundMessage, OutboundFile

log = logging.getLogger(__name__)

NO_MEDIA = "I cannot take files here (media is turned off: media.enabled); only your text was read."
NO_DOWNLOAD = "I cannot take files on this channel yet; only your text was read."
MEDIA_FAILED = "I could not keep the files you sent; please try again. Your text was read."


async def take_media(
    media: MediaIntake | None, adapter: ChannelAdapter, msg: InboundMessage
) -> tuple[InboundMessage, list[str]]:
    """``msg`` with its files taken in (``moltbot.media.ingest``) and what the sender must be
    told about files refused; a message without files is returned as it is."""
    if not msg.attachments:
        return msg, []
    download = getattr(adapter, "download", None)
    if media is None or download is None:
        return msgspec.structs.replace(msg, attachments=()), [NO_DOWNLOAD if media else NO_MEDIA]
    try:
        return await media.take(msg, download)
    except Exception as e:  # e.g. the disk is full: the text still gets its answer
        log.error(
            "%s %s: files of %s not taken: %s",
            adapter.channel,
            adapter.account,
            msg.id,
            getattr(e, "code", type(e).__name__),
        )
        return msgspec.structs.replace(msg, attachments=()), [MEDIA_FAILED]


async def send_file(adapter: ChannelAdapter, out: OutboundFile) -> str:
    """Send ``out`` through the adapter (which retries transient errors); the platform id of
    the message that carries it."""
    send = getattr(adapter, "send_file", None)
    if send is None:
        raise MediaRefused(f"files cannot be sent on {adapter.channel} yet")
    return str(await send(out))


def with_notes(tell: list[str], reply: str) -> str:
    """The reply with what the sender must be told about their files in front of it."""
    if not tell:
        return reply
    return "\n\n".join([*tell, reply] if reply.strip() else tell)
