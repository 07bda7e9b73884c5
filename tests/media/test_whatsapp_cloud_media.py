"""Media on WhatsApp Cloud end to end: signed webhooks carrying media ids reach the real
adapter, which looks each id up on the fake Graph API and downloads the file with the bearer
token (only from Meta's host, capped); the real ChannelService, MediaIntake and agent answer
through the Anthropic SDK against the fake Anthropic API; send_file uploads and sends."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from moltbot.channels.hooks import HookRequest
from moltbot.channels.whatsapp_cloud import WhatsAppCloudAdapter
from moltbot.errors import PlatformRejected
from moltbot.media.transcribe import Transcriber
from moltbot.messages import Attachment, OutboundFile
from moltbot.tools import scope
from tests.channels.conftest import FAST
from tests.fakes.anthropic_api import FakeAnthropicAPI
from tests.fakes.openai_api import FakeOpenAIAPI
from tests.fakes.whatsapp_api import (
    APP_SECRET,
    NUMBER_ID,
    SENDER,
    TOKEN,
    VERIFY_TOKEN,
    FakeGraph,
    payload,
    sign,
)
from tests.media.kit import ELF, OGG_OPUS, PDF, png
from tests.media.pipeline import config, note_text, serving, until, user_blocks

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[FakeGraph, FakeAnthropicAPI]]:
    async with FakeGraph() as graph, FakeAnthropicAPI() as api:
        yield graph, api


def adapter(graph: FakeGraph) -> WhatsAppCloudAdapter:
    return WhatsAppCloudAdapter(
        account="biz",
        phone_number_id=NUMBER_ID,
        access_token=TOKEN,
        app_secret=APP_SECRET,
        verify_token=VERIFY_TOKEN,
        api_base=graph.api_base,
        retry=FAST,
    )


async def post(wa: WhatsAppCloudAdapter, kind: str, media: dict[str, Any]) -> int:
    """A signed webhook as Meta POSTs it, through the adapter's webhook (the gateway's
    route to it is tested in tests/channels/test_whatsapp_cloud.py)."""
    body = json.dumps(payload("", kind=kind, media=media)).encode()
    headers = {"x-hub-signature-256": sign(body, APP_SECRET), "content-type": "application/json"}
    for _ in range(200):  # until the service runs the adapter (503 before)
        reply = await wa.webhook(
            HookRequest(
                method="POST", channel="whatsapp", account="biz", headers=headers, body=body
            )
        )
        if reply.status != 503:
            return reply.status
        await asyncio.sleep(0.02)
    return reply.status


async def test_a_picture_reaches_claude_as_an_image_block(
    fakes: tuple[FakeGraph, FakeAnthropicAPI], tmp_path: Path
) -> None:
    graph, api = fakes
    media_id = graph.add_media(png(40, 30), "image/png")
    wa = adapter(graph)
    async with serving(wa, config(tmp_path), api, tmp_path):
        status = await post(
            wa,
            "image",
            {"id": media_id, "mime_type": "image/png", "caption": "what colour is this?"},
        )
        await until(lambda: len(graph.sent) >= 1)
    assert status == 200
    blocks = user_blocks(api)
    assert blocks[0] == {"type": "text", "text": "what colour is this?"}
    assert blocks[1]["type"] == "image" and blocks[1]["source"]["type"] == "base64"
    assert graph.downloads == [media_id] and graph.unauthorized == 0
    assert graph.sent[0]["to"] == SENDER


async def test_an_oversized_file_is_refused_and_the_user_told(
    fakes: tuple[FakeGraph, FakeAnthropicAPI], tmp_path: Path
) -> None:
    graph, api = fakes
    media_id = graph.add_media(PDF * 50, "application/pdf")
    wa = adapter(graph)
    async with serving(wa, config(tmp_path, max_bytes=1000), api, tmp_path):
        doc = {"id": media_id, "mime_type": "application/pdf", "filename": "thesis.pdf"}
        await post(wa, "document", {**doc, "caption": "please read"})
        await until(lambda: len(graph.sent) >= 1)
    told = graph.texts()[0]
    assert "thesis.pdf" in told and "media.max_bytes" in told
    assert graph.calls["media_info"] == 1 and not graph.downloads  # the size said no
    assert "refused" in note_text(api)


async def test_a_file_whose_name_lies_is_stored_as_data_and_flagged(
    fakes: tuple[FakeGraph, FakeAnthropicAPI], tmp_path: Path
) -> None:
    graph, api = fakes
    media_id = graph.add_media(ELF, "application/pdf")
    wa = adapter(graph)
    async with serving(wa, config(tmp_path), api, tmp_path):
        await post(
            wa,
            "document",
            {"id": media_id, "mime_type": "application/pdf", "filename": "invoice.pdf"},
        )
        await until(lambda: len(graph.sent) >= 1)
    inbox = scope.sender_folder(tmp_path, f"whatsapp:biz:+{SENDER}") / "inbox"
    (kept,) = inbox.iterdir()
    assert kept.suffix == ".bin" and kept.read_bytes() == ELF
    note = note_text(api)
    assert "“invoice.pdf”" in note and "do not trust its name" in note and "never run" in note


async def test_a_voice_note_is_transcribed_through_the_endpoint(
    fakes: tuple[FakeGraph, FakeAnthropicAPI], tmp_path: Path
) -> None:
    graph, api = fakes
    media_id = graph.add_media(OGG_OPUS, "audio/ogg")
    wa = adapter(graph)
    async with FakeOpenAIAPI() as whisper:
        whisper.transcripts[OGG_OPUS] = "book a table for two at eight"
        transcriber = Transcriber(whisper.base_url, "whisper-1")
        async with serving(wa, config(tmp_path), api, tmp_path, transcriber):
            await post(
                wa, "audio", {"id": media_id, "mime_type": "audio/ogg; codecs=opus", "voice": True}
            )
            await until(lambda: len(graph.sent) >= 1)
    assert whisper.transcriptions[0]["data"] == OGG_OPUS
    assert "book a table for two at eight" in note_text(api)


async def test_send_file_uploads_and_sends_an_image_and_a_document() -> None:
    async with FakeGraph() as graph:
        wa = adapter(graph)
        try:
            await wa.send_file(
                OutboundFile(
                    channel="whatsapp",
                    account="biz",
                    chat_id=SENDER,
                    name="chart.png",
                    mime="image/png",
                    data=png(),
                    caption="here",
                )
            )
            await wa.send_file(
                OutboundFile(
                    channel="whatsapp",
                    account="biz",
                    chat_id=SENDER,
                    name="report.pdf",
                    mime="application/pdf",
                    data=PDF,
                )
            )
        finally:
            await wa.close()
    first, second = graph.sent_files
    assert first["type"] == "image" and first["image"]["caption"] == "here"
    assert first["data"] == png() and first["to"] == SENDER
    assert second["type"] == "document" and second["document"]["filename"] == "report.pdf"
    assert second["data"] == PDF and second["mime"] == "application/pdf"
    assert [u["filename"] for u in graph.uploads] == ["chart.png", "report.pdf"]


async def test_the_token_never_goes_to_a_host_that_is_not_meta(tmp_path: Path) -> None:
    """Attack: the media lookup answers a url on another host (an attacker's server). The
    download is refused and that host never sees a request, let alone the token."""
    async with FakeGraph() as graph, FakeGraph(token="attacker") as evil:
        media_id = graph.add_media(PDF, "application/pdf")
        evil.add_media(PDF, "application/pdf")
        graph.media_url = lambda _id: f"{evil.api_base}/_media/1000000000001"
        wa = adapter(graph)
        try:
            with pytest.raises(PlatformRejected, match="host we do not trust"):
                await wa.download(Attachment(kind="document", ref=media_id), 10_000)
            graph.media_url = None
            graph.media_redirect = f"{evil.api_base}/_media/1000000000001"  # Meta's host redirects
            with pytest.raises(PlatformRejected, match="refused the file download"):
                await wa.download(Attachment(kind="document", ref=media_id), 10_000)
            with pytest.raises(PlatformRejected, match="media id"):  # no path tricks either
                await wa.download(Attachment(kind="document", ref="../me"), 10_000)
        finally:
            await wa.close()
    assert evil.unauthorized == 0 and not evil.downloads and not evil.calls
