"""``FairQueue``: one chat's jobs in order, chats served first come, first served.

The dispatch workers of a channel take jobs from here. A chat (session key) has at most one
job out at a time, so its replies go in order; among chats, the one that has waited longest
goes next, so a chat never waits behind another chat's backlog while a worker is free (a fixed
shard per chat made a chat that shared its shard with busy ones wait for all of them: ~3x the
median latency at 100 conversations). At most ``capacity`` jobs wait; ``put`` waits for room.
"""

from __future__ import annotations

import asyncio
import re
from collections import deque
from typing import Generic, TypeVar

T = TypeVar("T")


class FairQueue(Generic[T]):
    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._room = asyncio.Semaphore(capacity)
        self._jobs: dict[str, deque[T]] = {}  # waiting, per chat
        self._out: set[str] = set()  # chats with a job at a worker
        # chats with a job waiting and none out, oldest first (at most one entry per chat, so
        # never more than ``capacity`` entries)
        self._ready: asyncio.Queue[str] = asyncio.Queue()
        self._waiting = 0

    def qsize(self) -> int:
        """Jobs waiting (not those at a worker)."""
        return self._waiting

    async def put(self, key: str, job: T) -> None:
        await self._room.acquire()
        queue = self._jobs.setdefault(key, deque())
        queue.append(job)
        self._waiting += 1
        if len(queue) == 1 and key not in self._out:
            self._ready.put_nowait(key)

    async def get(self) -> tuple[str, T]:
        """The next job of the chat that has waited longest; call ``done(key)`` after it."""
        key = await self._ready.get()
        queue = self._jobs[key]
        job = queue.popleft()
        if not queue:
            del self._jobs[key]
        self._out.add(key)
        self._waiting -= 1
        self._room.release()
        return key, job

    def done(self, key: str) -> None:
        """The job ``get`` gave for ``key`` is finished: the chat's next job may go."""
        self._out.discard(key)
        if key in self._jobs:
            self._ready.put_nowait(key)


_CONTROL = re.compile(r"^\s*/(approve|deny)(@[A-Za-z0-9_]+)?(\s|$)", re.IGNORECASE)


def is_control(text: str) -> bool:
    """``/approve ID`` or ``/deny ID``: answered beside the chat's queue, since the turn they
    answer is the one holding it."""
    return bool(_CONTROL.match(text))
