"""DiscordAdapter receiving through the real discord.py client (REST + gateway) against the
fake Discord: mentions, RESUME, catch-up from history after restarts, refusals, overflow."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgspec
import pytest

from moltbot.channels.base import MemoryCursors
from moltbot.errors import PlatformRejected
from tests.channels.conftest import Collector, StoreDown, running
from tests.channels.discord_kit import ALICE, DM, connected, cursor_of, make, out
from tests.fakes.discord_api import (
    BOT_ID,
    BOT_TOKEN,
    GUILD_CHANNEL_ID,
    GUILD_ID,
    MESSAGE_CONTENT,
    FakeDiscord,
)

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(heartbeat_interval_ms=200) as f:
        yield f


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
    assert (msg.channel, msg.account, msg.chat_id, msg.sender_id) == ("discord", "main", DM, ALICE)
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
            {"content": "via the bot's role", "mention_role": fake.bot_role()},
            {"content": "via another role", "mention_role": "777"},
            {"content": "last"},
        ):
            args: dict[str, object] = {
                "channel_id": GUILD_CHANNEL_ID,
                "author_id": ALICE,
                "guild_id": GUILD_ID,
                **kw,
            }
            fake.inject_message(**args)  # type: ignore[arg-type]
        msgs = await sink.wait(6)
        await asyncio.sleep(0.1)
    assert [(m.text, m.mentioned) for m in sink.messages] == [
        ("lunch anyone?", False),
        ("what time is it?", True),
        ("hey  and you?", True),
        ("via the bot's role", True),
        ("<@&777> via another role", False),
        ("last", False),
    ]
    assert all(m.is_group for m in msgs)
    assert msgs[0].session_key == f"discord:main:group:{GUILD_CHANNEL_ID}"


async def test_websocket_drop_resumes_and_replays_the_gap_once(fake: FakeDiscord) -> None:
    sink = Collector()
    async with running(make(fake), sink):
        await connected(fake)
        fake.inject_message(channel_id=DM, author_id=ALICE, content="before")
        await sink.wait(1)
        fake.hold()  # the reconnect waits for HELLO: the next messages fall in the gap
        await fake.drop()
        await fake.wait_for(lambda: fake.connections == 2)
        assert fake.session is not None and fake.session.socket is None
        for text in ("gap one", "gap two"):
            fake.inject_message(channel_id=DM, author_id=ALICE, content=text)
        fake.release()
        await sink.wait(3)
        fake.inject_message(channel_id=DM, author_id=ALICE, content="after")
        await sink.wait(4)
        await asyncio.sleep(0.2)
    assert [m.text for m in sink.messages] == ["before", "gap one", "gap two", "after"]
    assert fake.resumes == 1 and fake.identifies == 1


async def test_failed_resume_catches_up_from_history(fake: FakeDiscord) -> None:
    sink = Collector()
    async with running(make(fake), sink):
        await connected(fake)
        fake.inject_message(channel_id=DM, author_id=ALICE, content="before")
        await sink.wait(1)
        fake.hold()
        await fake.drop()
        await fake.wait_for(lambda: fake.connections == 2)
        fake.invalidate_sessions()  # RESUME -> INVALID_SESSION; the gap is not replayed
        for text in ("gap one", "gap two"):
            fake.inject_message(channel_id=DM, author_id=ALICE, content=text)
        fake.release()
        await sink.wait(3)
        await connected(fake, 2)
        fake.inject_message(channel_id=DM, author_id=ALICE, content="after")
        await sink.wait(4)
        await asyncio.sleep(0.2)
    assert [m.text for m in sink.messages] == ["before", "gap one", "gap two", "after"]
    assert fake.resumes == 1 and fake.identifies == 2 and fake.calls["history"] == 1


async def test_restart_catches_up_exactly_the_missed(fake: FakeDiscord) -> None:
    cursors = MemoryCursors()
    sink = Collector()
    async with running(make(fake, cursors), sink):
        await connected(fake)
        fake.inject_message(channel_id=DM, author_id=ALICE, content="dm 1")
        fake.inject_message(
            channel_id=GUILD_CHANNEL_ID,
            author_id=ALICE,
            guild_id=GUILD_ID,
            content="guild 1",
            mention_bot=True,
        )
        await sink.wait(2)
    # down: nobody is connected, so nothing is dispatched to us; only history keeps these
    missed = [
        fake.inject_message(channel_id=DM, author_id=ALICE, content=f"dm {i}") for i in (2, 3)
    ]
    fake.inject_message(
        channel_id=GUILD_CHANNEL_ID, author_id=ALICE, guild_id=GUILD_ID, content="guild 2"
    )
    later = Collector()
    async with running(make(fake, cursors), later):
        await later.wait(3)
        fake.inject_message(channel_id=DM, author_id=ALICE, content="live")
        await later.wait(4)
        await asyncio.sleep(0.2)
    texts = sorted(m.text for m in later.messages)
    assert texts == ["dm 2", "dm 3", "guild 2", "live"]
    by_text = {m.text: m for m in later.messages}
    assert by_text["guild 2"].is_group and not by_text["guild 2"].mentioned
    assert not by_text["dm 2"].is_group
    assert by_text["dm 3"].id == f"discord:main:{DM}:{missed[1]['id']}"
    assert [m.text for m in later.messages if m.chat_id == DM] == ["dm 2", "dm 3", "live"]
    assert fake.calls["history"] == 2  # one page for each channel with a cursor


async def test_refused_message_is_not_passed_and_comes_again(fake: FakeDiscord) -> None:
    cursors = MemoryCursors()
    sink = Collector()
    async with running(make(fake, cursors), sink):
        await connected(fake)
        first = fake.inject_message(channel_id=DM, author_id=ALICE, content="first")
        await sink.wait(1)
    assert cursor_of(cursors, DM) == int(first["id"])

    broken = Collector(fail_on=lambda m: m.text == "second")
    second = fake.inject_message(channel_id=DM, author_id=ALICE, content="second")
    fake.inject_message(channel_id=DM, author_id=ALICE, content="third")
    a = make(fake, cursors)
    with pytest.raises(StoreDown):
        await asyncio.wait_for(a.run(broken), 10)
    await a.close()
    assert cursor_of(cursors, DM) == int(first["id"])  # not past "second"
    assert "second" not in [m.text for m in broken.messages]

    sink = Collector()
    async with running(make(fake, cursors), sink):
        await sink.wait(2)
        await asyncio.sleep(0.2)
    assert [m.text for m in sink.messages] == ["second", "third"]
    assert sink.messages[0].id.endswith(f":{second['id']}")
    assert cursor_of(cursors, DM) > int(second["id"])


async def test_slow_sink_overflow_reads_the_rest_from_history(fake: FakeDiscord) -> None:
    """More live messages than the queue holds: none is lost, none comes twice, in order."""

    class Slow(Collector):
        async def __call__(self, msg: object) -> None:
            await asyncio.sleep(0.02)
            await super().__call__(msg)  # type: ignore[arg-type]

    sink = Slow()
    async with running(make(fake, queue_size=2), sink):
        await connected(fake)
        for i in range(12):
            fake.inject_message(channel_id=DM, author_id=ALICE, content=f"m{i}")
        await sink.wait(12)
        await asyncio.sleep(0.3)
    assert [m.text for m in sink.messages] == [f"m{i}" for i in range(12)]
    assert fake.calls["history"] >= 1


class SlowStart(MemoryCursors):
    """The cursors load only when released: the gateway's READY and messages queue first."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Event()

    async def get(self, key: str) -> bytes | None:
        await self.release.wait()
        return await super().get(key)


