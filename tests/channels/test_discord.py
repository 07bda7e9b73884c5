"""DiscordAdapter through the real discord.py client (REST + gateway) against the fake Discord."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import msgspec
import pytest

from moltbot.channels.accounts import make_adapter
from moltbot.channels.base import MemoryCursors
from moltbot.channels.cursors import Cursor, CursorBook
from moltbot.channels.discord import DiscordAdapter
from moltbot.clock import FakeClock
from moltbot.config import load_config_text
from moltbot.errors import ConfigError, PlatformRejected, PlatformUnavailable
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
            {"content": "via the bot's role", "mention_role": fake.bot_role()},
            {"content": "via another role", "mention_role": "777"},
            {"content": "last"},
        ):
            args: dict[str, object] = {"channel_id": GUILD_CHANNEL_ID, "author_id": ALICE,
                                       "guild_id": GUILD_ID, **kw}
            fake.inject_message(**args)  # type: ignore[arg-type]
        msgs = await sink.wait(6)
        await asyncio.sleep(0.1)
    assert [(m.text, m.mentioned) for m in sink.messages] == [
        ("lunch anyone?", False), ("what time is it?", True), ("hey  and you?", True),
        ("via the bot's role", True), ("<@&777> via another role", False), ("last", False)]
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
        fake.inject_message(channel_id=GUILD_CHANNEL_ID, author_id=ALICE, guild_id=GUILD_ID,
                            content="guild 1", mention_bot=True)
        await sink.wait(2)
    # down: nobody is connected, so nothing is dispatched to us; only history keeps these
    missed = [fake.inject_message(channel_id=DM, author_id=ALICE, content=f"dm {i}")
              for i in (2, 3)]
    fake.inject_message(channel_id=GUILD_CHANNEL_ID, author_id=ALICE, guild_id=GUILD_ID,
                        content="guild 2")
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


async def test_5xx_then_success_delivers_once(fake: FakeDiscord, sleeps: Sleeps) -> None:
    fake.inject_message(channel_id=DM, author_id=ALICE, content="hi")
    fake.fail("create_message", 3, status=503)
    a = make(fake, sleep=sleeps)
    try:
        ids = await a.send(out("hello"))
    finally:
        await a.close()
    assert len(ids) == 1 and [s["content"] for s in fake.sent] == ["hello"]
    assert len(sleeps.delays) == 3 and fake.calls["create_message"] == 4


async def test_5xx_past_deadline_raises_unavailable(fake: FakeDiscord) -> None:
    clock = FakeClock()

    async def sleep(d: float) -> None:
        clock.advance(d)
        await asyncio.sleep(0)

    fake.inject_message(channel_id=DM, author_id=ALICE, content="hi")
    fake.fail("create_message", 1000, status=503)
    a = make(fake, sleep=sleep, clock=clock)
    with pytest.raises(PlatformUnavailable):
        await a.send(out("hello"))
    await a.close()
    assert fake.sent == [] and fake.calls["create_message"] > 1


async def test_429_short_retry_after_is_waited(fake: FakeDiscord) -> None:
    """A short 429 is waited out inside discord.py (its own bucket handling), not resent early."""
    fake.inject_message(channel_id=DM, author_id=ALICE, content="hi")
    fake.fail("create_message", 1, status=429, retry_after=0.4)
    a = make(fake)
    try:
        ids = await a.send(out("hello"))
    finally:
        await a.close()
    first, second = fake.call_times["create_message"]
    assert len(ids) == 1 and len(fake.sent) == 1 and second - first >= 0.4


async def test_429_long_retry_after_is_honoured_by_our_retry(fake: FakeDiscord,
                                                             sleeps: Sleeps) -> None:
    fake.inject_message(channel_id=DM, author_id=ALICE, content="hi")
    fake.fail("create_message", 1, status=429, retry_after=45)
    a = make(fake, sleep=sleeps, retry=FAST.__class__(base=0.01, cap=0.05, deadline=120))
    try:
        ids = await a.send(out("hello"))
    finally:
        await a.close()
    assert len(ids) == 1 and len(fake.sent) == 1 and sleeps.delays == [45.0]


async def test_403_is_rejected_without_retry(fake: FakeDiscord) -> None:
    fake.inject_message(channel_id=DM, author_id=ALICE, content="hi")
    fake.fail("create_message", 5, status=403)
    a = make(fake)
    with pytest.raises(PlatformRejected) as info:
        await a.send(out("hello"))
    await a.close()
    assert fake.calls["create_message"] == 1 and "Send Messages" in str(info.value)


async def test_reply_cannot_ping_everyone_or_users(fake: FakeDiscord) -> None:
    """The model's text tries mass and user pings: every message goes out with pings off."""
    fake.inject_message(channel_id=GUILD_CHANNEL_ID, author_id=ALICE, guild_id=GUILD_ID,
                        content="hi")
    a = make(fake)
    try:
        await a.send(out(f"@everyone @here <@{ALICE}> <@&{GUILD_ID}> look",
                         chat_id=GUILD_CHANNEL_ID))
    finally:
        await a.close()
    [sent] = fake.sent
    assert "@everyone" in sent["content"]  # the words stay ...
    assert sent["allowed_mentions"] == {"parse": []}  # ... but ping nobody


