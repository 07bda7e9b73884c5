"""The catch-up cursor's rules (pure): where a query starts, what it remembers, what it drops."""

from __future__ import annotations

import asyncio

from moltbot.channels.base import MemoryCursors
from moltbot.channels.time_cursor import LOOKBACK_MS, RECENT_MAX, Cursor


def test_a_first_start_never_looks_behind_the_newest_message() -> None:
    c = Cursor.starting_at(1_000_000, "NEWEST")
    assert c.after() == 1_000_000 and c.seen("NEWEST")
    c.accept("NEXT", 1_000_000 + LOOKBACK_MS + 5)
    assert c.after() == 1_000_005  # the lookback, now above the floor


def test_the_cursor_moves_only_past_an_unbroken_run_of_accepted_messages() -> None:
    c = Cursor.starting_at(100_000, None)
    c.accept("A", 100_010)
    c.accept("C", 100_030, advance=False)  # B before it was refused
    assert c.ts == 100_010 and c.seen("A") and c.seen("C") and not c.seen("B")
    assert c.after() <= 100_020  # B is asked for again


def test_ids_older_than_the_lookback_are_forgotten_and_the_count_is_capped() -> None:
    c = Cursor()
    c.accept("OLD", 10_000)
    c.accept("NEW", 10_000 + LOOKBACK_MS + 1)
    assert not c.seen("OLD") and c.seen("NEW")
    for i in range(RECENT_MAX + 10):
        c.accept(f"M{i}", 10_000 + LOOKBACK_MS + 2 + i)
    assert len(c.recent) == RECENT_MAX and c.seen(f"M{RECENT_MAX + 9}") and not c.seen("M0")


def test_round_trip_through_a_store_and_unreadable_bytes() -> None:
    store = MemoryCursors()
    c = Cursor.starting_at(5, "G")
    c.accept("H", 9)
    asyncio.run(store.put("k", c.encode()))
    back = Cursor.decode(asyncio.run(store.get("k")))
    assert back == c and list(store.values) == ["k"]
    assert Cursor.decode(b"[1, 2") is None and Cursor.decode(None) is None
    assert Cursor.decode(b'{"ts": "soon"}') is None