async def test_overflow_behind_a_queued_ready_loses_nothing(fake: FakeDiscord) -> None:
    """READY and a new channel's first message are queued and its second one overflows before
    the receiver starts: the READY's catch-up reads that channel from the queued message on,
    so the first message is neither skipped nor passed by the ones after it."""
    cursors = SlowStart()
    sink = Collector()
    async with running(make(fake, cursors, queue_size=2), sink):
        await connected(fake)
        for i in range(6):
            fake.inject_message(channel_id=DM, author_id=ALICE, content=f"m{i}")
        await asyncio.sleep(0.5)  # the client reads them; the receiver still waits
        cursors.release.set()
        await sink.wait(6)
        await asyncio.sleep(0.3)
    assert [m.text for m in sink.messages] == [f"m{i}" for i in range(6)]
    assert fake.calls["history"] >= 1
    assert cursor_of(cursors, DM) == int(fake.history[DM][-1]["id"])


async def test_catch_up_is_bounded(fake: FakeDiscord) -> None:
    cursors = MemoryCursors()
    sink = Collector()
    async with running(make(fake, cursors), sink):
        await connected(fake)
        fake.inject_message(channel_id=DM, author_id=ALICE, content="seed")
        await sink.wait(1)
    for i in range(7):
        fake.inject_message(channel_id=DM, author_id=ALICE, content=f"missed {i}")
    later = Collector()
    async with running(make(fake, cursors, catch_up_max=5), later):
        await later.wait(5)
        await asyncio.sleep(0.3)
    assert [m.text for m in later.messages] == [f"missed {i}" for i in range(5)]


async def test_message_content_intent_refused(fake: FakeDiscord) -> None:
    fake.message_content_allowed = False
    a = make(fake)
    with pytest.raises(PlatformRejected) as info:
        await asyncio.wait_for(a.run(Collector()), 10)
    await a.close()
    assert "MESSAGE CONTENT INTENT" in str(info.value)


