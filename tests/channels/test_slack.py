"""SlackAdapter through the real slack-sdk (AsyncWebClient + SocketModeClient) against the fake."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from moltbot.channels.slack import SlackAdapter
from moltbot.clock import FakeClock
from moltbot.errors import PlatformRejected, PlatformUnavailable
from moltbot.messages import OutboundMessage
from tests.channels.conftest import FAST, Collector, Gauge, Sleeps, StoreDown, running
from tests.fakes.slack_api import APP_TOKEN, BOT_TOKEN, FakeSlack

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def fake() -> AsyncIterator[FakeSlack]:
    async with FakeSlack() as f:
        yield f


def make(fake: FakeSlack, **kw: object) -> SlackAdapter:
    args: dict[str, object] = {
        "account": "work",
        "bot_token": BOT_TOKEN,
        "app_token": APP_TOKEN,
        "api_base": fake.api_base,
        "ping_interval": 0.2,
        "retry": FAST,
    }
    args.update(kw)
    return SlackAdapter(**args)  # type: ignore[arg-type]


def out(text: str, chat_id: str = "D100", **kw: object) -> OutboundMessage:
    return OutboundMessage(channel="slack", account="work", chat_id=chat_id, text=text, **kw)  # type: ignore[arg-type]


async def test_connect_returns_identity(fake: FakeSlack) -> None:
    a = make(fake)
    try:
        me = await a.connect()
    finally:
        await a.close()
    assert me == {"id": "UBOT0001", "bot_id": "BBOT0001", "team": "T0001", "name": "moltbot"}


@pytest.mark.parametrize("which", ["bot_token", "app_token"])
async def test_bad_token_rejected(fake: FakeSlack, which: str) -> None:
    a = make(fake, **{which: "xoxb-leaked-secret"})
    with pytest.raises(PlatformRejected) as info:
        await a.connect()
    await a.close()
    assert "leaked-secret" not in str(info.value) and "leaked-secret" not in repr(a)
    assert "invalid_auth" in str(info.value)


async def test_dm_reaches_sink_and_is_acked(fake: FakeSlack) -> None:
    sink = Collector()
    env = fake.inject_message(channel="D100", user="U42", text="hello <b>", ts="1700000000.000001")
    async with running(make(fake), sink):
        [msg] = await sink.wait(1)
        await fake.wait_acked(1)
    assert msg.id == "slack:work:D100:1700000000.000001"
    assert (msg.chat_id, msg.sender_id, msg.text) == ("D100", "U42", "hello <b>")
    assert not msg.is_group and not msg.mentioned
    assert msg.session_key == "slack:work:dm:U42"
    assert fake.acked == [env] and fake.pending == {}


async def test_channel_mentions(fake: FakeSlack) -> None:
    sink = Collector()
    fake.inject_message(channel="C1", user="U1", text="lunch?", channel_type="channel")
    ts = "1700000000.000777"
    fake.inject_message(
        channel="C1", user="U2", text="<@UBOT0001> summarise", channel_type="channel", ts=ts
    )
    fake.inject_mention(channel="C1", user="U2", text="<@UBOT0001> summarise", ts=ts)
    fake.inject_message(
        channel="C1",
        user="U3",
        text="thread reply",
        channel_type="channel",
        thread_ts="1700000000.000001",
    )
    fake.inject_message(channel="C1", user="UBOT0001", text="my own echo", channel_type="channel")
    fake.inject_message(
        channel="C1", user="U4", text="edited", channel_type="channel", subtype="message_changed"
    )
    async with running(make(fake), sink):
        await fake.wait_acked(6)
    msgs = sink.messages
    assert [(m.text, m.mentioned) for m in msgs] == [
        ("lunch?", False),
        ("summarise", True),
        ("thread reply", False),
    ]
    assert all(m.is_group for m in msgs)
    assert msgs[2].thread_id == "1700000000.000001"
    assert msgs[0].session_key == "slack:work:group:C1"


async def test_envelope_not_acked_when_sink_fails(fake: FakeSlack) -> None:
    ok = fake.inject_message(channel="D100", user="U42", text="first")
    bad = fake.inject_message(channel="D100", user="U42", text="second")
    broken = Collector(fail_on=lambda m: m.text == "second")
    a = make(fake)
    with pytest.raises(StoreDown):
        await asyncio.wait_for(a.run(broken), 5)
    await a.close()
    assert fake.acked == [ok] and list(fake.pending) == [bad]

    sink = Collector()
    async with running(make(fake), sink):
        [msg] = await sink.wait(1)
        await fake.wait_acked(2)
    assert msg.text == "second" and fake.connections == 2 and fake.pending == {}


async def test_reconnects_after_socket_drop(fake: FakeSlack) -> None:
    sink = Collector()
    async with running(make(fake), sink):
        fake.inject_message(channel="D100", user="U42", text="before")
        await sink.wait(1)
        await fake.disconnect()
        fake.inject_message(channel="D100", user="U42", text="after")
        await sink.wait(2)
    assert [m.text for m in sink.messages] == ["before", "after"]
    assert fake.connections >= 2


async def test_send_chunks_to_limit_as_mrkdwn(fake: FakeSlack) -> None:
    a = make(fake)
    text = "\n\n".join(f"**Section {i}** <!channel> & more " * 40 for i in range(8))
    try:
        ids = await a.send(out(text, thread_id="1700000000.000001"))
    finally:
        await a.close()
    assert len(ids) == len(fake.sent) > 1
    for s in fake.sent:
        assert len(s["text"]) <= 3900
        assert s["thread_ts"] == "1700000000.000001" and s["channel"] == "D100"
        assert "<!channel>" not in s["text"]
    assert fake.sent[0]["text"].startswith("*Section 0* &lt;!channel&gt; &amp; more")


async def test_429_honours_retry_after(fake: FakeSlack, sleeps: Sleeps) -> None:
    fake.fail("chat.postMessage", 1, status=429, retry_after=2)
    a = make(fake, sleep=sleeps)
    try:
        ids = await a.send(out("hello"))
    finally:
        await a.close()
    assert len(ids) == 1 and len(fake.sent) == 1 and sleeps.delays == [2.0]


async def test_5xx_then_success_delivers_once(fake: FakeSlack, sleeps: Sleeps) -> None:
    fake.fail("chat.postMessage", 3, status=503)
    a = make(fake, sleep=sleeps)
    try:
        ids = await a.send(out("hello"))
    finally:
        await a.close()
    assert len(ids) == 1 and [s["text"] for s in fake.sent] == ["hello"]
    assert len(sleeps.delays) == 3


async def test_5xx_past_deadline_raises_unavailable(fake: FakeSlack) -> None:
    clock = FakeClock()

    async def sleep(d: float) -> None:
        clock.advance(d)
        await asyncio.sleep(0)

    fake.fail("chat.postMessage", 1000, status=500)
    a = make(fake, sleep=sleep, clock=clock)
    with pytest.raises(PlatformUnavailable):
        await a.send(out("hello"))
    await a.close()
    assert fake.sent == []


async def test_401_is_rejected_without_retry(fake: FakeSlack) -> None:
    fake.fail("chat.postMessage", 5, status=401)
    a = make(fake)
    with pytest.raises(PlatformRejected):
        await a.send(out("hello"))
    await a.close()
    assert fake.calls["chat.postMessage"] == 1


async def test_unreachable_is_unavailable() -> None:
    clock = FakeClock()

    async def sleep(d: float) -> None:
        clock.advance(d)

    a = SlackAdapter(
        account="work",
        bot_token=BOT_TOKEN,
        app_token=APP_TOKEN,
        api_base="http://127.0.0.1:9/api/",
        retry=FAST,
        clock=clock,
        sleep=sleep,
    )
    with pytest.raises(PlatformUnavailable):
        await a.send(out("hello"))
    await a.close()


async def test_typing_is_a_noop(fake: FakeSlack) -> None:
    a = make(fake)
    await a.typing("D100")
    await a.close()
    assert sum(fake.calls.values()) == 0


async def test_tokens_never_logged(fake: FakeSlack, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    fake.fail("chat.postMessage", 2, status=500)
    sink = Collector()
    fake.inject_message(channel="D100", user="U42", text="hi")
    a = make(fake)
    async with running(a, sink):
        await sink.wait(1)
        await a.send(out("hello"))
    assert caplog.records
    assert BOT_TOKEN not in caplog.text and APP_TOKEN not in caplog.text


async def test_run_retries_a_failing_connect(fake: FakeSlack) -> None:
    fake.fail("apps.connections.open", 2, status=500)
    fake.inject_message(channel="D100", user="U42", text="eventually")
    sink = Collector()
    async with running(make(fake), sink):
        [msg] = await sink.wait(1)
    assert msg.text == "eventually" and fake.calls["apps.connections.open"] == 3


async def test_waiting_envelopes_are_sunk_together_and_acked_but_the_refused(
    fake: FakeSlack,
) -> None:
    """Envelopes that wait on the socket together reach the sink together; each is acked once
    its message is journaled, the refused one is not (Slack re-delivers it)."""
    sink = Gauge(hold=0.3, fail_on=lambda m: m.text == "bad")
    a = make(fake)
    async with asyncio.timeout(10):
        run = asyncio.ensure_future(a.run(sink))
        fake.inject_message(channel="D100", user="U42", text="warm")
        await sink.wait(1)  # connected; the next ones queue while "warm" is held
        late = [fake.inject_message(channel="D100", user="U42", text=t) for t in ("a", "bad", "b")]
        with pytest.raises(StoreDown):
            await run
    await a.close()
    assert sink.entered == ["warm", "a", "bad", "b"] and sink.peak >= 2
    assert set(fake.acked) >= {late[0], late[2]} and late[1] not in fake.acked
    assert list(fake.pending) == [late[1]]
