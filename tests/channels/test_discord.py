"""DiscordAdapter through the real discord.py client (REST + gateway) against the fake Discord."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgspec
import pytest

from moltbot.channels.base import MemoryCursors
from moltbot.channels.discord import DiscordAdapter
from moltbot.clock import FakeClock
from moltbot.errors import PlatformRejected, PlatformUnavailable
from moltbot.messages import OutboundMessage
from tests.channels.conftest import FAST, Collector, Sleeps, StoreDown, running
from tests.fakes.discord_api import (
    BOT_ID,
    BOT_TOKEN,
    GUILD_CHANNEL_ID,
    GUILD_ID,
    MESSAGE_CONTENT,
    FakeDiscord,
)

pytestmark = pytest.mark.timeout(30)

DM = "300000000000000001"
ALICE = "400000000000000001"


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(heartbeat_interval_ms=200) as f:
        yield f


def make(fake: FakeDiscord, cursors: MemoryCursors | None = None, **kw: object
         ) -> DiscordAdapter:
    args: dict[str, object] = {"account": "main", "token": BOT_TOKEN, "api_base": fake.api_base,
                               "cursors": cursors if cursors is not None else MemoryCursors(),
                               "identify_delay": 0.0, "retry": FAST}
    args.update(kw)
    return DiscordAdapter(**args)  # type: ignore[arg-type]


def out(text: str, chat_id: str = DM, **kw: object) -> OutboundMessage:
    return OutboundMessage(channel="discord", account="main", chat_id=chat_id, text=text, **kw)  # type: ignore[arg-type]


def cursor_of(cursors: MemoryCursors, channel: str) -> int:
    book = msgspec.json.decode(cursors.values["cursor.discord.main"])
    return int(book["channels"][channel]["last"])


async def connected(fake: FakeDiscord, n: int = 1) -> None:
    """Wait until the n-th session is READY (identified) and has an attached socket."""
    await fake.wait_for(lambda: fake.identifies >= n and fake.session is not None
                        and fake.session.socket is not None)


async def test_connect_returns_identity(fake: FakeDiscord) -> None:
    a = make(fake)
    try:
        me = await a.connect()
    finally:
        await a.close()
    assert me == {"id": BOT_ID, "username": "moltbot", "name": "Moltbot"}
    assert fake.calls["users_me"] == 1 and fake.calls["gateway_bot"] == 1


async def test_wrong_token_rejected_with_hint(fake: FakeDiscord) -> None:
    a = make(fake, token="MTAw.wrong.secret-value")
    with pytest.raises(PlatformRejected) as info:
        await a.connect()
    await a.close()
    assert "channels.discord token" in str(info.value)
    assert "secret-value" not in str(info.value) and "secret-value" not in repr(a)
    assert fake.calls["users_me"] == 1  # a 401 is not retried


async def test_dm_reaches_sink_over_compressed_gateway(fake: FakeDiscord) -> None:
    sink = Collector()
    a = make(fake)
    async with running(a, sink):
        await connected(fake)
        sent = fake.inject_message(channel_id=DM, author_id=ALICE, content="hello <b>")
        [msg] = await sink.wait(1)
        await fake.wait_for(lambda: fake.heartbeats >= 2)
    assert msg.id == f"discord:main:{DM}:{sent['id']}"
    assert (msg.channel, msg.account, msg.chat_id, msg.sender_id) == ("discord", "main", DM,
                                                                      ALICE)
    assert msg.text == "hello <b>" and msg.sender_name == "Alice"
    assert not msg.is_group and not msg.mentioned
    assert msg.session_key == f"discord:main:dm:{ALICE}"
    # what discord.py asked for: API v10, JSON, zlib transport compression, the intents we need
    assert fake.query == {"v": "10", "encoding": "json", "compress": "zlib-stream"}
    assert fake.intents is not None and fake.intents & MESSAGE_CONTENT


async def test_guild_mentions_and_ignored_authors(fake: FakeDiscord) -> None:
    sink = Collector()
    async with running(make(fake), sink):
        await connected(fake)
        for kw in (
            {"content": "lunch anyone?"},
            {"content": "what time is it?", "mention_bot": True},
            {"content": f"hey <@!{BOT_ID}> and you?"},
            {"content": "beep", "bot": True, "author_id": "500000000000000001"},
            {"content": "my own echo", "author_id": BOT_ID},
            {"content": "last"},
        ):
            args: dict[str, object] = {"channel_id": GUILD_CHANNEL_ID, "author_id": ALICE,
                                       "guild_id": GUILD_ID, **kw}
            fake.inject_message(**args)  # type: ignore[arg-type]
        msgs = await sink.wait(4)
        await asyncio.sleep(0.1)
    assert [(m.text, m.mentioned) for m in sink.messages] == [
        ("lunch anyone?", False), ("what time is it?", True), ("hey  and you?", True),
        ("last", False)]
    assert all(m.is_group for m in msgs)
    assert msgs[0].session_key == f"discord:main:group:{GUILD_CHANNEL_ID}"


async def test_long_reply_is_split_under_2000(fake: FakeDiscord) -> None:
    a = make(fake)
    fake.inject_message(channel_id=DM, author_id=ALICE, content="hi")
    text = " ".join(f"word{i:04d}" for i in range(500))  # 4499 characters
    assert len(text) == 4499
    try:
        ids = await a.send(out(text + "!"))
    finally:
        await a.close()
    assert len(ids) == len(fake.sent) == 3
    assert all(len(s["content"]) <= 2000 for s in fake.sent)
    assert " ".join(s["content"] for s in fake.sent) == text + "!"
    assert all(s["allowed_mentions"] == {"parse": []} for s in fake.sent)


async def test_typing_reaches_fake(fake: FakeDiscord) -> None:
    fake.inject_message(channel_id=DM, author_id=ALICE, content="hi")
    a = make(fake)
    try:
        await a.typing(DM)
    finally:
        await a.close()
    assert fake.typing == [DM]
