"""The channel pipeline's media step when files cannot be taken: the sender is told why and
the text still gets its turn (nothing dropped without a word)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from moltbot.channels.media_step import NO_DOWNLOAD, NO_MEDIA, take_media, with_notes
from moltbot.config.schema import MediaConfig
from moltbot.media.ingest import MediaIntake
from moltbot.messages import Attachment
from tests.media.kit import message


class TextOnly:
    """An adapter that has no ``download`` (a plugin's channel)."""

    channel, account = "plug", "a"

    async def send(self, out: Any) -> list[str]:
        return []


async def test_files_on_a_channel_that_cannot_fetch_them_are_told(tmp_path: Path) -> None:
    msg = message(Attachment(kind="image", ref="x"), text="and a photo")
    intake = MediaIntake(MediaConfig(), tmp_path)
    kept, tell = await take_media(intake, TextOnly(), msg)  # type: ignore[arg-type]
    assert tell == [NO_DOWNLOAD] and kept.attachments == () and kept.text == "and a photo"
    kept, tell = await take_media(None, TextOnly(), msg)  # type: ignore[arg-type]
    assert tell == [NO_MEDIA] and "media.enabled" in NO_MEDIA
    assert with_notes(tell, "the answer") == f"{NO_MEDIA}\n\nthe answer"
    assert with_notes([], "the answer") == "the answer"
