"""Media on Slack end to end: the real slack-sdk against the fake Slack (a ``file_share`` event,
``url_private`` read with the bot token, the files upload v2 flow), the real pipeline and agent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from moltbot.channels.slack import SlackAdapter
from moltbot.messages import OutboundFile
from tests.channels.conftest import FAST
from tests.fakes.anthropic_api import FakeAnthropicAPI
from tests.fakes.slack_api import APP_TOKEN, BOT_TOKEN, FakeSlack
from tests.media.kit import PDF, png
from tests.media.pipeline import config, note_text, serving, user_blocks

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[FakeSlack, FakeAnthropicAPI]]:
    async with FakeSlack() as sl, FakeAnthropicAPI() as api:
        yield sl, api


def adapter(sl: FakeSlack) -> SlackAdapter:
    return SlackAdapter(
        account="work",
        bot_token=BOT_TOKEN,
        app_token=APP_TOKEN,
        api_base=sl.api_base,
        ping_interval=0.2,
        retry=FAST,
    )


async def test_a_shared_picture_reaches_claude_as_an_image_block(
    fakes: tuple[FakeSlack, FakeAnthropicAPI], tmp_path: Path
) -> None:
    sl, api = fakes
    async with serving(adapter(sl), config(tmp_path), api, tmp_path):
        sl.inject_file_message(
            channel="D100",
            user="U1",
            data=png(50, 40),
            name="shot.png",
            mimetype="image/png",
            text="what is this?",
        )
        await sl.wait_sent(1, timeout=10)
    blocks = user_blocks(api)
    assert blocks[0]["text"] == "what is this?" and blocks[1]["type"] == "image"
    assert sl.file_downloads and all(token == BOT_TOKEN for _, token in sl.file_downloads)


async def test_a_file_url_off_slacks_hosts_never_gets_the_token(
    fakes: tuple[FakeSlack, FakeAnthropicAPI], tmp_path: Path
) -> None:
    """An event whose ``url_private`` points elsewhere (here: another port of this machine)
    is not fetched with the bot token; the sender is told the file could not be fetched."""
    sl, api = fakes
    async with FakeSlack() as elsewhere:
        async with serving(adapter(sl), config(tmp_path), api, tmp_path):
            sl.inject_file_message(
                channel="D100",
                user="U1",
                data=PDF,
                name="a.pdf",
                mimetype="application/pdf",
                url_host=f"127.0.0.1:{elsewhere.port}",
            )
            sent = await sl.wait_sent(1, timeout=10)
    assert elsewhere.file_downloads == []
    assert "could not download “a.pdf”" in sent[0]["text"]
    assert "could not be downloaded" in note_text(api)


async def test_send_file_uses_the_upload_v2_flow(tmp_path: Path) -> None:
    async with FakeSlack() as sl:
        slack = adapter(sl)
        try:
            await slack.connect()
            await slack.send_file(
                OutboundFile(
                    channel="slack",
                    account="work",
                    chat_id="D100",
                    name="report.pdf",
                    mime="application/pdf",
                    data=PDF,
                    caption="the report",
                )
            )
        finally:
            await slack.close()
    (sent,) = sl.sent_files
    assert sent["channel"] == "D100" and sent["filename"] == "report.pdf"
    assert sent["data"] == PDF and sent["initial_comment"] == "the report"
