"""``Finisher``: ends turns whose reply is already on its way.

A turn yields its final reply before it writes the reply and its done mark to the transcript
(``moltbot.agent.service.idempotent_turn``): the write is not between the model's last token
and the reply being sent. ``AgentService.answer`` returns the reply at once and hands the rest
of the turn here; the turn still holds its session's gate until the write is done, so the
session's next turn sees it. What a lost write costs: the message is marked done in the
inbound journal once its reply is sent, so it is not answered again; the transcript lacks
that exchange (logged). Exactly-once replies do not depend on this write.

The owner runs :meth:`run` (in its TaskGroup). While it does not run, or when ``limit`` turns
are already being finished, :meth:`hand` finishes the turn itself (the caller waits, as it
did before). On stop, turns being finished get ``grace_s`` to write before they are cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator
from typing import Any

from moltbot.grace import within_grace

log = logging.getLogger(__name__)

Turn = AsyncGenerator[Any, None]


async def finish(turn: Turn, name: str = "agent") -> None:
    """Run ``turn`` to its end (its transcript write), logging a failure by its code."""
    try:
        async with contextlib.aclosing(turn) as rest:
            async for _event in rest:
                pass
    except Exception as exc:  # the reply is out already: nobody else to tell
        log.error(
            "%s: a turn's transcript write failed after its reply: %s",
            name,
            getattr(exc, "code", type(exc).__name__),
        )


class Finisher:
    def __init__(self, *, limit: int = 256, grace_s: float = 3.0, name: str = "agent") -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self._queue: asyncio.Queue[Turn] = asyncio.Queue(limit)
        self._grace_s = grace_s
        self._name = name
        self._running = False
        self.busy = 0  # turns being finished now

    @property
    def running(self) -> bool:
        return self._running

    @property
    def queued(self) -> int:
        """Turns handed over and not yet started."""
        return self._queue.qsize()

    async def hand(self, turn: Turn) -> None:
        """Have ``turn`` finished: in the background while :meth:`run` runs, else now."""
        if self._running:
            try:
                self._queue.put_nowait(turn)
                return
            except asyncio.QueueFull:
                pass
        await finish(turn, self._name)

    async def run(self) -> None:
        """Finish what is handed over, each turn in its own task, until cancelled."""
        if self._running:
            raise RuntimeError("the finisher already runs")
        self._running = True
        try:
            async with asyncio.TaskGroup() as tg:
                while True:
                    turn = await self._queue.get()
                    tg.create_task(self._finish(turn))
        finally:
            self._running = False
            rest = [self._queue.get_nowait() for _ in range(self._queue.qsize())]
            if rest:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._grace_s):
                        await asyncio.gather(*(finish(t, self._name) for t in rest))

    async def _finish(self, turn: Turn) -> None:
        """Finish ``turn``; cancelled (a stop), it still gets ``grace_s`` to write."""
        self.busy += 1
        try:
            await within_grace(finish(turn, self._name), self._grace_s)
        finally:
            self.busy -= 1
