"""Media on Telegram end to end: the real aiogram client against the fake Bot API (getFile and
the file URL, sendPhoto / sendDocument), the real ChannelService and MediaIntake, the real agent
answering through the Anthropic SDK against the fake Anthropic API."""

from __future__ import annotations

import base64
import io
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from PIL import Image

from moltbot.channels.telegram import TelegramAdapter
from moltbot.media.transcribe import Transcriber
from moltbot.messages import OutboundFile
from moltbot.tools import scope
from tests.channels.conftest import FAST
from tests.fakes.anthropic_api import FakeAnthropicAPI
from tests.fakes.openai_api import FakeOpenAIAPI
from tests.fakes.telegram_api import FakeTelegram
from tests.media.kit import ELF, OGG_OPUS, PDF, png
from tests.media.pipeline import config, note_text, serving, user_blocks

pytestmark = pytest.mark.timeout(60)
ALICE = 4242


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[FakeTelegram, FakeAnthropicAPI]]:
    async with FakeTelegram() as tg, FakeAnthropicAPI() as api:
        yield tg, api


def adapter(tg: FakeTelegram) -> TelegramAdapter:
    return TelegramAdapter(
        account="main", token=tg.token, api_base=tg.api_base, poll_timeout=1, retry=FAST
    )


async def test_a_photo_reaches_claude_as_an_image_block(
    fakes: tuple[FakeTelegram, FakeAnthropicAPI], tmp_path: Path
) -> None:
    tg, api = fakes
    async with serving(adapter(tg), config(tmp_path), api, tmp_path):
        tg.inject_file(
            chat_id=ALICE,
            user_id=ALICE,
            kind="photo",
            data=png(40, 30),
            caption="what colour is this?",
        )
        await tg.wait_sent(1, timeout=10)
    blocks = user_blocks(api)
    assert blocks[0] == {"type": "text", "text": "what colour is this?"}
    image = blocks[1]
    assert image["type"] == "image" and image["source"]["type"] == "base64"
    sent = Image.open(io.BytesIO(base64.b64decode(image["source"]["data"])))
    red, _green, _blue = sent.convert("RGB").getpixel((5, 5))  # type: ignore[misc]
    assert sent.size == (40, 30) and red > 150  # the red square
    assert "inbox/" in note_text(api)
    assert tg.downloads and tg.sent[0]["chat_id"] == str(ALICE)


async def test_an_oversized_file_is_refused_and_the_user_told(
    fakes: tuple[FakeTelegram, FakeAnthropicAPI], tmp_path: Path
) -> None:
    tg, api = fakes
    async with serving(adapter(tg), config(tmp_path, max_bytes=1000), api, tmp_path):
        tg.inject_file(
            chat_id=ALICE,
            user_id=ALICE,
            kind="document",
            data=PDF * 50,
            file_name="thesis.pdf",
            caption="please read",
        )
        sent = await tg.wait_sent(1, timeout=10)
    assert "thesis.pdf" in sent[0]["plain"] and "media.max_bytes" in sent[0]["plain"]
    assert tg.calls["getFile"] == 0 and not tg.downloads  # never fetched
    assert "refused" in note_text(api)  # the agent knows too


async def test_a_file_whose_name_lies_is_stored_as_data_and_flagged(
    fakes: tuple[FakeTelegram, FakeAnthropicAPI], tmp_path: Path
) -> None:
    tg, api = fakes
    async with serving(adapter(tg), config(tmp_path), api, tmp_path):
        tg.inject_file(
            chat_id=ALICE,
            user_id=ALICE,
            kind="document",
            data=ELF,
            file_name="invoice.pdf",
            mime_type="application/pdf",
        )
        await tg.wait_sent(1, timeout=10)
    inbox = scope.sender_folder(tmp_path, f"telegram:main:{ALICE}") / "inbox"
    (kept,) = inbox.iterdir()
    assert kept.suffix == ".bin" and kept.read_bytes() == ELF
    assert kept.stat().st_mode & 0o777 == 0o600
    note = note_text(api)
    assert "“invoice.pdf”" in note and "do not trust its name" in note and "never run" in note
    assert not any(b["type"] == "image" for b in user_blocks(api))


async def test_a_voice_note_is_transcribed_through_the_endpoint(
    fakes: tuple[FakeTelegram, FakeAnthropicAPI], tmp_path: Path
) -> None:
    tg, api = fakes
    async with FakeOpenAIAPI() as whisper:
        whisper.transcripts[OGG_OPUS] = "book a table for two at eight"
        transcriber = Transcriber(whisper.base_url, "whisper-1")
        async with serving(adapter(tg), config(tmp_path), api, tmp_path, transcriber):
            tg.inject_file(chat_id=ALICE, user_id=ALICE, kind="voice", data=OGG_OPUS)
            await tg.wait_sent(1, timeout=10)
    assert whisper.transcriptions[0]["data"] == OGG_OPUS
    assert "book a table for two at eight" in note_text(api)


async def test_send_file_sends_a_photo_and_a_document(tmp_path: Path) -> None:
    async with FakeTelegram() as tg:
        tele = adapter(tg)
        try:
            photo = OutboundFile(
                channel="telegram",
                account="main",
                chat_id=str(ALICE),
                name="chart.png",
                mime="image/png",
                data=png(),
                caption="here",
            )
            doc = OutboundFile(
                channel="telegram",
                account="main",
                chat_id=str(ALICE),
                name="report.pdf",
                mime="application/pdf",
                data=PDF,
            )
            await tele.send_file(photo)
            await tele.send_file(doc)
        finally:
            await tele.close()
    first, second = tg.sent_files
    assert first["method"] == "sendPhoto" and first["data"] == png()
    assert first["caption"] == "here" and first["chat_id"] == str(ALICE)
    assert second["method"] == "sendDocument" and second["filename"] == "report.pdf"
    assert second["data"] == PDF
