"""Media on WhatsApp web mode up to its boundary: files arrive at the fake ``WaClient`` port
(tests/fakes/whatsapp_web.py) and pass the real adapter, ChannelService, MediaIntake and agent
(the Anthropic SDK against the fake Anthropic API); send_file goes out through the port, also
over the bridge socket. neonize's side: a media message of neonize's own protobuf types
becomes a ``WaMedia`` whose ref round-trips, and a declared oversize is refused before any
download. Nothing here talks to WhatsApp's media servers."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from moltbot.channels.retry import RetryPolicy
from moltbot.channels.whatsapp_neonize import NeonizeClient, media_message, to_event
from moltbot.channels.whatsapp_port import WaMedia, WaMessage
from moltbot.channels.whatsapp_session import SessionFile, decode_key, new_key
from moltbot.channels.whatsapp_web import WhatsAppWebAdapter
from moltbot.errors import MediaRefused, PlatformRejected
from moltbot.media.transcribe import Transcriber
from moltbot.messages import Attachment, OutboundFile
from moltbot.tools import scope
from tests.channels.test_whatsapp_web import linked
from tests.fakes.anthropic_api import FakeAnthropicAPI
from tests.fakes.openai_api import FakeOpenAIAPI
from tests.fakes.whatsapp_web import ALICE, FakeWhatsApp
from tests.media.kit import ELF, OGG_OPUS, PDF, png
from tests.media.pipeline import config, note_text, serving, until, user_blocks

pytestmark = pytest.mark.timeout(60)
QUICK = RetryPolicy(base=0.01, cap=0.02, deadline=0.5)


@pytest.fixture
async def wa(tmp_path: Path) -> AsyncIterator[tuple[FakeWhatsApp, WhatsAppWebAdapter]]:
    fake = FakeWhatsApp()
    session = SessionFile("home", decode_key(new_key()), home=tmp_path / "home")
    await linked(fake, session)
    yield (
        fake,
        WhatsAppWebAdapter(account="home", client=fake.client(), session=session, retry=QUICK),
    )


def file(fake: FakeWhatsApp, data: bytes, kind: str, mime: str, name: str = "") -> WaMedia:
    return WaMedia(kind=kind, ref=fake.keep_file(data), name=name, mime=mime, size=len(data))


async def test_a_picture_reaches_claude_as_an_image_block(
    wa: tuple[FakeWhatsApp, WhatsAppWebAdapter], tmp_path: Path
) -> None:
    fake, adapter = wa
    async with FakeAnthropicAPI() as api, serving(adapter, config(tmp_path), api, tmp_path):
        pic = file(fake, png(40, 30), "image", "image/png")
        msg = fake.deliver("what colour is this?", files=[pic])
        await until(lambda: len(fake.sent) >= 1)
        blocks = user_blocks(api)
    assert blocks[0] == {"type": "text", "text": "what colour is this?"}
    assert blocks[1]["type"] == "image" and blocks[1]["source"]["type"] == "base64"
    assert fake.downloads == [pic.ref] and fake.reads == [msg.id]
    assert fake.sent[0][0] == ALICE


async def test_an_oversized_file_is_refused_and_the_user_told(
    wa: tuple[FakeWhatsApp, WhatsAppWebAdapter], tmp_path: Path
) -> None:
    fake, adapter = wa
    cfg = config(tmp_path, max_bytes=1000)
    async with FakeAnthropicAPI() as api, serving(adapter, cfg, api, tmp_path):
        big = file(fake, PDF * 50, "document", "application/pdf", "thesis.pdf")
        fake.deliver("please read", files=[big])
        await until(lambda: len(fake.sent) >= 1)
        told = fake.sent[0][1]
        assert "refused" in note_text(api)
    assert "thesis.pdf" in told and "media.max_bytes" in told
    assert not fake.downloads  # the declared size said no


async def test_a_file_whose_name_lies_is_stored_as_data_and_flagged(
    wa: tuple[FakeWhatsApp, WhatsAppWebAdapter], tmp_path: Path
) -> None:
    fake, adapter = wa
    async with FakeAnthropicAPI() as api, serving(adapter, config(tmp_path), api, tmp_path):
        fake.deliver("", files=[file(fake, ELF, "document", "application/pdf", "invoice.pdf")])
        await until(lambda: len(fake.sent) >= 1)
        note = note_text(api)
    inbox = scope.sender_folder(tmp_path, "whatsapp:home:+15551234567") / "inbox"
    (kept,) = inbox.iterdir()
    assert kept.suffix == ".bin" and kept.read_bytes() == ELF
    assert "“invoice.pdf”" in note and "do not trust its name" in note and "never run" in note


async def test_a_voice_note_is_transcribed_through_the_endpoint(
    wa: tuple[FakeWhatsApp, WhatsAppWebAdapter], tmp_path: Path
) -> None:
    fake, adapter = wa
    async with FakeOpenAIAPI() as whisper, FakeAnthropicAPI() as api:
        whisper.transcripts[OGG_OPUS] = "book a table for two at eight"
        transcriber = Transcriber(whisper.base_url, "whisper-1")
        async with serving(adapter, config(tmp_path), api, tmp_path, transcriber):
            fake.deliver("", files=[file(fake, OGG_OPUS, "audio", "audio/ogg; codecs=opus")])
            await until(lambda: len(fake.sent) >= 1)
            assert "book a table for two at eight" in note_text(api)
    assert whisper.transcriptions[0]["data"] == OGG_OPUS


async def test_send_file_delivers_an_image_and_a_document_also_over_the_bridge(
    tmp_path: Path,
) -> None:
    from moltbot.channels.whatsapp_bridge import BridgeClient, serve_bridge

    fake = FakeWhatsApp()
    session = SessionFile("home", decode_key(new_key()), home=tmp_path / "home")
    server = await serve_bridge(fake.client, tmp_path / "run" / "wa.sock")
    try:
        await linked(fake, session)
        adapter = WhatsAppWebAdapter(
            account="home",
            client=BridgeClient(tmp_path / "run" / "wa.sock"),
            session=session,
            retry=QUICK,
        )
        try:
            await adapter.connect()
            big = PDF + bytes(3 * 1024 * 1024)  # more than websockets' default 1 MiB frame
            await adapter.send_file(
                OutboundFile(
                    channel="whatsapp",
                    account="home",
                    chat_id=ALICE,
                    name="chart.png",
                    mime="image/png",
                    data=png(),
                    caption="here",
                )
            )
            await adapter.send_file(
                OutboundFile(
                    channel="whatsapp",
                    account="home",
                    chat_id=ALICE,
                    name="report.pdf",
                    mime="application/pdf",
                    data=big,
                )
            )
            ref = fake.keep_file(big)
            back = Attachment(kind="document", ref=ref, size=len(big))
            assert await adapter.download(back, len(big)) == big  # and back, over the socket
            with pytest.raises(MediaRefused):  # the cap holds over the socket too
                await adapter.download(Attachment(kind="document", ref=ref), 1000)
        finally:
            await adapter.close()
    finally:
        server.close()
        await server.wait_closed()
    first, second = fake.sent_files
    assert (first["chat"], first["name"], first["caption"]) == (ALICE, "chart.png", "here")
    assert first["data"] == png() and first["mime"] == "image/png"
    assert second["name"] == "report.pdf" and second["data"] == big


def test_neonize_media_message_becomes_a_ref_that_round_trips() -> None:
    from neonize.proto.Neonize_pb2 import JID, MessageInfo, MessageSource
    from neonize.proto.Neonize_pb2 import Message as MessageEv
    from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import DocumentMessage
    from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import Message as WaProto

    alice = JID(User="15551234567", Server="s.whatsapp.net")
    doc = DocumentMessage(
        fileName="plan.pdf",
        mimetype="application/pdf",
        fileLength=5000,
        mediaKey=b"k" * 32,
        directPath="/v/t62/abc",
        caption="the plan",
        JPEGThumbnail=b"\xff\xd8" * 500,
    )
    ev = MessageEv(
        Info=MessageInfo(MessageSource=MessageSource(Chat=alice, Sender=alice), ID="3EB0F"),
        Message=WaProto(documentMessage=doc),
    )
    out = to_event("message", ev)
    assert isinstance(out, WaMessage) and out.text == "the plan"
    (media,) = out.media
    assert (media.kind, media.name, media.mime, media.size) == (
        "document",
        "plan.pdf",
        "application/pdf",
        5000,
    )
    message, declared = media_message(media.ref)
    assert declared == 5000 and message.documentMessage.mediaKey == b"k" * 32
    assert message.documentMessage.directPath == "/v/t62/abc"
    assert not message.documentMessage.JPEGThumbnail  # the journal keeps no thumbnail


async def test_neonize_refuses_a_declared_oversize_and_a_forged_ref_before_downloading() -> None:
    from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import ImageMessage
    from neonize.proto.waE2E.WAWebProtobufsE2E_pb2 import Message as WaProto

    client = NeonizeClient("home")  # not started: a download attempt would say so
    huge = WaProto(imageMessage=ImageMessage(fileLength=50_000_000, mimetype="image/jpeg"))
    ref = base64.urlsafe_b64encode(huge.SerializeToString()).decode()
    with pytest.raises(MediaRefused):
        await client.download(ref, 1_000_000)
    text = base64.urlsafe_b64encode(WaProto(conversation="hi").SerializeToString()).decode()
    for forged in (text, "!!not base64!!", ""):
        with pytest.raises(PlatformRejected):
            await client.download(forged, 1_000_000)
    await asyncio.sleep(0)