async def test_reply_references_the_message_and_plain_text_is_escaped(fake: FakeDiscord) -> None:
    asked = fake.inject_message(channel_id=GUILD_CHANNEL_ID, author_id=ALICE, guild_id=GUILD_ID,
                                content="approve?")
    a = make(fake)
    try:
        await a.send(out("run `rm -rf *_tmp` **now**", chat_id=GUILD_CHANNEL_ID, plain=True,
                         in_reply_to=f"discord:main:{GUILD_CHANNEL_ID}:{asked['id']}"))
        await a.send(out("**bold** and `code`", chat_id=GUILD_CHANNEL_ID,
                         in_reply_to=f"discord:main:{DM}:{asked['id']}"))  # other chat: no ref
    finally:
        await a.close()
    plain, md = fake.sent
    assert plain["message_reference"]["message_id"] == asked["id"]
    assert plain["content"] == r"run \`rm \-rf \*\_tmp\` \*\*now\*\*"
    assert md["content"] == "**bold** and `code`" and "message_reference" not in md


async def test_bad_chat_id_is_rejected(fake: FakeDiscord) -> None:
    a = make(fake)
    with pytest.raises(PlatformRejected):
        await a.send(out("hello", chat_id="../users/@me"))
    await a.close()
    assert fake.sent == [] and fake.calls["create_message"] == 0


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


# --- config -> adapter ---------------------------------------------------------------------
async def test_config_builds_an_adapter_that_connects(fake: FakeDiscord) -> None:
    cfg = load_config_text(
        '{"channels": {"discord": [{"account": "main", "token": "env:DISCORD_TOKEN",'
        f' "api_base": "{fake.api_base}/", "catch_up_max": 50, "owners": ["{ALICE}"]}}]}}}}')
    [acct] = cfg.channels.discord
    assert (acct.catch_up_max, acct.dm_policy) == (50, "pairing")
    resolved: list[tuple[str, str]] = []

    def secret(ref: str, path: str) -> str:
        resolved.append((ref, path))
        return BOT_TOKEN

    cursors = MemoryCursors()
    a = make_adapter("discord", 0, acct, secret, cursors=cursors)
    assert isinstance(a, DiscordAdapter)
    try:
        assert (await a.connect())["id"] == BOT_ID
    finally:
        await a.close()
    assert resolved == [("env:DISCORD_TOKEN", "$.channels.discord[0].token")]


def test_config_errors_name_the_discord_key() -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text('{"channels": {"discord": [{"account": "main", "token": "abc.def"}]}}')
    assert info.value.path == "$.channels.discord[0].token" and "abc.def" not in str(info.value)
    with pytest.raises(ConfigError) as info:
        load_config_text('{"channels": {"discord": [{"account": "m", "token": "secret:t",'
                         ' "catch_up_max": -1}]}}')
    assert info.value.path == "$.channels.discord[0].catch_up_max"
    with pytest.raises(ConfigError) as info:
        load_config_text('{"channels": {"discord": [{"account": "m", "token": "secret:t"},'
                         ' {"account": "m", "token": "secret:u"}]}}')
    assert info.value.path.startswith("$.channels.discord")


# --- the cursor book -------------------------------------------------------------------------
async def test_cursor_book_keeps_the_newest_channels_and_never_goes_back() -> None:
    store = MemoryCursors()
    book = CursorBook(store, "cursor.discord.main", max_channels=2)
    await book.load()
    assert book.advanced({"1": Cursor(10), "2": Cursor(30, "g"), "3": Cursor(20)})
    assert set(book.channels) == {"2", "3"}  # channel 1 was the least recently active
    assert not book.advanced({"2": Cursor(25)}) and book.last("2") == 30
    await book.save()
    again = CursorBook(store, "cursor.discord.main")
    assert await again.load() == {"2": Cursor(30, "g"), "3": Cursor(20)}


async def test_unreadable_cursor_value_starts_empty(caplog: pytest.LogCaptureFixture) -> None:
    store = MemoryCursors()
    await store.put("cursor.discord.main", b"{not json")
    book = CursorBook(store, "cursor.discord.main")
    assert await book.load() == {} and "unreadable" in caplog.text


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
