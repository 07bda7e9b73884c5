"""``CachedTranscripts``: a session's transcript kept in memory by its only writer.

Sessions shard to agents, so the agent a session belongs to is the only writer of its
transcript. It keeps the last ``cached`` sessions it loaded and appends to them as it writes,
so a turn does not read (and, on Ray, ship) the whole transcript again. A write whose outcome
is unknown (it raised) drops the session from the cache: the next load reads the store again.

What it holds is bounded in bytes as well (``max_bytes``): a conversation goes on for months,
and an agent that kept every record of its sessions would grow with them. A session is held as
one buffer of its records' JSON (what the store writes), so the budget is the memory they take:
as Python dicts the same records took about six times their JSON size. A load decodes them
(a fresh copy for the caller, as the store's own load gives). The least recently used sessions
go first; one larger than the whole budget is not kept (each of its turns reads it from the
store).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Protocol

import msgspec

MAX_BYTES = 2 * 1024 * 1024  # per agent process


class ResettableLog(Protocol):
    async def load(self, session: str) -> list[dict[str, Any]]: ...

    async def append(self, session: str, record: dict[str, Any]) -> None: ...

    async def append_many(self, session: str, records: list[dict[str, Any]]) -> None: ...

    async def reset(self, session: str) -> Any: ...


class CachedTranscripts:
    """A ``BatchLog`` in front of ``inner`` (the store actor, or the files directly)."""

    def __init__(self, inner: ResettableLog, cached: int = 64, max_bytes: int = MAX_BYTES) -> None:
        if cached < 1 or max_bytes < 1:
            raise ValueError("cached and max_bytes must be at least 1")
        self._inner = inner
        self._cached = cached
        self._max_bytes = max_bytes
        self._cache: OrderedDict[str, bytearray] = OrderedDict()  # JSON, comma-joined
        self._sizes: dict[str, int] = {}
        self.bytes = 0  # the JSON size of what is held (and about the memory it takes)

    def _drop(self, session: str) -> None:
        self._cache.pop(session, None)
        self.bytes -= self._sizes.pop(session, 0)

    def _fit(self) -> None:
        """Let the least recently used sessions go until both bounds hold."""
        while self._cache and (len(self._cache) > self._cached or self.bytes > self._max_bytes):
            self._drop(next(iter(self._cache)))

    def __contains__(self, session: str) -> bool:
        return session in self._cache

    async def load(self, session: str) -> list[dict[str, Any]]:
        hit = self._cache.get(session)
        if hit is None:
            records = list(await self._inner.load(session))
            held = _encode(records)
            size = len(held)
            if size > self._max_bytes:  # larger than the whole budget: read each time
                return records
            self._cache[session] = held
            self._sizes[session] = size
            self.bytes += size
            self._cache.move_to_end(session)
            self._fit()
            return records
        self._cache.move_to_end(session)
        return _DECODE(b"[" + hit + b"]")

    async def append(self, session: str, record: dict[str, Any]) -> None:
        try:
            await self._inner.append(session, record)
        except BaseException:
            self._drop(session)
            raise
        self._extend(session, [record])

    async def append_many(self, session: str, records: list[dict[str, Any]]) -> None:
        try:
            await self._inner.append_many(session, records)
        except BaseException:
            self._drop(session)
            raise
        self._extend(session, records)

    def _extend(self, session: str, records: list[dict[str, Any]]) -> None:
        hit = self._cache.get(session)
        if hit is None:
            return
        held = _encode(records)
        if hit and held:
            held[:0] = b","
        hit += held
        size = len(held)
        self._sizes[session] += size
        self.bytes += size
        if self._sizes[session] > self._max_bytes:
            self._drop(session)
        self._fit()

    async def reset(self, session: str) -> Any:
        self._drop(session)
        try:
            return await self._inner.reset(session)
        finally:
            self._drop(session)


_DECODE = msgspec.json.Decoder(list[dict[str, Any]]).decode


def _encode(records: list[dict[str, Any]]) -> bytearray:
    """The records' JSON, comma-joined (a JSON array without its brackets)."""
    return bytearray(b",".join(msgspec.json.encode(r) for r in records))
