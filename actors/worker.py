"""A plain child of no subsystem: tests and benchmarks build trees of it."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
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
            await self._meet(began + self.setup_s)
        else:
            await asyncio.sleep(self.setup_s)
        self.setup_span = (began, time.time())

    async def _meet(self, until: float) -> None:
        folder = Path(self.meet)
        (folder / f"{self.path.replace('/', '_')}.{self.incarnation}").touch()
        while time.time() < until and len(list(folder.iterdir())) < self.meet_count:
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
