"""GroupCommit: concurrent submits share a flush; nothing waits for a timer; errors per item."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import pytest

from moltbot.batching import GroupCommit
from moltbot.errors import NotFound, Unavailable

pytestmark = pytest.mark.timeout(10)


class Flusher:
    """Records each flush; holds it while ``gate`` is clear; answers ``item * 10``."""

    def __init__(self) -> None:
        self.calls: list[list[int]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.entered = asyncio.Event()
        self.per_item: dict[int, BaseException] = {}
        self.whole: BaseException | None = None

    async def __call__(self, items: list[int]) -> Sequence[int | BaseException]:
        self.calls.append(list(items))
        self.entered.set()
        await self.gate.wait()
        if self.whole is not None:
            raise self.whole
        return [self.per_item.get(i, i * 10) for i in items]


@asynccontextmanager
async def running(batch: GroupCommit[int, int]) -> AsyncIterator[None]:
    async with asyncio.TaskGroup() as tg:
        task = tg.create_task(batch.run())
        await asyncio.sleep(0)
        yield
        task.cancel()


async def test_one_item_goes_at_once() -> None:
    f = Flusher()
    batch = GroupCommit[int, int](f)
    async with running(batch):
        assert await asyncio.wait_for(batch.submit(1), 1) == 10
    assert f.calls == [[1]]


async def test_items_submitted_during_a_flush_travel_together_in_order() -> None:
    f = Flusher()
    batch = GroupCommit[int, int](f)
    async with running(batch):
        f.gate.clear()
        first = asyncio.ensure_future(batch.submit(1))
        await f.entered.wait()  # batch [1] is in flight
        rest = [asyncio.ensure_future(batch.submit(i)) for i in (2, 3, 4, 5)]
        await asyncio.sleep(0.01)
        f.gate.set()
        assert await first == 10
        assert await asyncio.gather(*rest) == [20, 30, 40, 50]
    assert f.calls == [[1], [2, 3, 4, 5]]
    assert batch.batches == 2 and batch.mean_batch() == 2.5


async def test_max_batch_splits_a_long_queue() -> None:
    f = Flusher()
    batch = GroupCommit[int, int](f, max_batch=2)
    async with running(batch):
        f.gate.clear()
        first = asyncio.ensure_future(batch.submit(0))
        await f.entered.wait()
        rest = [asyncio.ensure_future(batch.submit(i)) for i in (1, 2, 3)]
        await asyncio.sleep(0.01)
        f.gate.set()
        await asyncio.gather(first, *rest)
    assert f.calls == [[0], [1, 2], [3]]


async def test_an_item_error_reaches_only_its_caller() -> None:
    f = Flusher()
    f.per_item[2] = NotFound("no such thing")
    batch = GroupCommit[int, int](f)
    async with running(batch):
        f.gate.clear()
        first = asyncio.ensure_future(batch.submit(1))
        await f.entered.wait()
        two, three = batch.submit(2), batch.submit(3)
        rest = asyncio.gather(two, three, return_exceptions=True)
        await asyncio.sleep(0.01)
        f.gate.set()
        await first
        got = await rest
    assert isinstance(got[0], NotFound) and got[1] == 30


async def test_a_failed_flush_fails_every_item_of_its_batch_and_the_loop_goes_on() -> None:
    f = Flusher()
    f.whole = Unavailable("store is not available right now")
    batch = GroupCommit[int, int](f)
    async with running(batch):
        with pytest.raises(Unavailable):
            await batch.submit(1)
        f.whole = None
        assert await batch.submit(2) == 20


async def test_without_the_loop_a_submit_flushes_alone() -> None:
    f = Flusher()
    batch = GroupCommit[int, int](f)
    assert not batch.running
    assert await batch.submit(7) == 70
    assert f.calls == [[7]]


async def test_stopping_fails_what_waits_with_unavailable() -> None:
    f = Flusher()
    batch = GroupCommit[int, int](f)
    f.gate.clear()
    loop_task = asyncio.ensure_future(batch.run())
    await asyncio.sleep(0)
    first = asyncio.ensure_future(batch.submit(1))
    await f.entered.wait()
    waiting = asyncio.ensure_future(batch.submit(2))
    await asyncio.sleep(0.01)
    loop_task.cancel()
    with pytest.raises(Unavailable):
        await first  # in flight when stopped: its outcome is unknown
    with pytest.raises(Unavailable):
        await waiting  # never sent
    assert not batch.running
    assert f.calls == [[1]]


async def test_a_cancelled_caller_is_not_sent() -> None:
    f = Flusher()
    batch = GroupCommit[int, int](f)
    async with running(batch):
        f.gate.clear()
        first = asyncio.ensure_future(batch.submit(1))
        await f.entered.wait()
        gone = asyncio.ensure_future(batch.submit(2))
        kept = asyncio.ensure_future(batch.submit(3))
        await asyncio.sleep(0.01)
        gone.cancel()
        f.gate.set()
        await first
        assert await kept == 30
    assert f.calls == [[1], [3]]


async def test_waiting_is_bounded() -> None:
    f = Flusher()
    batch = GroupCommit[int, int](f, max_waiting=2)
    async with running(batch):
        f.gate.clear()
        subs = [asyncio.ensure_future(batch.submit(i)) for i in range(4)]
        await asyncio.sleep(0.01)
        assert f.calls == [[0, 1]]  # 0 and 1 hold the room; 2 and 3 wait for it
        assert not any(s.done() for s in subs)
        f.gate.set()
        assert await asyncio.gather(*subs) == [0, 10, 20, 30]
    assert f.calls == [[0, 1], [2, 3]]
