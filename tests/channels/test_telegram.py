"""TelegramAdapter through the real aiogram client against the fake Bot API."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from moltbot.channels.telegram import TelegramAdapter
from moltbot.clock import FakeClock
from moltbot.errors import PlatformRejected, PlatformUnavailable
from moltbot.messages import OutboundMessage
from tests.channels.conftest import FAST, Collector, Gauge, Sleeps, StoreDown, running
from tests.fakes.telegram_api import DEFAULT_TOKEN, FakeTelegram

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as f:
        yield f


def make(fake: FakeTelegram, **kw: object) -> TelegramAdapter:
    args: dict[str, object] = {
        "account": "main",
        "token": DEFAULT_TOKEN,
        "api_base": fake.api_base,
        "poll_timeout": 1,
        "retry": FAST,
    }
    args.update(kw)
    return TelegramAdapter(**args)  # type: ignore[arg-type]


def out(text: str, chat_id: str = "42", **kw: object) -> OutboundMessage:
    return OutboundMessage(channel="telegram", account="main", chat_id=chat_id, text=text, **kw)  # type: ignore[arg-type]


async def test_connect_returns_identity(fake: FakeTelegram) -> None:
    a = make(fake)
    try:
        me = await a.connect()
    finally:
        await a.close()
    assert me == {"id": "999000", "username": "moltbot_test_bot", "name": "Moltbot"}
    assert fake.calls["deleteWebhook"] == 1


async def test_bad_token_is_rejected_and_never_shown(fake: FakeTelegram) -> None:
    a = make(fake, token="123456:WRONG-secret-value")
    with pytest.raises(PlatformRejected) as info:
        await a.connect()
    await a.close()
    assert "WRONG-secret-value" not in str(info.value)
    assert "WRONG-secret-value" not in repr(a)
    assert fake.calls["getMe"] == 1  # no retry of a 401


async def test_malformed_token_is_rejected(fake: FakeTelegram) -> None:
    a = make(fake, token="not a token")
    with pytest.raises(PlatformRejected):
        await a.connect()
    await a.close()


async def test_dm_reaches_sink(fake: FakeTelegram) -> None:
    sink = Collector()
    a = make(fake)
    fake.inject_message(chat_id=42, user_id=42, text="hello there", first_name="Alice")
    async with running(a, sink):
        [msg] = await sink.wait(1)
    assert msg.id.startswith("telegram:main:42:")
    assert (msg.channel, msg.account) == ("telegram", "main")
    assert (msg.chat_id, msg.sender_id) == ("42", "42")
    assert msg.text == "hello there" and msg.sender_name == "Alice"
    assert not msg.is_group and not msg.mentioned
    assert msg.session_key == "telegram:main:dm:42"


async def test_group_mention_flags(fake: FakeTelegram) -> None:
    sink = Collector()
    a = make(fake)
    fake.inject_message(chat_id=-1001, user_id=7, text="just chatting", chat_type="supergroup")
    fake.inject_message(
        chat_id=-1001, user_id=7, text="@moltbot_test_bot what time is it?", chat_type="supergroup"
    )
    fake.inject_message(
        chat_id=-1001, user_id=8, text="and you?", chat_type="group", reply_to_bot=True
    )
    fake.inject_message(chat_id=-1001, user_id=8, text="@someone_else hi", chat_type="group")
    async with running(a, sink):
        msgs = await sink.wait(4)
    assert [m.mentioned for m in msgs] == [False, True, True, False]
    assert all(m.is_group for m in msgs)
    assert msgs[1].text == "what time is it?"
    assert {m.session_key for m in msgs} == {"telegram:main:group:-1001"}


async def test_offset_not_committed_when_sink_fails(fake: FakeTelegram) -> None:
    fake.inject_message(chat_id=42, user_id=42, text="first")
    fake.inject_message(chat_id=42, user_id=42, text="second")
    broken = Collector(fail_on=lambda m: m.text == "second")
    a = make(fake)
    with pytest.raises(StoreDown):
        await asyncio.wait_for(a.run(broken), 5)
    await a.close()
    assert [m.text for m in broken.messages] == ["first"]
    # only "first" was confirmed (close commits what the sink accepted); "second" is still there
    assert [u["message"]["text"] for u in fake.updates] == ["second"]

    sink = Collector()
    async with running(make(fake), sink):
        [msg] = await sink.wait(1)
    assert msg.text == "second"


async def test_restart_without_close_redelivers(fake: FakeTelegram) -> None:
    """A crash (no close) before the next poll: the whole batch comes again (journal dedupes)."""
    fake.inject_message(chat_id=42, user_id=42, text="one")
    broken = Collector(fail_on=lambda m: True)
    a = make(fake)
    with pytest.raises(StoreDown):
        await asyncio.wait_for(a.run(broken), 5)
    sink = Collector()
    async with running(make(fake), sink):
        [msg] = await sink.wait(1)
    assert msg.text == "one"
    await a.close()


async def test_send_chunks_to_limit_as_html(fake: FakeTelegram) -> None:
    a = make(fake)
    text = "\n\n".join(f"**Part {i}** " + "word & <tag> " * 60 for i in range(12))
    try:
        ids = await a.send(out(text))
    finally:
        await a.close()
    assert len(ids) == len(fake.sent) > 1
    assert ids == [str(s["message_id"]) for s in fake.sent]
    for s in fake.sent:
        assert s["parse_mode"] == "HTML" and len(s["text"]) <= 4096
    joined = " ".join(s["plain"] for s in fake.sent)
    assert joined.count("word & <tag>") == 12 * 60
    assert "<b>Part 0</b>" in fake.sent[0]["text"]


async def test_send_reply_in_group_and_thread(fake: FakeTelegram) -> None:
    a = make(fake)
    try:
        await a.send(
            out("hi", chat_id="-1001", in_reply_to="telegram:main:-1001:77", thread_id="5")
        )
    finally:
        await a.close()
    [s] = fake.sent
    assert s["chat_id"] == "-1001" and s["message_thread_id"] == "5"
    assert '"message_id":77' in s["reply_parameters"].replace(" ", "")


async def test_429_honours_retry_after(fake: FakeTelegram, sleeps: Sleeps) -> None:
    fake.fail("sendMessage", 1, status=429, retry_after=2)
    a = make(fake, sleep=sleeps)
    try:
        ids = await a.send(out("hello"))
    finally:
        await a.close()
    assert len(ids) == 1 and len(fake.sent) == 1
    assert sleeps.delays == [2.0]
    assert fake.calls["sendMessage"] == 2


async def test_5xx_then_success_delivers_once(fake: FakeTelegram, sleeps: Sleeps) -> None:
    fake.fail("sendMessage", 4, status=502)
    a = make(fake, sleep=sleeps)
    try:
        ids = await a.send(out("hello"))
    finally:
        await a.close()
    assert len(ids) == 1 and [s["text"] for s in fake.sent] == ["hello"]
    assert len(sleeps.delays) == 4
    assert sleeps.delays == sorted(sleeps.delays) or max(sleeps.delays) <= FAST.cap


async def test_5xx_past_deadline_raises_unavailable(fake: FakeTelegram) -> None:
    clock = FakeClock()

    async def sleep(d: float) -> None:
        clock.advance(d)
        await asyncio.sleep(0)

    fake.fail("sendMessage", 1000, status=500)
    a = make(fake, sleep=sleep, clock=clock)
    with pytest.raises(PlatformUnavailable):
        await a.send(out("hello"))
    await a.close()
    assert fake.sent == [] and fake.calls["sendMessage"] > 3


async def test_receive_survives_5xx(fake: FakeTelegram) -> None:
    fake.fail("getUpdates", 3, status=500)
    fake.inject_message(chat_id=42, user_id=42, text="after outage")
    sink = Collector()
    async with running(make(fake), sink):
        [msg] = await sink.wait(1)
    assert msg.text == "after outage"


async def test_send_rejected_is_not_retried(fake: FakeTelegram) -> None:
    fake.fail("sendMessage", 5, status=400)
    a = make(fake)
    with pytest.raises(PlatformRejected):
        await a.send(out("hello"))
    await a.close()
    assert fake.calls["sendMessage"] == 1


async def test_wrong_token_401_on_send(fake: FakeTelegram) -> None:
    a = make(fake, token="123456:revoked")
    with pytest.raises(PlatformRejected):
        await a.send(out("hello"))
    await a.close()


async def test_typing_hits_fake(fake: FakeTelegram) -> None:
    a = make(fake)
    try:
        await a.typing("42")
    finally:
        await a.close()
    assert fake.actions == [{"chat_id": "42", "action": "typing"}]


async def test_last_activity_moves_with_polls(fake: FakeTelegram) -> None:
    clock = FakeClock()
    a = make(fake, clock=clock)
    before = a.last_activity
    clock.advance(10)
    fake.inject_message(chat_id=42, user_id=42, text="x")
    sink = Collector()
    async with running(a, sink):
        await sink.wait(1)
    assert a.last_activity == before + 10


async def test_token_never_logged(fake: FakeTelegram, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    fake.fail("sendMessage", 2, status=500)
    a = make(fake)
    await a.connect()
    await a.send(out("hello"))
    await a.close()
    bad = make(fake, token="123456:SECRET-should-not-leak")
    with pytest.raises(PlatformRejected):
        await bad.connect()
    await bad.close()
    assert caplog.records
    assert "SECRET-should-not-leak" not in caplog.text and DEFAULT_TOKEN not in caplog.text


async def test_run_retries_a_failing_connect(fake: FakeTelegram) -> None:
    fake.fail("getMe", 2, status=503)
    fake.inject_message(chat_id=42, user_id=42, text="eventually")
    sink = Collector()
    async with running(make(fake), sink):
        [msg] = await sink.wait(1)
    assert msg.text == "eventually" and fake.calls["getMe"] == 3


async def test_overlapping_poller_is_transient(fake: FakeTelegram) -> None:
    """A restarted adapter may overlap the old one for a moment: 409 is retried, not fatal."""
    sink_a, sink_b = Collector(), Collector()
    async with running(make(fake), sink_a), running(make(fake), sink_b):
        await asyncio.sleep(0.3)
        fake.inject_message(chat_id=42, user_id=42, text="one of you")
        async with asyncio.timeout(5):
            while not (sink_a.messages or sink_b.messages):
                await asyncio.sleep(0.01)


async def test_one_poll_answer_is_sunk_together_in_order(fake: FakeTelegram) -> None:
    """The updates of one getUpdates answer go to the sink at once (their journal writes then
    share a group commit), entering in platform order."""
    for text in ("one", "two", "three"):
        fake.inject_message(chat_id=42, user_id=42, text=text)
    sink = Gauge()
    async with running(make(fake), sink):
        await sink.wait(3)
    assert sink.entered == ["one", "two", "three"] and sink.peak == 3


async def test_a_refused_update_in_a_batch_keeps_the_offset_before_it(fake: FakeTelegram) -> None:
    for text in ("first", "second", "third"):
        fake.inject_message(chat_id=42, user_id=42, text=text)
    broken = Gauge(fail_on=lambda m: m.text == "second")
    a = make(fake)
    with pytest.raises(StoreDown):
        await asyncio.wait_for(a.run(broken), 5)
    await a.close()
    assert sorted(m.text for m in broken.messages) == ["first", "third"]
    # third was journaled too, but the offset stops before second: both come again (deduped)
    assert [u["message"]["text"] for u in fake.updates] == ["second", "third"]
