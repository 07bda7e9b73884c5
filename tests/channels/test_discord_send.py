"""DiscordAdapter sending through the real discord.py HTTP client against the fake Discord
(chunks, retries, pings off, replies, typing); its config and its cursor book."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from moltbot.channels.accounts import make_adapter
from moltbot.channels.base import MemoryCursors
from moltbot.channels.cursors import Cursor, CursorBook
from moltbot.channels.discord import DiscordAdapter
from moltbot.channels.formatting import DISCORD_LIMIT, render
from moltbot.clock import FakeClock
from moltbot.config import load_config_text
from moltbot.errors import ConfigError, PlatformRejected, PlatformUnavailable
from tests.channels.conftest import FAST, Sleeps
from tests.channels.discord_kit import ALICE, DM, make, out
from tests.fakes.discord_api import BOT_ID, BOT_TOKEN, GUILD_CHANNEL_ID, GUILD_ID, FakeDiscord

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def fake() -> AsyncIterator[FakeDiscord]:
    async with FakeDiscord(heartbeat_interval_ms=200) as f:
        yield f


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


async def test_429_long_retry_after_is_honoured_by_our_retry(
    fake: FakeDiscord, sleeps: Sleeps
) -> None:
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
    fake.inject_message(
        channel_id=GUILD_CHANNEL_ID, author_id=ALICE, guild_id=GUILD_ID, content="hi"
    )
    a = make(fake)
    try:
        await a.send(
            out(f"@everyone @here <@{ALICE}> <@&{GUILD_ID}> look", chat_id=GUILD_CHANNEL_ID)
        )
    finally:
        await a.close()
    [sent] = fake.sent
    assert "@everyone" in sent["content"]  # the words stay ...
    assert sent["allowed_mentions"] == {"parse": []}  # ... but ping nobody


async def test_reply_references_the_message_and_plain_text_is_escaped(fake: FakeDiscord) -> None:
    asked = fake.inject_message(
        channel_id=GUILD_CHANNEL_ID, author_id=ALICE, guild_id=GUILD_ID, content="approve?"
    )
    a = make(fake)
    try:
        await a.send(
            out(
                "run `rm -rf *_tmp` **now**",
                chat_id=GUILD_CHANNEL_ID,
                plain=True,
                in_reply_to=f"discord:main:{GUILD_CHANNEL_ID}:{asked['id']}",
            )
        )
        await a.send(
            out(
                "**bold** and `code`",
                chat_id=GUILD_CHANNEL_ID,
                in_reply_to=f"discord:main:{DM}:{asked['id']}",
            )
        )  # other chat: no ref
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


# --- config -> adapter ---------------------------------------------------------------------


async def test_config_builds_an_adapter_that_connects(fake: FakeDiscord) -> None:
    cfg = load_config_text(
        '{"channels": {"discord": [{"account": "main", "token": "env:DISCORD_TOKEN",'
        f' "api_base": "{fake.api_base}/", "catch_up_max": 50, "owners": ["{ALICE}"]}}]}}}}'
    )
    [acct] = cfg.channels.discord
    assert (acct.catch_up_max, acct.dm_policy) == (50, "pairing")
    resolved: list[tuple[str, str]] = []

    def secret(ref: str, path: str) -> str:
        resolved.append((ref, path))
        return BOT_TOKEN

    cursors = MemoryCursors()
    a = make_adapter("discord", 0, acct, secret, cursor_store=cursors)
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
        load_config_text(
            '{"channels": {"discord": [{"account": "m", "token": "secret:t", "catch_up_max": -1}]}}'
        )
    assert info.value.path == "$.channels.discord[0].catch_up_max"
    with pytest.raises(ConfigError) as info:
        load_config_text(
            '{"channels": {"discord": [{"account": "m", "token": "secret:t"},'
            ' {"account": "m", "token": "secret:u"}]}}'
        )
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


async def test_500_is_first_retried_by_discord_py(fake: FakeDiscord, sleeps: Sleeps) -> None:
    """discord.py itself retries a 500 (after 1 s) before our retry sees anything."""
    fake.inject_message(channel_id=DM, author_id=ALICE, content="hi")
    fake.fail("create_message", 1, status=500)
    a = make(fake, sleep=sleeps)
    try:
        ids = await a.send(out("hello"))
    finally:
        await a.close()
    first, second = fake.call_times["create_message"]
    assert len(ids) == 1 and len(fake.sent) == 1 and sleeps.delays == []
    assert second - first >= 1.0


def test_discord_flavour_keeps_markdown_and_fences_across_chunks() -> None:
    text = "#### Deep title\n## Kept\n~~old~~ **new**\n```py\n" + "x = 1\n" * 500 + "```"
    pieces = render(text, "discord", DISCORD_LIMIT)
    assert len(pieces) > 1 and all(len(p) <= DISCORD_LIMIT for p in pieces)
    assert pieces[0].startswith("**Deep title**\n## Kept\n~~old~~ **new**\n")
    assert all(p.count("```") % 2 == 0 for p in pieces)  # every piece's code block is closed
    assert render("a *b* <@1>", "discord", DISCORD_LIMIT, plain=True) == [r"a \*b\* \<@1\>"]