async def test_token_never_logged(fake: FakeDiscord, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    fake.fail("create_message", 1, status=503)
    sink = Collector()
    a = make(fake)
    async with running(a, sink):
        await connected(fake)
        fake.inject_message(channel_id=DM, author_id=ALICE, content="hi")
        await sink.wait(1)
        await a.send(out("hello"))
    assert caplog.records and BOT_TOKEN not in caplog.text


async def test_run_retries_a_failing_login(fake: FakeDiscord) -> None:
    fake.fail("users_me", 2, status=503)
    sink = Collector()
    async with running(make(fake), sink):
        await connected(fake)
        fake.inject_message(channel_id=DM, author_id=ALICE, content="eventually")
        [msg] = await sink.wait(1)
    assert msg.text == "eventually" and fake.calls["users_me"] == 3


async def test_platform_down_and_back_resumes(fake: FakeDiscord) -> None:
    """The whole platform goes away (connections refused) and comes back on the same address:
    discord.py retries with its backoff and RESUMEs; what happened meanwhile arrives once."""
    sink = Collector()
    async with running(make(fake), sink):
        await connected(fake)
        fake.inject_message(channel_id=DM, author_id=ALICE, content="before")
        await sink.wait(1)
        await fake.stop()
        fake.inject_message(channel_id=DM, author_id=ALICE, content="while down")
        await asyncio.sleep(0.3)
        await fake.start()
        await sink.wait(2, timeout=15)
        fake.inject_message(channel_id=DM, author_id=ALICE, content="after")
        await sink.wait(3)
        await asyncio.sleep(0.2)
    assert [m.text for m in sink.messages] == ["before", "while down", "after"]
    assert fake.resumes >= 1 and fake.identifies == 1


async def test_refused_first_message_of_a_new_channel_comes_again(fake: FakeDiscord) -> None:
    """No cursor yet for this DM: the refusal still leaves one just before it."""
    cursors = MemoryCursors()
    broken = Collector(fail_on=lambda m: True)
    a = make(fake, cursors)
    run = asyncio.ensure_future(a.run(broken))
    await connected(fake)
    fake.inject_message(channel_id=DM, author_id=ALICE, content="first ever")
    with pytest.raises(StoreDown):
        await asyncio.wait_for(run, 10)
    await a.close()
    sink = Collector()
    async with running(make(fake, cursors), sink):
        [msg] = await sink.wait(1)
    assert msg.text == "first ever"


async def test_gone_channel_drops_its_cursor_but_not_the_others(fake: FakeDiscord) -> None:
    gone = "200000000000000009"
    fake.add_guild_channel(gone)
    cursors = MemoryCursors()
    sink = Collector()
    async with running(make(fake, cursors), sink):
        await connected(fake)
        fake.inject_message(channel_id=gone, author_id=ALICE, guild_id=GUILD_ID, content="a")
        fake.inject_message(channel_id=DM, author_id=ALICE, content="b")
        await sink.wait(2)
    fake.delete_channel(gone)  # deleted while we were away
    fake.inject_message(channel_id=DM, author_id=ALICE, content="missed")
    later = Collector()
    async with running(make(fake, cursors), later):
        [msg] = await later.wait(1)
        await fake.wait_for(
            lambda: (
                gone not in msgspec.json.decode(cursors.values["cursor.discord.main"])["channels"]
            )
        )
    assert msg.text == "missed" and cursor_of(cursors, DM) > 0


async def test_token_revoked_during_catch_up_keeps_the_cursors(fake: FakeDiscord) -> None:
    cursors = MemoryCursors()
    sink = Collector()
    async with running(make(fake, cursors), sink):
        await connected(fake)
        fake.inject_message(channel_id=DM, author_id=ALICE, content="seed")
        await sink.wait(1)
    saved = cursors.values["cursor.discord.main"]
    fake.fail("history", 1, status=401)
    a = make(fake, cursors)
    with pytest.raises(PlatformRejected) as info:
        await asyncio.wait_for(a.run(Collector()), 10)
    await a.close()
    assert "channels.discord token" in str(info.value)
    assert cursors.values["cursor.discord.main"] == saved


async def test_gateway_refusing_the_token_stops_the_run(fake: FakeDiscord) -> None:
    """REST took the token but the gateway closes with 4004 (revoked meanwhile): no loop."""
    a = make(fake)
    await a.connect()
    fake.token = "another-token"
    with pytest.raises(PlatformRejected) as info:
        await asyncio.wait_for(a.run(Collector()), 10)
    await a.close()
    assert "channels.discord token" in str(info.value) and fake.identifies == 1
