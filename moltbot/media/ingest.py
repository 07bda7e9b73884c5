"""Taking in the files of a message: download (capped), decide the type by content, fit
images, transcribe voice notes, keep everything as data in the sender's inbox.

``MediaIntake.take(msg, download)`` returns the message with its attachments taken (each says
its sniffed ``mime``, its ``path`` in the workspace and its ``flags``) and the texts the sender
must be told (a file refused for its size or that could not be fetched): nothing is dropped
without a word. It runs in the channel's worker after the message was journaled, before the
turn; a replay takes the files again under the same names.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

import msgspec

from moltbot.config.schema import MediaConfig
from moltbot.errors import MediaRefused, MoltbotError
from moltbot.media import inbox
from moltbot.media.images import fit_image
from moltbot.media.sniff import IMAGE_TYPES, name_lies, shown_name, sniff
from moltbot.messages import Attachment, InboundMessage

log = logging.getLogger(__name__)

Download = Callable[[Attachment, int], Awaitable[bytes]]


class Transcribes(Protocol):
    async def transcribe(self, data: bytes, filename: str, mime: str) -> str: ...


def sender_of(msg: InboundMessage) -> str:
    return f"{msg.channel}:{msg.account}:{msg.sender_id}"


def megabytes(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MB"


def label(att: Attachment) -> str:
    return f"“{shown_name(att.name)}”" if att.name else f"the {att.kind}"


class MediaIntake:
    def __init__(
        self, cfg: MediaConfig, workspace: Path, transcriber: Transcribes | None = None
    ) -> None:
        self.cfg = cfg
        self.workspace = workspace
        self.transcriber = transcriber

    async def take(
        self, msg: InboundMessage, download: Download, *, sender: str | None = None
    ) -> tuple[InboundMessage, list[str]]:
        """``sender``: whose workspace keeps the files (default: the message's sender; '' is
        the gateway's operator, for files sent from the web page)."""
        if not msg.attachments or all(a.taken for a in msg.attachments):
            return msg, []
        sender = sender_of(msg) if sender is None else sender
        taken: list[Attachment] = []
        tell: list[str] = []
        for i, att in enumerate(msg.attachments):
            if att.taken:
                taken.append(att)
                continue
            got, problem = await self._one(msg, i, att, sender, download)
            taken.append(got)
            if problem:
                tell.append(problem)
        return msgspec.structs.replace(msg, attachments=tuple(taken)), tell

    async def _one(
        self, msg: InboundMessage, index: int, att: Attachment, sender: str, download: Download
    ) -> tuple[Attachment, str]:
        cap = self.cfg.max_bytes
        refused = (
            f"I did not take {label(att)}: it is larger than the {megabytes(cap)} limit "
            "(media.max_bytes). Please send a smaller file."
        )
        if att.size > cap:
            return self._refused(att, "too_large"), refused
        try:
            data = await download(att, cap)
        except MediaRefused:
            return self._refused(att, "too_large"), refused
        except MoltbotError as exc:
            log.warning("%s: attachment %d not downloaded: %s", msg.id, index, exc.code)
            text = f"I could not download {label(att)} from the chat service; please send it again."
            return self._refused(att, "download_failed"), text
        if len(data) > cap:
            return self._refused(att, "too_large"), refused
        return await self._keep(msg, index, att, sender, data), ""

    def _refused(self, att: Attachment, flag: str) -> Attachment:
        return msgspec.structs.replace(att, flags=(*att.flags, flag), taken=True, ref="")

    async def _keep(
        self, msg: InboundMessage, index: int, att: Attachment, sender: str, data: bytes
    ) -> Attachment:
        ftype = sniff(data)
        flags: list[str] = []
        lies = bool(att.name) and name_lies(att.name, ftype)
        if lies:
            flags.append("name_mismatch")
        if ftype.executable:
            flags.append("executable")
        kind, mime, ext, body = ftype.kind, ftype.mime, ftype.ext, data
        transcript = ""
        if lies or ftype.executable:  # kept as opaque data, nothing more done with it
            kind, ext = "document", "bin"
        elif ftype.mime in IMAGE_TYPES:
            try:
                body, mime = fit_image(
                    data,
                    max_edge=self.cfg.image_max_edge,
                    max_bytes=self.cfg.image_max_bytes,
                    max_pixels=self.cfg.image_max_pixels,
                )
                ext = "png" if mime == "image/png" else "jpg"
            except MediaRefused:
                flags.append("bad_image")
                kind, ext = "document", "bin"
        elif kind == "audio" and self.transcriber is not None:
            try:
                transcript = await self.transcriber.transcribe(data, f"voice.{ext}", mime)
                flags.append("transcribed")
            except MediaRefused:
                flags.append("transcription_failed")
        name = inbox.stored_name(msg.id, index, ext, msg.received_at)
        ws = inbox.workspace_of(self.workspace, sender)
        path = inbox.save(ws, name, body)
        return msgspec.structs.replace(
            att,
            kind=kind,
            mime=mime,
            size=len(data),
            path=path,
            flags=(*att.flags, *flags),
            transcript=transcript,
            taken=True,
            ref="",
        )
