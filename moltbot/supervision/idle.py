"""``IdleWatch``: when a child started on demand has been idle long enough to end.

A child the tree starts on first use (``ChildSpec.on_demand``: the tool sandboxes, the agents)
ends normally once ``idle_stop_s`` passed with no call running and nothing else holding it
(an approval waiting, a turn's transcript write); its supervisor then marks it idle and starts
it again on the next use. A call that arrives as it ends is refused with ``Dormant`` before
anything runs, so the caller may send it again to the next incarnation.

Pure asyncio, no Ray: the actor wraps each call in :meth:`call` and runs :meth:`wait_idle` as
its ``main``.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator

from moltbot.errors import Dormant

CHECK_S = 5.0  # how often an idle child looks again (something may still hold it)


class IdleWatch:
    def __init__(
        self, name: str, idle_stop_s: float, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.name = name
        self.idle_stop_s = idle_stop_s  # 0: never ends by itself
        self._clock = clock
        self.calls = 0  # running now
        self.last = clock()  # when the last call ended (or the child started)
        self.ending = False  # idle: takes no more calls

    @contextlib.contextmanager
    def call(self) -> Iterator[None]:
        """Around one call: refused (``Dormant``) once ending; counted while it runs."""
        if self.ending:
            raise Dormant(f"{self.name} is ending (idle); nothing ran")
        self.calls += 1
        try:
            yield
        finally:
            self.calls -= 1
            self.last = self._clock()

    def idle_for(self) -> float:
        return 0.0 if self.calls else self._clock() - self.last

    def touch(self, at: float | None = None) -> None:
        """Something happened (at ``at``, on this watch's clock; default now): idle from then."""
        self.last = max(self.last, self._clock() if at is None else at)

    async def wait_idle(
        self, held: Callable[[], bool] = lambda: False, check_s: float = CHECK_S
    ) -> None:
        """Return once idle for ``idle_stop_s`` with nothing ``held``; from then on every
        :meth:`call` is refused. Never returns when ``idle_stop_s`` is 0."""
        if self.idle_stop_s <= 0:
            await asyncio.Event().wait()
        while True:
            busy = held()  # first: it may ``touch`` what it saw
            left = self.idle_stop_s - self.idle_for()
            if left <= 0 and not self.calls and not busy:
                self.ending = True
                return
            await asyncio.sleep(max(left, min(self.idle_stop_s, check_s)))
