"""Group commit: calls made while one batch is in flight travel together in the next one.

A ``GroupCommit`` turns many concurrent ``submit(item)`` calls into few ``flush(items)``
calls. Nothing waits for a timer: when no batch is in flight, an item goes out at once (one
conversation sees no added latency); while a batch is in flight, new items gather and leave
together the moment it returns. Under load, N concurrent callers cost about one flush per
round trip instead of N, which is what makes a durable write (journal + fsync) or an actor call
cheap per message.

The owner runs ``run()`` (in its TaskGroup); stopping it (cancellation) fails the waiting
items with ``Unavailable``. A ``submit`` while ``run()`` is not running flushes its item on its
own, so nothing hangs or is lost before the loop starts or after it ends.

``flush`` returns one outcome per item, in order: a value, or an exception instance for that
item alone (it is raised to that item's caller). If ``flush`` itself raises, every item of the
batch gets that error. Items whose caller was cancelled before the batch left are not sent.
At most ``max_waiting`` items wait at once; further ``submit`` calls wait for room.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from moltbot.errors import Unavailable

T = TypeVar("T")
R = TypeVar("R")


class GroupCommit(Generic[T, R]):
    def __init__(
        self,
        flush: Callable[[list[T]], Awaitable[Sequence[R | BaseException]]],
        *,
        max_batch: int = 256,
        max_waiting: int = 4096,
        name: str = "batch",
    ) -> None:
        if max_batch < 1 or max_waiting < 1:
            raise ValueError("max_batch and max_waiting must be at least 1")
        self._flush = flush
        self._max_batch = max_batch
        self._room = asyncio.Semaphore(max_waiting)
        self._waiting: list[tuple[T, asyncio.Future[R]]] = []
        self._wake = asyncio.Event()
        self._running = False
        self.name = name
        self.batches = 0
        self.items = 0

    @property
    def running(self) -> bool:
        return self._running

    def mean_batch(self) -> float:
        return self.items / self.batches if self.batches else 0.0

    async def submit(self, item: T) -> R:
        """``item``'s outcome, once the batch that carried it returned."""
        if not self._running:
            (outcome,) = await self._send([item])
            if isinstance(outcome, BaseException):
                raise outcome
            return outcome
        async with self._room:
            fut: asyncio.Future[R] = asyncio.get_running_loop().create_future()
            self._waiting.append((item, fut))
            self._wake.set()
            return await fut

    async def run(self) -> None:
        """Send what gathers, a batch at a time, until cancelled."""
        if self._running:
            raise RuntimeError(f"{self.name}: run() is already running")
        self._running = True
        try:
            while True:
                await self._wake.wait()
                self._wake.clear()
                while self._waiting:
                    batch = self._waiting[: self._max_batch]
                    del self._waiting[: self._max_batch]
                    await self._deliver([(i, f) for i, f in batch if not f.done()])
        finally:
            self._running = False
            stopped = Unavailable(f"{self.name} stopped before this was written")
            for _item, fut in self._waiting:
                if not fut.done():
                    fut.set_exception(stopped)
            self._waiting.clear()

    async def _deliver(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        if not batch:
            return
        try:
            outcomes = await self._send([item for item, _ in batch])
        except asyncio.CancelledError:
            lost = Unavailable(f"{self.name} stopped while this was being written")
            for _item, fut in batch:
                if not fut.done():
                    fut.set_exception(lost)
            raise
        except Exception as exc:  # the whole batch failed: each caller sees why
            outcomes = [exc] * len(batch)
        for (_item, fut), outcome in zip(batch, outcomes, strict=True):
            if fut.done():  # its caller was cancelled meanwhile
                continue
            if isinstance(outcome, BaseException):
                fut.set_exception(outcome)
            else:
                fut.set_result(outcome)

    async def _send(self, items: list[T]) -> Sequence[R | BaseException]:
        outcomes = await self._flush(items)
        if len(outcomes) != len(items):
            raise RuntimeError(f"{self.name}: flush returned {len(outcomes)} of {len(items)}")
        self.batches += 1
        self.items += len(items)
        return outcomes
