"""Media on iMessage end to end: the adapter against the fake BlueBubbles server (attachments
listed when asked ``with: attachment``, downloaded from ``/api/v1/attachment/<guid>/download``
with the server password; sent with ``/api/v1/message/attachment``), the real pipeline and
agent."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from moltbot.channels.imessage import IMessageAdapter
from moltbot.messages import OutboundFile
from tests.channels.conftest import FAST
from tests.fakes.anthropic_api import FakeAnthropicAPI
from tests.fakes.bluebubbles_api import DM_ADDRESS, FakeBlueBubbles
from tests.media.kit import PDF, png
from tests.media.pipeline import config, serving, until, user_blocks

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[FakeBlueBubbles, FakeAnthropicAPI]]:
    async with FakeBlueBubbles() as bb, FakeAnthropicAPI() as api:
        yield bb, api


def adapter(bb: FakeBlueBubbles) -> IMessageAdapter:
    return IMessageAdapter(
        account="mac", api_base=bb.api_base, password=bb.password, poll_interval_s=0.02, retry=FAST
    )


async def test_a_photo_reaches_claude_as_an_image_block(
    fakes: tuple[FakeBlueBubbles, FakeAnthropicAPI], tmp_path: Path
) -> None:
    bb, api = fakes
    async with serving(adapter(bb), config(tmp_path), api, tmp_path):
        await until(lambda: bb.calls["query"] >= 2)  # it has its starting point
        bb.inject_message("\ufffc", files=[("IMG_0001.png", "image/png", png(30, 30))])
        await until(lambda: len(bb.sent) >= 1)
    assert [b["type"] for b in user_blocks(api)] == ["image", "text"]
    assert len(bb.downloads) == 1 and bb.unauthorized == 0


async def test_send_file_sends_an_attachment(
    fakes: tuple[FakeBlueBubbles, FakeAnthropicAPI],
) -> None:
    bb, _ = fakes
    imessage = adapter(bb)
    try:
        await imessage.connect()
        await imessage.send_file(
            OutboundFile(
                channel="imessage",
                account="mac",
                chat_id=f"iMessage;-;{DM_ADDRESS}",
                name="r.pdf",
                mime="application/pdf",
                data=PDF,
            )
        )
    finally:
        await imessage.close()
    (sent,) = bb.sent_files
    assert sent["chatGuid"] == f"iMessage;-;{DM_ADDRESS}" and sent["name"] == "r.pdf"
    assert sent["data"] == PDF and sent["method"] == "private-api"
