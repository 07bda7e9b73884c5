"""IMessageAdapter (httpx) against the fake BlueBubbles server: receive, catch-up, send."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest

from moltbot.channels.accounts import make_adapter
from moltbot.channels.base import MemoryCursors
from moltbot.channels.imessage import IMESSAGE_LIMIT, QUERY_MAX, IMessageAdapter
from moltbot.channels.time_cursor import LOOKBACK_MS, Cursor
from moltbot.clock import FakeClock
from moltbot.config.loader import load_config_text
from moltbot.errors import ConfigError, PlatformRejected, PlatformUnavailable
from moltbot.messages import OutboundMessage
from tests.channels.conftest import FAST, Collector, StoreDown, running
from tests.fakes.bluebubbles_api import DM_ADDRESS, DM_CHAT, GROUP_CHAT, ME, FakeBlueBubbles

pytestmark = pytest.mark.timeout(30)
ACCOUNT = "home"
KEY = f"cursor.imessage.{ACCOUNT}"


@pytest.fixture
async def fake() -> AsyncIterator[FakeBlueBubbles]:
    async with FakeBlueBubbles() as f:
        yield f


class RealSleeps:
    """An injected sleep that records the delays and really waits them (short: FAST)."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(delay)


def make(fake: FakeBlueBubbles, **kw: Any) -> IMessageAdapter:
    args: dict[str, Any] = {
        "account": ACCOUNT,
        "api_base": fake.api_base,
        "password": fake.password,
        "poll_interval_s": 0.02,
        "retry": FAST,
    }
    args.update(kw)
    return IMessageAdapter(**args)


def out(text: str, chat_id: str = DM_CHAT) -> OutboundMessage:
    return OutboundMessage(channel="imessage", account=ACCOUNT, chat_id=chat_id, text=text)


async def settle(fake: FakeBlueBubbles, polls: int = 3) -> None:
    """Let the adapter poll ``polls`` more times (so a duplicate would have shown up)."""
    start = fake.calls["query"]
    async with asyncio.timeout(5):
        while fake.calls["query"] < start + polls:
            await asyncio.sleep(0.01)


async def started(fake: FakeBlueBubbles, polls: int = 1) -> None:
    """Wait until the adapter's first live polls are done (its baseline is taken)."""
    async with asyncio.timeout(5):
        while fake.calls["query"] < 1 + polls:
            await asyncio.sleep(0.01)


# --- connect ---------------------------------------------------------------------------------
async def test_connect_pings_and_reads_server_info(fake: FakeBlueBubbles) -> None:
    a = make(fake)
    try:
        me = await a.connect()
    finally:
        await a.close()
    assert me == {"id": ME, "server_version": "1.9.9", "private_api": True}
    assert (fake.calls["ping"], fake.calls["info"], fake.unauthorized) == (1, 1, 0)


async def test_wrong_password_is_rejected_with_the_fix(fake: FakeBlueBubbles) -> None:
    a = make(fake, password="not-the-password")
    with pytest.raises(PlatformRejected) as info:
        await a.connect()
    await a.close()
    err = info.value
    assert "channels.imessage password" in err.hint
    assert "moltbot secrets set" in err.hint
    assert "not-the-password" not in str(err) and "not-the-password" not in repr(a)
    assert fake.unauthorized == 1 and fake.calls["info"] == 0


async def test_wrong_password_stops_run_instead_of_retrying(fake: FakeBlueBubbles) -> None:
    a = make(fake, password="nope")
    with pytest.raises(PlatformRejected):
        await asyncio.wait_for(a.run(Collector()), 5)
    await a.close()
    assert fake.unauthorized == 1


async def test_password_never_reaches_logs_or_errors(
    fake: FakeBlueBubbles, caplog: pytest.LogCaptureFixture
) -> None:
    """The password rides in the URL (BlueBubbles' scheme): httpx logs every URL at INFO."""
    caplog.set_level(logging.DEBUG)
    fake.fail("send", 1, status=500)
    sink = Collector()
    a = make(fake)
    async with running(a, sink):
        await started(fake)
        fake.inject_message("hello")
        await sink.wait(1)
        await a.send(out("a reply"))
    assert fake.unauthorized == 0 and len(fake.sent) == 1  # the password did reach the server
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "HTTP Request: POST" in logged  # httpx logged the calls, and...
    assert fake.password not in logged  # ...not the password


@pytest.mark.parametrize(
    ("api_base", "warned"),
    [
        ("http://192.168.1.20:1234", True),
        ("http://mac.local:1234", True),
        ("https://mac.example.net", False),
        ("http://127.0.0.1:1234", False),
        ("http://localhost:1234", False),
        ("http://[::1]:1234", False),
    ],
)
def test_cleartext_password_to_another_machine_is_warned(
    api_base: str, warned: bool, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="moltbot.channels.imessage")
    IMessageAdapter(account=ACCOUNT, api_base=api_base, password="pw")
    assert any("unencrypted" in r.getMessage() for r in caplog.records) is warned


