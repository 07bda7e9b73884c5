"""FairQueue: one chat's jobs in order and one at a time; chats first come, first served."""

from __future__ import annotations

import asyncio

import pytest

from moltbot.channels.dispatch import FairQueue

pytestmark = pytest.mark.timeout(10)


async def test_a_chat_does_not_wait_behind_another_chats_backlog() -> None:
    q: FairQueue[str] = FairQueue(16)
    for job in ("a1", "a2", "a3"):
        await q.put("a", job)
    await q.put("b", "b1")
    key, job = await q.get()
    assert (key, job) == ("a", "a1")
    # a's next job waits for a1; b's job goes next (the old shard design put it behind a2, a3)
    assert await q.get() == ("b", "b1")
    q.done("a")
    q.done("b")
    assert await q.get() == ("a", "a2")
    q.done("a")
    assert await q.get() == ("a", "a3")
    assert q.qsize() == 0


async def test_one_job_of_a_chat_at_a_time() -> None:
    q: FairQueue[int] = FairQueue(8)
    await q.put("a", 1)
    await q.put("a", 2)
    assert await q.get() == ("a", 1)
    second = asyncio.ensure_future(q.get())
    await asyncio.sleep(0.01)
    assert not second.done()  # 2 waits until 1 is done
    q.done("a")
    assert await asyncio.wait_for(second, 1) == ("a", 2)


async def test_chats_are_served_in_the_order_they_became_ready() -> None:
    q: FairQueue[str] = FairQueue(8)
    await q.put("a", "a1")
    await q.put("b", "b1")
    await q.put("a", "a2")
    assert await q.get() == ("a", "a1")
    assert await q.get() == ("b", "b1")
    await q.put("c", "c1")
    q.done("a")  # a is ready again after c, which was queued first
    assert await q.get() == ("c", "c1")
    assert await q.get() == ("a", "a2")


async def test_put_waits_for_room() -> None:
    q: FairQueue[int] = FairQueue(2)
    await q.put("a", 1)
    await q.put("b", 2)
    third = asyncio.ensure_future(q.put("c", 3))
    await asyncio.sleep(0.01)
    assert not third.done() and q.qsize() == 2
    await q.get()  # taking a job makes room
    await asyncio.wait_for(third, 1)
    assert q.qsize() == 2


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError):
        FairQueue(0)
