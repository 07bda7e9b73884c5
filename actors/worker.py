"""A plain child of no subsystem: tests and benchmarks build trees of it."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import ray

from actors.base import CHILD_OPTIONS, ChildBase
from moltbot.errors import Dormant


@ray.remote(**CHILD_OPTIONS)
class Worker(ChildBase):
    """A worker that only lives and answers (``echo``); it can end, or fail its setup, on cue."""

    def __init__(
        self,
        *,
        path: str = "",
        exit_after: float | None = None,
        setup_s: float = 0.0,
        fail_from: int = 0,
        dormant_first: bool = False,
        meet: str = "",
        meet_count: int = 0,
        **kw: Any,
    ) -> None:
        super().__init__(path=path, **kw)
        self.exit_after = exit_after
        self.setup_s = setup_s
        self.fail_from = fail_from  # > 0: setup raises from this incarnation on
        self.setup_span = (0.0, 0.0)
        # a folder: setup marks its start there and ends once ``meet_count`` siblings have
        # (or ``setup_s`` has passed): overlapping setups that do not hang on timing
        self.meet, self.meet_count = meet, meet_count
        self.calls = 0
        # True: its first incarnation refuses its first ``echo`` as one ending idle does
        # (``Dormant``, nothing ran) and ends normally (the wake path of ``routing.call``)
        self.dormant_first = dormant_first
        self._ended = asyncio.Event()

    async def setup(self) -> None:
        began = time.time()
        if self.fail_from and self.incarnation >= self.fail_from:
            raise RuntimeError("setup fails on purpose")
        if self.meet:
            await self._meet(self.setup_s)
        else:
            await asyncio.sleep(self.setup_s)
        self.setup_span = (began, time.time())

    def _met(self) -> bool:
        return len(os.listdir(self.meet)) >= self.meet_count

    def _mark(self) -> None:
        name = f"{self.path.replace('/', '_')}.{self.incarnation}"
        with open(os.path.join(self.meet, name), "w"):
            pass

    async def _meet(self, seconds: float) -> None:
        self._mark()
        for _ in range(max(1, int(seconds / 0.02))):  # polled: the siblings are processes
            if self._met():
                return
            await asyncio.sleep(0.02)

    async def main(self) -> None:
        if self.exit_after is None:
            await self._ended.wait()
        else:
            await asyncio.sleep(self.exit_after)

    async def echo(self, value: Any) -> Any:
        if self.dormant_first and self.incarnation <= 1:
            self._ended.set()
            raise Dormant(f"{self.path} is ending (idle); nothing ran")
        self.calls += 1
        return value

    async def figures(self) -> dict[str, Any]:
        return {"calls": self.calls}

    def info(self) -> dict[str, Any]:
        return {**super().info(), "setup_span": list(self.setup_span)}
