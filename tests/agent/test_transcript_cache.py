from __future__ import annotations

import tracemalloc
from pathlib import Path
from typing import Any

import pytest

from moltbot.agent.transcript_cache import CachedTranscripts
from moltbot.errors import Unavailable
from moltbot.store.transcripts import AsyncTranscripts, TranscriptStore


class Counting(AsyncTranscripts):
    """The real files, counting loads, and failing writes on request."""

    def __init__(self, folder: Path) -> None:
        super().__init__(TranscriptStore(folder))
        self.loads = 0
        self.fail = False

    async def load(self, session: str) -> list[dict[str, Any]]:
        self.loads += 1
        return await super().load(session)

    async def append_many(self, session: str, records: list[dict[str, Any]]) -> None:
        await super().append_many(session, records)  # written, then the answer is lost
        if self.fail:
            raise Unavailable("store gone")


async def test_a_loaded_session_is_served_from_memory_and_kept_true(tmp_path: Path) -> None:
    inner = Counting(tmp_path)
    await inner.append("s", {"role": "user", "content": "old"})
    cache = CachedTranscripts(inner)
    assert [r["content"] for r in await cache.load("s")] == ["old"]
    await cache.append("s", {"role": "assistant", "content": "a"})
    await cache.append_many("s", [{"role": "user", "content": "b"}, {"role": "meta"}])
    got = await cache.load("s")
    assert inner.loads == 1
    assert got == await inner.load("s")  # memory and files agree
    got.append({"role": "user", "content": "caller's own copy"})
    assert len(await cache.load("s")) == 4


async def test_a_write_with_unknown_outcome_drops_the_session(tmp_path: Path) -> None:
    inner = Counting(tmp_path)
    cache = CachedTranscripts(inner)
    await cache.load("s")
    inner.fail = True
    with pytest.raises(Unavailable):
        await cache.append_many("s", [{"role": "user", "content": "x"}, {"role": "meta"}])
    assert "s" not in cache
    inner.fail = False
    assert [r["role"] for r in await cache.load("s")] == ["user", "meta"]  # read again
    assert inner.loads == 2


async def test_reset_and_the_bound_on_cached_sessions(tmp_path: Path) -> None:
    inner = Counting(tmp_path)
    cache = CachedTranscripts(inner, cached=2)
    for s in ("a", "b", "c"):
        await cache.append(s, {"role": "user", "content": s})
        await cache.load(s)
    assert "a" not in cache and "b" in cache and "c" in cache  # least recently used went
    assert await cache.reset("b") is not None
    assert "b" not in cache and await cache.load("b") == []
    with pytest.raises(ValueError):
        CachedTranscripts(inner, cached=0)


async def test_what_is_held_is_bounded_in_bytes(tmp_path: Path) -> None:
    """Least recently used sessions go once the JSON size passes ``max_bytes``; a session
    larger than the whole budget is not kept, and every load of it still reads the store."""
    inner = Counting(tmp_path)
    record = {"role": "user", "content": "x" * 1000}  # ~1 KB as JSON
    cache = CachedTranscripts(inner, max_bytes=5_000)
    for s in ("a", "b"):
        await cache.append_many(s, [record, record])
        await cache.load(s)
    assert "a" in cache and "b" in cache and 4_000 < cache.bytes <= 5_000
    await cache.append("b", record)  # b grows past the budget with a: a goes
    assert "a" not in cache and "b" in cache and cache.bytes <= 5_000
    assert len(await cache.load("b")) == 3
    await cache.append_many("b", [record, record, record])  # b alone is over: not kept
    assert "b" not in cache and cache.bytes == 0
    loads = inner.loads
    assert len(await cache.load("b")) == 6 and len(await cache.load("b")) == 6
    assert inner.loads == loads + 2 and "b" not in cache  # read from the store each time
    assert await cache.load("a") == [record, record]  # the store kept everything
    with pytest.raises(ValueError):
        CachedTranscripts(inner, max_bytes=0)


async def test_the_budget_is_the_memory_the_records_take(tmp_path: Path) -> None:
    """Held as their JSON, the records cost about their JSON size (as dicts: 5.8 times it), so
    ``max_bytes`` bounds the agent's memory, not a quarter of it."""
    inner = Counting(tmp_path)
    record = {
        "role": "assistant",
        "content": [{"type": "text", "text": "a reply of a few words"}],
        "usage": {"input_tokens": 120, "output_tokens": 30},
        "msg_id": "telegram:1:42",
    }
    for s in range(40):
        await inner.append_many(f"s{s}", [record] * 25)
    cache = CachedTranscripts(inner, max_bytes=10**7)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for s in range(40):
            await cache.load(f"s{s}")  # the caller's copies are dropped at once
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert cache.bytes > 100_000
    assert held < 1.5 * cache.bytes, (held, cache.bytes)
    assert await cache.load("s7") == [record] * 25  # and what comes back is the records
