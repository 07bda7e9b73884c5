"""The channel pipeline without Ray (tests/channels/service_rig.py), each message answered
once: duplicates and replay, send failures, refusals, an unavailable agent or store, stuck
detection, done marks, typing, and the link's state."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from collections.abc import AsyncIterator

import msgspec
import pytest

from moltbot.channels.service import SORRY
from moltbot.clock import FakeClock
from moltbot.errors import Unavailable
from tests.channels.service_rig import (
    OPEN,
    OPTS,
    Rig,
    dm,
    running,
    until,
)
from tests.fakes.telegram_api import FakeTelegram

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
async def fake() -> AsyncIterator[FakeTelegram]:
    async with FakeTelegram() as f:
        yield f


async def test_duplicate_delivery_is_answered_once(fake: FakeTelegram) -> None:
    rig = Rig(fake, OPEN)
    msg = dm("once please")
    async with running(rig):
        await rig.service.sink(msg)
        await rig.service.sink(msg)  # the platform re-delivers (offset not yet committed)
        await fake.wait_sent(1)
        await until(lambda: msg.id in rig.store.done)
        await rig.service.sink(msg)  # and once more after it was done
        await asyncio.sleep(0.1)
    assert rig.replies() == {"[offline] you said: once please": 1}
    assert rig.service.counts["duplicates"] == 2


async def test_pending_messages_are_replayed_once_even_when_redelivered(
    fake: FakeTelegram,
) -> None:
    rig = Rig(fake, OPEN)
    # the platform re-delivers the second one (its offset was never committed) ...
    fake.inject_message(chat_id=43, user_id=43, text="left over 2")
    live_id = f"telegram:main:43:{fake.updates[-1]['message']['message_id']}"
    # ... which a previous incarnation had journaled, with another one, before crashing
    for m in (dm("left over 1", mid=1), dm("left over 2", sender="43", mid=0)):
        await rig.store.accept(msgspec.structs.replace(m, id=live_id) if m.sender_id == "43" else m)
    async with running(rig):
        await fake.wait_sent(2)
        await until(lambda: len(rig.store.done) == 2)
        await asyncio.sleep(0.2)
    assert rig.replies() == {
        "[offline] you said: left over 1": 1,
        "[offline] you said: left over 2": 1,
    }
    assert rig.service.counts["duplicates"] == 1 and rig.agent.turns.total() == 2
    assert await rig.store.pending() == []


async def test_a_message_in_flight_is_not_queued_again_by_replay(fake: FakeTelegram) -> None:
    rig = Rig(fake, OPEN)
    msg = dm("in flight")
    await rig.service.sink(msg)  # accepted and queued; no worker runs yet
    assert await rig.service.replay([msg]) == 0
    assert rig.service.queue_depth() == 1
    assert rig.service.counts["deduplicated"] == 1


async def test_a_duplicate_journaled_by_a_lost_accept_is_still_answered(
    fake: FakeTelegram,
) -> None:
    rig = Rig(fake, OPEN)
    msg = dm("journaled, reply lost")
    await rig.store.accept(msg)  # the store journaled it, then restarted before answering
    await rig.service.sink(msg)  # the retried accept says "duplicate"
    assert rig.service.queue_depth() == 1
    await rig.service.sink(msg)  # a real duplicate now: in flight
    assert rig.service.queue_depth() == 1


async def test_send_failures_keep_the_message_pending_until_it_goes_out(
    fake: FakeTelegram,
) -> None:
    rig = Rig(fake, OPEN)
    fake.fail("sendMessage", 12)  # more than one send's retry deadline
    fake.inject_message(chat_id=42, user_id=42, text="are you there")
    async with running(rig):
        await until(lambda: rig.service.counts["send_retries"] >= 1)
        assert [m.text for m in await rig.store.pending()] == ["are you there"]
        await fake.wait_sent(1)
        await until(lambda: rig.store.done)
    assert rig.replies() == {"[offline] you said: are you there": 1}
    assert fake.calls["sendMessage"] == 13
    assert rig.agent.turns.total() == 1  # the turn ran once; only the send was retried


async def test_refused_reply_is_marked_done_not_retried_forever(fake: FakeTelegram) -> None:
    rig = Rig(fake, OPEN)
    fake.fail("sendMessage", 1, status=400)
    fake.inject_message(chat_id=42, user_id=42, text="refuse me")
    async with running(rig):
        await until(lambda: rig.store.done)
    assert fake.sent == [] and fake.calls["sendMessage"] == 1
    assert rig.service.counts["send_rejected"] == 1


async def test_agent_unavailable_is_retried_and_a_broken_agent_gets_an_apology(
    fake: FakeTelegram,
) -> None:
    rig = Rig(fake, OPEN)
    rig.agent.fail = [Unavailable("agents/agent-0 is not available right now")] * 3
    await rig.store.accept(dm("first", mid=1))
    async with running(rig):
        await fake.wait_sent(1)
        rig.agent.fail = [RuntimeError("secret-token-in-message")] * OPTS.answer_attempts
        await rig.service.sink(dm("second", mid=2))
        await fake.wait_sent(2)
        await until(lambda: len(rig.store.done) == 2)
    assert [s["plain"] for s in fake.sent] == ["[offline] you said: first", SORRY]
    assert "secret" not in fake.sent[1]["plain"]


async def test_store_down_fails_the_sink_so_the_offset_is_not_committed(
    fake: FakeTelegram,
) -> None:
    rig = Rig(fake, OPEN)
    rig.store.down = 1
    fake.inject_message(chat_id=42, user_id=42, text="keep me")
    with pytest.raises(ExceptionGroup) as info:
        async with running(rig):
            await asyncio.sleep(5)
    assert info.group_contains(Unavailable)
    # a new incarnation gets the same update again and answers it
    rig2 = Rig(fake, OPEN)
    async with running(rig2):
        await fake.wait_sent(1)
    assert rig2.replies() == {"[offline] you said: keep me": 1}


async def test_stuck_when_nothing_received_for_stuck_after(fake: FakeTelegram) -> None:
    clock = FakeClock()
    rig = Rig(fake, OPEN, clock=clock)
    assert rig.service.problem() is None
    clock.advance(OPTS.stuck_after_s + 1)
    assert rig.service.problem() == f"no receive for {OPTS.stuck_after_s + 1:.0f}s"
    assert rig.service.status()["last_activity_s"] == OPTS.stuck_after_s + 1


def hold_marks(rig: Rig) -> asyncio.Event:
    """The rig's done marks wait until the returned event is set (a slow journal)."""
    gate = asyncio.Event()
    marked = rig.store.mark_done_many

    async def held_marks(ids: list[str]) -> list[bool]:
        await gate.wait()
        return await marked(ids)

    rig.service.ports = dataclasses.replace(rig.service.ports, mark_done_many=held_marks)
    return gate


