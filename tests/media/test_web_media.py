"""Files from the web page, past the gateway: taken into the operator's workspace and given to
the real agent, whose Anthropic SDK sends the picture to the fake Anthropic API as an image."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from moltbot.media.ingest import MediaIntake
from moltbot.media.web import Upload, told_first, web_content
from moltbot.messages import ChatEvent, ChatFinal
from moltbot.tools import scope
from tests.fakes.anthropic_api import FakeAnthropicAPI
from tests.media.kit import PDF, png
from tests.media.pipeline import agent, config, note_text, user_blocks


async def run(
    tmp_path: Path, uploads: list[Upload], **media: int
) -> tuple[list[ChatEvent], list[dict[str, Any]], str]:
    """(the turn's events, the user blocks the fake Anthropic got, their text)."""
    cfg = config(tmp_path / "ws", **media)
    async with FakeAnthropicAPI() as api:
        service = agent(cfg, api, tmp_path / "sessions")
        intake = MediaIntake(cfg.media, cfg.tools.workspace_path())
        content, tell = await web_content(intake, "web:gateway:dm:web", "look", uploads, 5 << 20)
        turn = service.turn("web:gateway:dm:web", "look", content=content)
        events = [e async for e in told_first("web:gateway:dm:web", tell, turn)]
        return events, user_blocks(api), note_text(api)


async def test_a_picture_from_the_page_reaches_claude_as_an_image(tmp_path: Path) -> None:
    _, blocks, _ = await run(tmp_path, [Upload(name="red.png", data=png(30, 20))])
    assert blocks[0] == {"type": "text", "text": "look"}
    assert blocks[1]["type"] == "image" and blocks[1]["source"]["media_type"] == "image/jpeg"
    inbox = scope.sender_folder(tmp_path / "ws", "") / "inbox"  # the operator's workspace
    assert [p.suffix for p in inbox.iterdir()] == [".jpg"]


async def test_an_oversized_upload_is_refused_and_the_user_told(tmp_path: Path) -> None:
    events, _, note = await run(tmp_path, [Upload(name="big.pdf", data=PDF * 100)], max_bytes=1000)
    final = events[-1]
    assert isinstance(final, ChatFinal)
    assert final.text.startswith("I did not take “big.pdf”") and "media.max_bytes" in final.text
    assert "refused" in note