# --- receiving -------------------------------------------------------------------------------
async def test_dm_reaches_sink_and_history_is_not_answered(fake: FakeBlueBubbles) -> None:
    fake.inject_message("old history, before moltbot ever ran")
    sink = Collector()
    async with running(make(fake), sink):
        await started(fake)
        sent = fake.inject_message("hi bot")
        (msg,) = await sink.wait(1)
        await settle(fake)
    assert len(sink.messages) == 1
    assert msg.id == f"imessage:{ACCOUNT}:{sent['guid']}"
    assert (msg.channel, msg.account, msg.chat_id, msg.sender_id, msg.text) == (
        "imessage",
        ACCOUNT,
        DM_CHAT,
        DM_ADDRESS,
        "hi bot",
    )
    assert not msg.is_group and not msg.mentioned
    assert msg.session_key == f"imessage:{ACCOUNT}:dm:{DM_ADDRESS}"


async def test_group_mentioned_only_by_a_mention_name(fake: FakeBlueBubbles) -> None:
    sink = Collector()
    async with running(make(fake, mention_names=["moltbot", "Jarvis"]), sink):
        await started(fake)
        for text in (
            "just chatting",
            "hey Moltbot, weather?",
            "moltbots are cool",
            "@jarvis do it",
            "ask moltbot.",
        ):
            fake.inject_message(text, sender="+15557654321", chat=GROUP_CHAT)
        msgs = await sink.wait(5)
    assert all(m.is_group and m.chat_id == GROUP_CHAT for m in msgs)
    assert all(m.sender_id == "+15557654321" for m in msgs)
    assert [(m.text, m.mentioned) for m in msgs] == [
        ("just chatting", False),
        ("hey Moltbot, weather?", True),
        ("moltbots are cool", False),
        ("@jarvis do it", True),
        ("ask moltbot.", True),
    ]
    assert msgs[0].session_key == f"imessage:{ACCOUNT}:group:{GROUP_CHAT}"


async def test_a_dm_naming_the_bot_is_not_a_group_mention(fake: FakeBlueBubbles) -> None:
    sink = Collector()
    async with running(make(fake), sink):
        await started(fake)
        fake.inject_message("moltbot, hello")
        (msg,) = await sink.wait(1)
    assert not msg.is_group and not msg.mentioned


async def test_own_messages_tapbacks_and_events_are_ignored(fake: FakeBlueBubbles) -> None:
    store = MemoryCursors()
    sink = Collector()
    async with running(make(fake, cursor_store=store), sink):
        await started(fake)
        fake.inject_message("sent from the Mac itself", from_me=True)
        liked = fake.inject_message("Loved “hi”", associated="SOME-GUID")
        fake.inject_message("", item_type=1)  # a participant left the group
        last = fake.inject_message("a real one")
        await sink.wait(1)
        await settle(fake)
    assert [m.text for m in sink.messages] == ["a real one"]
    cursor = Cursor.decode(store.values[KEY])
    assert cursor is not None and cursor.ts == last["dateCreated"]
    assert cursor.seen(liked["guid"])  # skipped ones are passed too, not fetched forever


@pytest.mark.parametrize("how", ["503", "refuse"])
async def test_outage_then_back_every_message_exactly_once(fake: FakeBlueBubbles, how: str) -> None:
    sink, sleeps = Collector(), RealSleeps()
    async with running(make(fake, sleep=sleeps), sink):
        await started(fake)
        fake.inject_message("before")
        await sink.wait(1)
        await fake.go_down(how)
        fake.inject_message("while down 1")
        fake.inject_message("while down 2", sender="+15557654321", chat=GROUP_CHAT)
        async with asyncio.timeout(5):
            while len(sleeps.delays) < 3:  # the adapter failed and backed off 3 times
                await asyncio.sleep(0.01)
        assert len(sink.messages) == 1
        await fake.come_back()
        fake.inject_message("after")
        await sink.wait(4)
        await settle(fake)
    assert [m.text for m in sink.messages] == ["before", "while down 1", "while down 2", "after"]
    assert len({m.id for m in sink.messages}) == 4
    if how == "503":
        assert fake.refused_while_down >= 3


