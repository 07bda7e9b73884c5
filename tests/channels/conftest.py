"""Shared helpers for the channel adapter tests (real SDKs against the local fakes)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest

from moltbot.channels.retry import RetryPolicy
from moltbot.messages import InboundMessage

FAST = RetryPolicy(base=0.01, cap=0.05, deadline=3.0)


class StoreDown(Exception):
    """What a sink raises when the journal write failed."""


class Collector:
    """A sink: records messages; raises StoreDown for messages ``fail_on`` selects."""

    def __init__(self, fail_on: Callable[[InboundMessage], bool] | None = None) -> None:
        self.messages: list[InboundMessage] = []
        self.fail_on = fail_on

    async def __call__(self, msg: InboundMessage) -> None:
        if self.fail_on is not None and self.fail_on(msg):
            raise StoreDown("journal unavailable")
        self.messages.append(msg)

    async def wait(self, n: int, timeout: float = 5.0) -> list[InboundMessage]:
        async with asyncio.timeout(timeout):
            while len(self.messages) < n:
                await asyncio.sleep(0.01)
        return self.messages


@asynccontextmanager
async def running(adapter: Any, sink: Collector) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``adapter.run(sink)`` in a task group; cancel it (and close the adapter) at exit."""
    try:
        async with asyncio.TaskGroup() as tg:
            task = tg.create_task(adapter.run(sink))
            yield task
            task.cancel()
    finally:
        await adapter.close()


class Sleeps:
    """An injected sleep that records the delays and only yields."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(0)


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


class Gauge(Collector):
    """A sink that takes ``hold`` seconds per message and records how many it held at once
    (``peak``) and the order messages came in (``entered``)."""

    def __init__(
        self, hold: float = 0.05, fail_on: Callable[[InboundMessage], bool] | None = None
    ) -> None:
        super().__init__(fail_on)
        self.hold = hold
        self.inside = 0
        self.peak = 0
        self.entered: list[str] = []

    async def __call__(self, msg: InboundMessage) -> None:
        self.entered.append(msg.text)
        self.inside += 1
        self.peak = max(self.peak, self.inside)
        try:
            await asyncio.sleep(self.hold)
            await super().__call__(msg)
        finally:
            self.inside -= 1
