"""``CachedTranscripts``: a session's transcript kept in memory by its only writer.

Sessions shard to agents, so the agent a session belongs to is the only writer of its
transcript. It keeps the last ``cached`` sessions it loaded and appends to them as it writes,
so a turn does not read (and, on Ray, ship) the whole transcript again. A write whose outcome
is unknown (it raised) drops the session from the cache: the next load reads the store again.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Protocol


class ResettableLog(Protocol):
    async def load(self, session: str) -> list[dict[str, Any]]: ...

    async def append(self, session: str, record: dict[str, Any]) -> None: ...

    async def append_many(self, session: str, records: list[dict[str, Any]]) -> None: ...

    async def reset(self, session: str) -> Any: ...


class CachedTranscripts:
    """A ``BatchLog`` in front of ``inner`` (the store actor, or the files directly)."""

    def __init__(self, inner: ResettableLog, cached: int = 64) -> None:
        if cached < 1:
            raise ValueError("cached must be at least 1")
        self._inner = inner
        self._cached = cached
        self._cache: OrderedDict[str, list[dict[str, Any]]] = OrderedDict()

    def __contains__(self, session: str) -> bool:
        return session in self._cache

    async def load(self, session: str) -> list[dict[str, Any]]:
        hit = self._cache.get(session)
        if hit is None:
            hit = list(await self._inner.load(session))
            self._cache[session] = hit
            while len(self._cache) > self._cached:
                self._cache.popitem(last=False)
        self._cache.move_to_end(session)
        return list(hit)

    async def append(self, session: str, record: dict[str, Any]) -> None:
        try:
            await self._inner.append(session, record)
        except BaseException:
            self._cache.pop(session, None)
            raise
        self._extend(session, [record])

    async def append_many(self, session: str, records: list[dict[str, Any]]) -> None:
        try:
            await self._inner.append_many(session, records)
        except BaseException:
            self._cache.pop(session, None)
            raise
        self._extend(session, records)

    def _extend(self, session: str, records: list[dict[str, Any]]) -> None:
        hit = self._cache.get(session)
        if hit is not None:
            hit.extend(records)

    async def reset(self, session: str) -> Any:
        self._cache.pop(session, None)
        try:
            return await self._inner.reset(session)
        finally:
            self._cache.pop(session, None)