async def test_restart_with_the_same_cursor_catches_up_exactly(fake: FakeBlueBubbles) -> None:
    store = MemoryCursors()
    first = Collector()
    async with running(make(fake, cursor_store=store), first):
        await started(fake)
        fake.inject_message("seen by the first adapter")
        await first.wait(1)
    fake.inject_message("while stopped 1")
    fake.inject_message("our reply", from_me=True)
    fake.inject_message("while stopped 2", sender="+15557654321", chat=GROUP_CHAT)
    second = Collector()
    async with running(make(fake, cursor_store=store), second):
        await second.wait(2)
        fake.inject_message("live again")
        await second.wait(3)
        await settle(fake)
    assert [m.text for m in first.messages] == ["seen by the first adapter"]
    assert [m.text for m in second.messages] == ["while stopped 1", "while stopped 2", "live again"]


async def test_catch_up_is_bounded_to_the_newest(
    fake: FakeBlueBubbles, caplog: pytest.LogCaptureFixture
) -> None:
    store = MemoryCursors()
    first = Collector()
    async with running(make(fake, cursor_store=store), first):
        await started(fake)
        fake.inject_message("seen")
        await first.wait(1)
    for i in range(6):
        fake.inject_message(f"backlog {i}")
    sink = Collector()
    async with running(make(fake, cursor_store=store, catch_up_max=3), sink):
        await sink.wait(3)
        await settle(fake)
    assert [m.text for m in sink.messages] == ["backlog 3", "backlog 4", "backlog 5"]
    assert any("catch_up_max" in r.getMessage() for r in caplog.records)


async def test_a_full_window_of_seen_messages_skips_nothing(
    fake: FakeBlueBubbles, caplog: pytest.LogCaptureFixture
) -> None:
    """More accepted messages in the lookback window than one query returns: the newest still
    come, and nothing is reported skipped."""
    store = MemoryCursors()
    async with running(make(fake, cursor_store=store), Collector()):
        await started(fake)
    for i in range(QUERY_MAX + 5):
        fake.inject_message(f"burst {i}")
    sink = Collector()
    async with running(make(fake, cursor_store=store, catch_up_max=QUERY_MAX), sink):
        await sink.wait(QUERY_MAX, timeout=20)
        caplog.clear()
        fake.inject_message("one more")
        await sink.wait(QUERY_MAX + 1)
        await settle(fake)
    assert [m.text for m in sink.messages] == [
        *(f"burst {i}" for i in range(5, QUERY_MAX + 5)),
        "one more",
    ]
    assert not any("skipped" in r.getMessage() for r in caplog.records)


