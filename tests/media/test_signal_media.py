"""Media on Signal end to end: the adapter against the fake signal-cli-rest-api (attachments
listed in the envelope, read from ``/v1/attachments/<id>``; sent as ``base64_attachments``),
the real pipeline and agent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from moltbot.channels.signal import SignalAdapter
from moltbot.media.transcribe import Transcriber
from moltbot.messages import OutboundFile
from tests.channels.conftest import FAST
from tests.fakes.anthropic_api import FakeAnthropicAPI
from tests.fakes.openai_api import FakeOpenAIAPI
from tests.fakes.signal_api import NUMBER, FakeSignal
from tests.media.kit import OGG_OPUS, PDF, png
from tests.media.pipeline import config, note_text, serving, user_blocks

pytestmark = pytest.mark.timeout(60)
ALICE = "+15557770000"


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[FakeSignal, FakeAnthropicAPI]]:
    async with FakeSignal(mode="normal") as sg, FakeAnthropicAPI() as api:
        yield sg, api


def adapter(sg: FakeSignal) -> SignalAdapter:
    return SignalAdapter(account=NUMBER, api_base=sg.api_base, poll_timeout=1, retry=FAST)


async def test_a_picture_reaches_claude_as_an_image_block(
    fakes: tuple[FakeSignal, FakeAnthropicAPI], tmp_path: Path
) -> None:
    sg, api = fakes
    async with serving(adapter(sg), config(tmp_path), api, tmp_path):
        sg.inject_message(source=ALICE, text="look", files=[("cat.png", "image/png", png())])
        await sg.wait_sent(1, timeout=10)
    blocks = user_blocks(api)
    assert blocks[0]["text"] == "look" and blocks[1]["type"] == "image"
    assert len(sg.attachment_reads) == 1


async def test_a_voice_note_without_text_is_transcribed(
    fakes: tuple[FakeSignal, FakeAnthropicAPI], tmp_path: Path
) -> None:
    sg, api = fakes
    async with FakeOpenAIAPI() as whisper:
        whisper.transcripts[OGG_OPUS] = "call mum tonight"
        transcriber = Transcriber(whisper.base_url, "whisper-1")
        async with serving(adapter(sg), config(tmp_path), api, tmp_path, transcriber):
            sg.inject_message(source=ALICE, text="", files=[(None, "audio/aac", OGG_OPUS)])
            await sg.wait_sent(1, timeout=10)
    assert "call mum tonight" in note_text(api)


async def test_send_file_sends_a_base64_attachment() -> None:
    async with FakeSignal(mode="normal") as sg:
        signal = adapter(sg)
        try:
            await signal.send_file(
                OutboundFile(
                    channel="signal",
                    account=NUMBER,
                    chat_id=ALICE,
                    name="notes;x.pdf",
                    mime="application/pdf",
                    data=PDF,
                    caption="notes",
                )
            )
        finally:
            await signal.close()
    (sent,) = sg.sent
    assert sent["recipients"] == [ALICE] and sent["message"] == "notes"
    assert sent["files"] == [("application/pdf", "notesx.pdf", PDF)]
