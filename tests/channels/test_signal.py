"""SignalAdapter (httpx + websockets) against the fake signal-cli-rest-api."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from moltbot.channels.signal import SignalAdapter
from moltbot.clock import FakeClock
from moltbot.errors import PlatformRejected, PlatformUnavailable
from moltbot.messages import OutboundMessage
from tests.channels.conftest import FAST, Collector, Gauge, Sleeps, StoreDown, running
from tests.fakes.signal_api import NUMBER, FakeSignal, group_chat_id

pytestmark = pytest.mark.timeout(30)


@pytest.fixture(params=["json-rpc", "normal"])
async def fake(request: pytest.FixtureRequest) -> AsyncIterator[FakeSignal]:
    async with FakeSignal(mode=request.param) as f:
        yield f


@pytest.fixture
async def poll_fake() -> AsyncIterator[FakeSignal]:
    async with FakeSignal(mode="normal") as f:
        yield f


def make(fake: FakeSignal, **kw: object) -> SignalAdapter:
    args: dict[str, object] = {
        "account": NUMBER,
        "api_base": fake.api_base,
        "poll_timeout": 1,
        "retry": FAST,
    }
    args.update(kw)
    return SignalAdapter(**args)  # type: ignore[arg-type]


def out(text: str, chat_id: str = "+15557770000") -> OutboundMessage:
    return OutboundMessage(channel="signal", account=NUMBER, chat_id=chat_id, text=text)


async def test_connect_returns_identity(fake: FakeSignal) -> None:
    a = make(fake)
    try:
        me = await a.connect()
    finally:
        await a.close()
    assert me == {"id": NUMBER, "mode": fake.mode, "version": "0.92"}


async def test_unregistered_number_rejected(fake: FakeSignal) -> None:
    a = make(fake, account="+15559999999")
    with pytest.raises(PlatformRejected):
        await a.connect()
    await a.close()


async def test_dm_and_group_reach_sink(fake: FakeSignal) -> None:
    sink = Collector()
    fake.inject_message(source="+15557770000", uuid="u-alice", text="hi bot", name="Alice")
    fake.inject_message(source="+15557770001", uuid="u-bob", text="chatter", group_id="grp1")
    fake.inject_message(
        source="+15557770001", uuid="u-bob", text="do it", group_id="grp1", mention_me=True
    )
    fake.inject_message(
        source="+15557770002", uuid="u-carol", text="and?", group_id="grp1", quote_me=True
    )
    async with running(make(fake), sink):
        msgs = await sink.wait(4)
    dm, chatter, mention, reply = msgs
    assert (dm.chat_id, dm.sender_id, dm.text, dm.sender_name) == (
        "+15557770000",
        "u-alice",
        "hi bot",
        "Alice",
    )
    assert not dm.is_group and dm.session_key == f"signal:{NUMBER}:dm:u-alice"
    assert dm.id.startswith(f"signal:{NUMBER}:+15557770000:u-alice:")
    assert [m.mentioned for m in (chatter, mention, reply)] == [False, True, True]
    assert mention.text == "do it"
    assert {m.chat_id for m in (chatter, mention, reply)} == {group_chat_id("grp1")}
    assert all(m.is_group for m in (chatter, mention, reply))
    if fake.mode == "json-rpc":
        assert fake.ws_connections == 1


async def test_sink_failure_keeps_unread_messages(poll_fake: FakeSignal) -> None:
    """Polling takes one message per request: a failing journal loses at most that one."""
    poll_fake.inject_message(source="+15557770000", text="lost in flight")
    poll_fake.inject_message(source="+15557770000", text="still queued")
    broken = Collector(fail_on=lambda m: True)
    a = make(poll_fake)
    with pytest.raises(StoreDown):
        await asyncio.wait_for(a.run(broken), 5)
    await a.close()
    assert [q["envelope"]["dataMessage"]["message"] for q in poll_fake.queued] == ["still queued"]
    sink = Collector()
    async with running(make(poll_fake), sink):
        [msg] = await sink.wait(1)
    assert msg.text == "still queued"


async def test_receive_survives_outage(fake: FakeSignal) -> None:
    fake.fail("receive", 3, status=502)
    fake.inject_message(source="+15557770000", text="after outage")
    sink = Collector()
    async with running(make(fake), sink):
        [msg] = await sink.wait(1)
    assert msg.text == "after outage"


async def test_send_chunks_as_plain_text(poll_fake: FakeSignal) -> None:
    a = make(poll_fake)
    text = "\n\n".join(f"## Step {i}\n**do** `this` " + "and that " * 50 for i in range(10))
    try:
        ids = await a.send(out(text))
    finally:
        await a.close()
    assert len(ids) == len(poll_fake.sent) > 1
    for s in poll_fake.sent:
        assert len(s["message"]) <= 2000
        assert s["number"] == NUMBER and s["recipients"] == ["+15557770000"]
        assert "**" not in s["message"] and "`" not in s["message"] and "##" not in s["message"]
    assert poll_fake.sent[0]["message"].startswith("Step 0\ndo this and that")


async def test_send_to_group(poll_fake: FakeSignal) -> None:
    a = make(poll_fake)
    try:
        await a.send(out("hello group", chat_id=group_chat_id("grp1")))
    finally:
        await a.close()
    assert poll_fake.sent[0]["recipients"] == [group_chat_id("grp1")]


async def test_429_honours_retry_after(poll_fake: FakeSignal, sleeps: Sleeps) -> None:
    poll_fake.fail("send", 1, status=429, retry_after=2)
    a = make(poll_fake, sleep=sleeps)
    try:
        ids = await a.send(out("hello"))
    finally:
        await a.close()
    assert len(ids) == 1 and len(poll_fake.sent) == 1 and sleeps.delays == [2.0]


async def test_5xx_then_success_delivers_once(poll_fake: FakeSignal, sleeps: Sleeps) -> None:
    poll_fake.fail("send", 3, status=500)
    a = make(poll_fake, sleep=sleeps)
    try:
        await a.send(out("hello"))
    finally:
        await a.close()
    assert [s["message"] for s in poll_fake.sent] == ["hello"] and len(sleeps.delays) == 3


async def test_5xx_past_deadline_raises_unavailable(poll_fake: FakeSignal) -> None:
    clock = FakeClock()

    async def sleep(d: float) -> None:
        clock.advance(d)
        await asyncio.sleep(0)

    poll_fake.fail("send", 1000, status=503)
    a = make(poll_fake, sleep=sleep, clock=clock)
    with pytest.raises(PlatformUnavailable):
        await a.send(out("hello"))
    await a.close()
    assert poll_fake.sent == []


async def test_401_rejected_without_retry(poll_fake: FakeSignal) -> None:
    poll_fake.fail("send", 5, status=401)
    a = make(poll_fake)
    with pytest.raises(PlatformRejected):
        await a.send(out("hello"))
    await a.close()
    assert poll_fake.calls["send"] == 1


async def test_typing_hits_fake(poll_fake: FakeSignal) -> None:
    a = make(poll_fake)
    try:
        await a.typing("+15557770000")
    finally:
        await a.close()
    assert poll_fake.typing == [{"recipient": "+15557770000"}]


@pytest.fixture
async def ws_fake() -> AsyncIterator[FakeSignal]:
    async with FakeSignal(mode="json-rpc") as f:
        yield f


async def test_websocket_messages_that_wait_are_sunk_together(ws_fake: FakeSignal) -> None:
    """Messages pushed while the sink is busy are read ahead (a small queue) and sunk together."""
    fake = ws_fake
    sink = Gauge(hold=0.3)
    async with running(make(fake), sink):
        fake.inject_message(source="+15557770000", text="first")
        async with asyncio.timeout(5):
            while not sink.entered:
                await asyncio.sleep(0.01)
        for text in ("second", "third", "fourth"):
            fake.inject_message(source="+15557770000", text=text)
        await sink.wait(4)
    assert sink.entered == ["first", "second", "third", "fourth"]
    assert sink.peak >= 2