async def test_a_late_message_with_an_older_timestamp_still_arrives(
    fake: FakeBlueBubbles,
) -> None:
    sink = Collector()
    async with running(make(fake), sink):
        await started(fake)
        newer = fake.inject_message("newer")
        await sink.wait(1)
        # written to the database after "newer" but stamped before it (two chats at once)
        fake.inject_message("older, late", created_ms=newer["dateCreated"] - LOOKBACK_MS // 2)
        await sink.wait(2)
        await settle(fake)
    assert [m.text for m in sink.messages] == ["newer", "older, late"]


async def test_refused_message_is_delivered_again_by_the_next_adapter(
    fake: FakeBlueBubbles,
) -> None:
    store = MemoryCursors()
    async with running(make(fake, cursor_store=store), Collector()):
        await started(fake)
    one = fake.inject_message("one")
    fake.inject_message("two")
    fake.inject_message("three")
    failing = Collector(fail_on=lambda m: m.text == "two")
    a = make(fake, cursor_store=store)
    with pytest.raises(StoreDown):
        await asyncio.wait_for(a.run(failing), 5)
    await a.close()
    assert sorted(m.text for m in failing.messages) == ["one", "three"]
    cursor = Cursor.decode(store.values[KEY])
    assert cursor is not None and cursor.ts == one["dateCreated"]  # not past "two"
    again = Collector()
    async with running(make(fake, cursor_store=store), again):
        await again.wait(1)
        await settle(fake)
    assert [m.text for m in again.messages] == ["two"]  # "three" is not answered twice


async def test_unreadable_cursor_starts_at_the_newest(fake: FakeBlueBubbles) -> None:
    store = MemoryCursors()
    store.values[KEY] = b"{not json"
    fake.inject_message("old")
    sink = Collector()
    async with running(make(fake, cursor_store=store), sink):
        await started(fake)
        fake.inject_message("new")
        await sink.wait(1)
        await settle(fake)
    assert [m.text for m in sink.messages] == ["new"]
    assert Cursor.decode(store.values[KEY]) is not None


# --- sending ---------------------------------------------------------------------------------
async def test_long_reply_is_chunked_in_order(fake: FakeBlueBubbles) -> None:
    paragraphs = [f"paragraph {i} " + "word " * 150 for i in range(12)]
    text = "\n\n".join(p.strip() for p in paragraphs)
    a = make(fake)
    try:
        await a.connect()
        ids = await a.send(out(text, chat_id=GROUP_CHAT))
    finally:
        await a.close()
    pieces = [s["message"] for s in fake.sent]
    assert len(pieces) >= 3 and all(len(p) <= IMESSAGE_LIMIT for p in pieces)
    assert " ".join(" ".join(pieces).split()) == " ".join(text.split())
    assert ids == [s["guid"] for s in fake.sent]
    assert {s["chatGuid"] for s in fake.sent} == {GROUP_CHAT}
    assert {s["method"] for s in fake.sent} == {"private-api"}
    assert len({s["tempGuid"] for s in fake.sent}) == len(pieces)


async def test_markdown_becomes_plain_text_with_apple_script(fake: FakeBlueBubbles) -> None:
    fake.private_api = False
    a = make(fake)
    try:
        await a.connect()
        await a.send(out("**bold** and `code`"))
    finally:
        await a.close()
    assert [(s["message"], s["method"]) for s in fake.sent] == [("bold and code", "apple-script")]


async def test_typing_reaches_the_fake_with_the_private_api(fake: FakeBlueBubbles) -> None:
    fake.inject_message("hi")  # the DM exists once someone wrote
    a = make(fake)
    try:
        await a.connect()
        await a.typing(GROUP_CHAT)
        await a.typing(DM_CHAT)
    finally:
        await a.close()
    assert fake.typing == [GROUP_CHAT, DM_CHAT]


async def test_typing_without_the_private_api_sends_nothing(fake: FakeBlueBubbles) -> None:
    fake.private_api = False
    a = make(fake)
    try:
        await a.connect()
        await a.typing(DM_CHAT)
    finally:
        await a.close()
    assert fake.typing == [] and fake.calls["typing"] == 0


async def test_5xx_on_send_is_retried_then_delivered_once(fake: FakeBlueBubbles) -> None:
    sleeps = RealSleeps()
    fake.fail("send", 2, status=502)
    a = make(fake, sleep=sleeps)
    try:
        ids = await a.send(out("hello"))
    finally:
        await a.close()
    assert [s["message"] for s in fake.sent] == ["hello"] and len(ids) == 1
    assert fake.calls["send"] == 3 and len(sleeps.delays) == 2


async def test_5xx_past_the_deadline_raises_unavailable(fake: FakeBlueBubbles) -> None:
    clock = FakeClock()

    async def sleep(d: float) -> None:
        clock.advance(d)
        await asyncio.sleep(0)

    fake.fail("send", 1000, status=503)
    a = make(fake, sleep=sleep, clock=clock)
    with pytest.raises(PlatformUnavailable):
        await a.send(out("hello"))
    await a.close()
    assert fake.sent == [] and fake.calls["send"] > 1
    assert clock.monotonic() - 1000.0 <= FAST.deadline


async def test_send_to_an_unknown_group_is_rejected_without_retry(
    fake: FakeBlueBubbles,
) -> None:
    a = make(fake)
    with pytest.raises(PlatformRejected):
        await a.send(out("hi", chat_id="iMessage;+;nosuchchat"))
    await a.close()
    assert fake.calls["send"] == 1 and fake.sent == []


# --- config ----------------------------------------------------------------------------------
def test_config_builds_the_adapter() -> None:
    cfg = load_config_text(
        msgspec.json.encode(
            {
                "channels": {
                    "imessage": [
                        {
                            "account": "home",
                            "api_base": "http://127.0.0.1:1234",
                            "password": "env:BB_PASSWORD",
                            "mention_names": ["molty"],
                        }
                    ]
                }
            }
        ).decode()
    )
    (acct,) = cfg.channels.imessage
    assert (acct.catch_up_max, acct.poll_interval_s, acct.send_method) == (200, 2.0, "auto")
    asked: list[tuple[str, str]] = []

    def secret(ref: str, path: str) -> str:
        asked.append((ref, path))
        return "pw"

    adapter = make_adapter("imessage", 0, acct, secret, cursor_store=MemoryCursors())
    assert isinstance(adapter, IMessageAdapter) and adapter.channel == "imessage"
    assert asked == [("env:BB_PASSWORD", "$.channels.imessage[0].password")]


@pytest.mark.parametrize(
    ("account", "where"),
    [
        ({"account": "home", "password": "env:X"}, "api_base"),
        ({"account": "home", "api_base": "127.0.0.1:1234", "password": "env:X"}, "api_base"),
        (
            {"account": "home", "api_base": "http://127.0.0.1:1234", "password": "hunter2"},
            "password",
        ),
    ],
)
def test_bad_config_names_the_key(account: dict[str, str], where: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config_text(msgspec.json.encode({"channels": {"imessage": [account]}}).decode())
    assert "channels.imessage" in str(info.value) and where in str(info.value)
