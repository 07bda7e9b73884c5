"""The ``send_file`` tool through a whole turn: the model (fake Anthropic) asks for it, the
agent reads the file from the sender's own workspace and the channel (Telegram, against its
fake) delivers it; another person's files, programs and lying names are refused."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from moltbot.channels.telegram import TelegramAdapter
from moltbot.tools import scope
from tests.channels.conftest import FAST
from tests.fakes.anthropic_api import FakeAnthropicAPI, text_reply, tool_reply
from tests.fakes.telegram_api import FakeTelegram
from tests.media.kit import ELF, PDF, png
from tests.media.pipeline import config, serving

pytestmark = pytest.mark.timeout(60)
ALICE, BOB = 4242, 1001


@pytest.fixture
async def fakes() -> AsyncIterator[tuple[FakeTelegram, FakeAnthropicAPI]]:
    async with FakeTelegram() as tg, FakeAnthropicAPI() as api:
        yield tg, api


def folder(root: Path, who: int) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    return scope.sender_folder(root, f"telegram:main:{who}")


def results(api: FakeAnthropicAPI) -> list[dict[str, Any]]:
    """Every tool_result block the model was given (the last request holds the whole turn)."""
    return [
        b
        for m in api.requests[-1].messages
        if isinstance(m["content"], list)
        for b in m["content"]
        if b.get("type") == "tool_result"
    ]


async def turn(tg: FakeTelegram, api: FakeAnthropicAPI, ws: Path, tmp: Path, *calls: dict) -> None:
    api.script(
        *[tool_reply("send_file", c, id=f"call{i}") for i, c in enumerate(calls)],
        text_reply("done"),
    )
    adapter = TelegramAdapter(
        account="main", token=tg.token, api_base=tg.api_base, poll_timeout=1, retry=FAST
    )
    async with serving(adapter, config(ws), api, tmp):
        tg.inject_message(chat_id=ALICE, user_id=ALICE, text="send me my files")
        await tg.wait_sent(1, timeout=15)


async def test_send_file_delivers_the_senders_own_file(
    fakes: tuple[FakeTelegram, FakeAnthropicAPI], tmp_path: Path
) -> None:
    tg, api = fakes
    ws = tmp_path / "ws"
    mine = folder(ws, ALICE)
    (mine / "out").mkdir()
    (mine / "out" / "plan.pdf").write_bytes(PDF)
    (mine / "chart.png").write_bytes(png())
    await turn(
        tg,
        api,
        ws,
        tmp_path,
        {"path": "out/plan.pdf", "caption": "the plan"},
        {"path": "/workspace/chart.png"},
    )
    doc, photo = tg.sent_files
    assert doc["method"] == "sendDocument" and doc["data"] == PDF and doc["caption"] == "the plan"
    assert photo["method"] == "sendPhoto" and photo["data"] == png()
    assert doc["chat_id"] == str(ALICE)
    assert all(not r.get("is_error") for r in results(api))
    assert tg.sent[-1]["plain"] == "done"


async def test_a_member_cannot_send_another_persons_files(
    fakes: tuple[FakeTelegram, FakeAnthropicAPI], tmp_path: Path
) -> None:
    """Alice's turn tries Bob's file by absolute path, by ``..`` and through a symbolic link
    planted in her own folder (the sandbox can write there): nothing is sent."""
    tg, api = fakes
    ws = tmp_path / "ws"
    secret = folder(ws, BOB) / "secret.pdf"
    secret.write_bytes(PDF + b"bob's bank statement")
    mine = folder(ws, ALICE)
    os.symlink(secret, mine / "link.pdf")
    up = os.path.relpath(secret, mine)
    await turn(
        tg,
        api,
        ws,
        tmp_path,
        {"path": str(secret)},
        {"path": up},
        {"path": "link.pdf"},
        {"path": "/workspace/../../" + up},
    )
    assert tg.sent_files == []
    got = results(api)
    assert len(got) == 4 and all(r.get("is_error") for r in got)
    assert not any("bank statement" in str(r["content"]) for r in got)


async def test_programs_and_lying_names_are_not_sent(
    fakes: tuple[FakeTelegram, FakeAnthropicAPI], tmp_path: Path
) -> None:
    tg, api = fakes
    ws = tmp_path / "ws"
    mine = folder(ws, ALICE)
    (mine / "tool").write_bytes(ELF)
    (mine / "photo.jpg").write_bytes(PDF)
    (mine / "huge.pdf").write_bytes(PDF + b"0" * (21 * 1024 * 1024))
    await turn(tg, api, ws, tmp_path, {"path": "tool"}, {"path": "photo.jpg"}, {"path": "huge.pdf"})
    assert tg.sent_files == []
    texts = [str(r["content"]) for r in results(api)]
    assert "program or script" in texts[0]
    assert "claims another type" in texts[1]
    assert "media.max_bytes" in texts[2]