async def test_a_worker_does_not_wait_for_the_done_mark_of_its_last_reply(
    fake: FakeTelegram,
) -> None:
    """Done marks are written behind the workers (the marker), so the next message of the same
    chat is answered while the journal still writes the last one's mark."""
    rig = Rig(fake, OPEN)
    journal_slow = hold_marks(rig)
    fake.inject_message(chat_id=42, user_id=42, text="one")
    async with running(rig):
        await fake.wait_sent(1)
        fake.inject_message(chat_id=42, user_id=42, text="two")
        await fake.wait_sent(2)  # answered although "one" is not marked done yet
        assert not rig.store.done
        journal_slow.set()
        await until(lambda: len(rig.store.done) == 2)
    assert rig.replies() == {"[offline] you said: one": 1, "[offline] you said: two": 1}


async def test_done_marks_still_queued_at_a_stop_are_written(fake: FakeTelegram) -> None:
    rig = Rig(fake, OPEN)
    gate = hold_marks(rig)
    for n in range(3):
        fake.inject_message(chat_id=40 + n, user_id=40 + n, text=f"m{n}")
    task = asyncio.ensure_future(rig.service.run())
    try:
        await fake.wait_sent(3)
        asyncio.get_running_loop().call_later(0.2, gate.set)  # the journal answers late
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    finally:
        await rig.adapter.close()
    assert len(rig.store.done) == 3 and rig.store.pending_ids() == []


async def test_a_quick_answer_shows_no_typing_a_slow_one_shows_it_before_the_reply(
    fake: FakeTelegram,
) -> None:
    rig = Rig(fake, OPEN)
    rig.service.opt = msgspec.structs.replace(OPTS, typing_after_s=0.1)
    fake.inject_message(chat_id=42, user_id=42, text="quick")
    async with running(rig):
        await fake.wait_sent(1)
        assert fake.actions == []  # answered before the indicator was due
        rig.agent.delay = 0.4
        fake.inject_message(chat_id=42, user_id=42, text="slow")
        await fake.wait_sent(2)
    assert [a["action"] for a in fake.actions] == ["typing"]
    assert rig.replies() == {"[offline] you said: quick": 1, "[offline] you said: slow": 1}


