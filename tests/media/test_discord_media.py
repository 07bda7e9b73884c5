"""Media on Discord end to end: discord.py against the fake Discord (attachments on its CDN part,
read through web_fetch's SSRF-guarded downloader; a file sent as a multipart message), the real
pipeline and agent. A CDN URL pointing at a private address is refused, not fetched."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from moltbot.channels.discord import DiscordAdapter
from moltbot.messages import OutboundFile
from moltbot.tools.web_fetch import WebFetcher
from tests.channels.discord_kit import ALICE, DM, connected, make
from tests.fakes.anthropic_api import FakeAnthropicAPI
from tests.fakes.discord_api import FakeDiscord
from tests.media.kit import PDF, png
from tests.media.pipeline import config, note_text, serving, user_blocks

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[FakeDiscord, FakeAnthropicAPI]]:
    async with FakeDiscord(heartbeat_interval_ms=200) as dc, FakeAnthropicAPI() as api:
        yield dc, api


def adapter(dc: FakeDiscord) -> DiscordAdapter:
    # the fake's CDN is on 127.0.0.1: let that one port through the guard (tests only)
    return make(dc, fetcher=WebFetcher(allow_loopback_port_for_tests=dc.port))


async def test_an_attached_picture_reaches_claude_as_an_image_block(
    fakes: tuple[FakeDiscord, FakeAnthropicAPI], tmp_path: Path
) -> None:
    dc, api = fakes
    async with serving(adapter(dc), config(tmp_path), api, tmp_path):
        await connected(dc)
        dc.inject_message(
            channel_id=DM,
            author_id=ALICE,
            content="",
            files=[("plot.png", "image/png", png(64, 48))],
        )
        await dc.wait_sent(1, timeout=10)
    assert [b["type"] for b in user_blocks(api)] == ["image", "text"]
    assert len(dc.cdn_reads) == 1


async def test_an_attachment_url_on_a_private_address_is_not_fetched(
    fakes: tuple[FakeDiscord, FakeAnthropicAPI], tmp_path: Path
) -> None:
    """A message whose attachment URL points at another service on this machine (a loopback
    address) is refused by the SSRF guard, never requested; the sender is told."""
    dc, api = fakes
    async with FakeDiscord() as inside:  # records every request to its attachment path
        async with serving(adapter(dc), config(tmp_path), api, tmp_path):
            await connected(dc)
            dc.inject_message(
                channel_id=DM,
                author_id=ALICE,
                content="read this",
                files=[("a.pdf", "application/pdf", PDF)],
                url_host=f"127.0.0.1:{inside.port}",
            )
            sent = await dc.wait_sent(1, timeout=10)
    assert inside.cdn_reads == [] and dc.cdn_reads == []
    assert "could not download “a.pdf”" in sent[0]["content"]
    assert "could not be downloaded" in note_text(api)


async def test_send_file_sends_a_multipart_message(
    fakes: tuple[FakeDiscord, FakeAnthropicAPI],
) -> None:
    dc, _ = fakes
    dc.inject_message(channel_id=DM, author_id=ALICE, content="hi")  # makes the DM channel
    discord_adapter = adapter(dc)
    try:
        await discord_adapter.connect()
        await discord_adapter.send_file(
            OutboundFile(
                channel="discord",
                account="main",
                chat_id=DM,
                name="r.pdf",
                mime="application/pdf",
                data=PDF,
            )
        )
    finally:
        await discord_adapter.close()
    (sent,) = dc.sent_files
    assert sent["channel_id"] == DM and sent["files"] == [("r.pdf", PDF)]
