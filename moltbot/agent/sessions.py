"""Sessions: one in-flight turn per session, a bounded wait, and stable sharding to agents."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from moltbot.errors import RateLimited


def shard_for(session_key: str, n: int) -> int:
    """The agent (0..n-1) that owns ``session_key``: stable across processes and restarts."""
    if n < 1:
        raise ValueError("n must be at least 1")
    digest = hashlib.blake2b(session_key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % n


class _Slot:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0  # the holder plus the waiters


class SessionGate:
    """Serializes turns per session; different sessions run concurrently.

    At most ``queue_size`` turns wait behind the running one of a session; one more is refused
    with ``RateLimited``. Waiters are served in arrival order (``asyncio.Lock`` is FIFO).
    Idle sessions hold no memory.
    """

    def __init__(self, queue_size: int = 4, *, retry_after: float = 5.0) -> None:
        if queue_size < 0:
            raise ValueError("queue_size must be >= 0")
        self._queue_size = queue_size
        self._retry_after = retry_after
        self._slots: dict[str, _Slot] = {}

    def busy(self, session: str) -> bool:
        slot = self._slots.get(session)
        return slot is not None and slot.lock.locked()

    def waiting(self, session: str) -> int:
        slot = self._slots.get(session)
        return max(0, slot.users - 1) if slot else 0

    def active_sessions(self) -> int:
        return len(self._slots)

    @asynccontextmanager
    async def hold(self, session: str) -> AsyncIterator[None]:
        slot = self._slots.get(session)
        if slot is None:
            slot = self._slots[session] = _Slot()
        if slot.users > self._queue_size:
            raise RateLimited(
                f"this conversation already has a reply in progress and {self._queue_size} "
                "more messages waiting; please wait for the answers",
                retry_after=self._retry_after,
            )
        slot.users += 1
        try:
            async with slot.lock:
                yield
        finally:
            slot.users -= 1
            if slot.users == 0 and self._slots.get(session) is slot:
                del self._slots[session]