async def test_a_hanging_typing_indicator_does_not_hold_the_reply(fake: FakeTelegram) -> None:
    rig = Rig(fake, OPEN)
    rig.service.opt = msgspec.structs.replace(OPTS, typing_after_s=0.0, typing_max_s=0.2)

    async def hangs(_chat_id: str) -> None:
        await asyncio.sleep(30)

    rig.adapter.typing = hangs  # type: ignore[method-assign]
    fake.inject_message(chat_id=42, user_id=42, text="hello")
    async with running(rig):
        await asyncio.wait_for(fake.wait_sent(1), 3)
    assert rig.replies() == {"[offline] you said: hello": 1}


async def test_the_link_says_connected_retrying_with_the_reason_then_connected_again(
    fake: FakeTelegram,
) -> None:
    """Telegram answers 502 for a while: the account's link says it is retrying (attempt,
    when next, why), is not called stuck meanwhile, and is connected again once it answers;
    messages in and out are timed."""
    rig = Rig(fake, OPEN)
    async with running(rig):
        await until(lambda: rig.service.link.state == "connected")
        fake.fail("getUpdates", 4, 502)
        await until(lambda: rig.service.link.state == "retrying")
        link = rig.service.link.snapshot()
        assert link["attempt"] >= 1 and link["next_in_s"] >= 0
        assert link["reason"] == "Telegram is unavailable right now"
        rig.adapter.last_activity -= OPTS.stuck_after_s + 1  # long silent, but retrying
        assert rig.service.problem() is None
        await until(lambda: rig.service.link.state == "connected", 30)
        assert rig.service.link.last_in is None
        fake.inject_message(chat_id=42, user_id=42, text="back?")
        await until(lambda: rig.replies()["[offline] you said: back?"] == 1)
        await until(lambda: rig.service.link.last_out is not None)
        assert rig.service.status()["link"]["last_in"] is not None


async def test_the_turn_runs_beside_the_journal_write_and_the_reply_waits_for_it(
    fake: FakeTelegram,
) -> None:
    rig = Rig(fake, OPEN)
    rig.store.hold = asyncio.Event()  # the journal write is slow
    msg = dm("quick one")
    async with running(rig):
        sunk = asyncio.create_task(rig.service.sink(msg))
        await until(lambda: rig.agent.turns[msg.id] == 1)  # answered before it is on disk
        await asyncio.sleep(0.1)
        assert not sunk.done()  # the platform is not acknowledged before the journal has it
        assert fake.sent == [] and msg.id not in rig.store.journal  # nor is the reply sent
        rig.store.hold.set()
        await sunk
        await fake.wait_sent(1)
        await until(lambda: msg.id in rig.store.done)
    assert rig.replies() == {"[offline] you said: quick one": 1}
    assert rig.service.counts["accepted"] == 1


async def test_a_failed_journal_write_sends_no_reply_though_the_turn_ran(
    fake: FakeTelegram,
) -> None:
    rig = Rig(fake, OPEN)
    rig.store.hold, rig.store.down = asyncio.Event(), 1
    msg = dm("not on disk")
    async with running(rig):
        sunk = asyncio.create_task(rig.service.sink(msg))
        await until(lambda: rig.agent.turns[msg.id] == 1)
        rig.store.hold.set()  # ... and then the write fails
        with pytest.raises(Unavailable):
            await sunk
        await asyncio.sleep(0.2)
        assert fake.sent == [] and rig.service.queue_depth() == 0
        # the platform delivers it again (its offset was not committed): answered then, once
        await rig.service.sink(msg)
        await fake.wait_sent(1)
    assert rig.replies() == {"[offline] you said: not on disk": 1}
    assert rig.agent.turns[msg.id] == 1  # the recorded reply: the model is not asked twice


async def test_a_duplicate_answered_before_sends_nothing(fake: FakeTelegram) -> None:
    rig = Rig(fake, OPEN)
    msg = dm("answered long ago")
    await rig.store.accept(msg)
    await rig.store.mark_done(msg.id)  # answered by an earlier incarnation
    async with running(rig):
        await rig.service.sink(msg)  # re-delivered after that incarnation crashed
        await until(lambda: rig.agent.turns[msg.id] == 1 and rig.service.queue_depth() == 0)
        await asyncio.sleep(0.2)
    assert fake.sent == [] and rig.service.counts["duplicates"] == 1
