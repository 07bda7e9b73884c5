"""The afterkill benchmark's arithmetic: the block order and what the death added."""

from __future__ import annotations

from benchmarks.afterkill import (
    GAP_S,
    LEAD_S,
    MESSAGES,
    WINDOWS_MS,
    added_ms,
    by_window,
    order,
    within,
)


def test_blocks_alternate_off_on_on_off() -> None:
    assert order(4) == ["off", "on", "on", "off"]
    assert order(8) == ["off", "on", "on", "off", "off", "on", "on", "off"]
    assert order(2) == ["off", "on"]


CALM = [(-10.0, 9.0), (2.0, 10.0), (7.0, 12.0), (30.0, None), (40.0, 10.0), (60.0, 10.0)]
KILL = [(-10.0, 9.0), (1.0, 20.0), (8.0, 22.0), (31.0, 16.0), (45.0, 18.0), (70.0, 90.0)]


def test_within_picks_the_answered_messages_sent_in_the_window() -> None:
    assert within(CALM, 0.0, 50.0) == [10.0, 12.0, 10.0]  # the unanswered one left out
    assert within(KILL, 0.0, 50.0) == [20.0, 22.0, 16.0, 18.0]
    assert within(KILL, -20.0, 0.0) == [9.0]


def test_added_is_after_the_kill_less_calm_in_the_same_window() -> None:
    # medians: 19 against 10; means: 19 against 10.67; the messages at 60 and 70 ms are past
    # the window and do not count
    assert added_ms(CALM, KILL, 0.0, 50.0) == 9.0
    assert added_ms(CALM, KILL, 0.0, 50.0, "mean") == 8.33
    assert added_ms(CALM, KILL, -20.0, 0.0) == 0.0  # the control: before the kill, nothing
    assert added_ms(CALM, [(70.0, 1.0)], 0.0, 50.0) is None  # nothing answered in the window
    # one calm message that waited for its agent to start moves the mean, not the median
    late = [*CALM, (5.0, 1000.0)]
    assert added_ms(late, KILL, 0.0, 50.0) == 8.0
    assert (added_ms(late, KILL, 0.0, 50.0, "mean") or 0) < -100


def test_by_window_counts_and_takes_each_windows_medians() -> None:
    rows = by_window(CALM, KILL)
    assert [r[0] for r in rows] == [f"{lo:.0f} to {hi:.0f}" for lo, hi in WINDOWS_MS]
    assert rows[1] == ["0 to 10", 2, 11.0, 2, 21.0]
    assert rows[0][1:] == [1, 9.0, 1, 9.0]


def test_the_burst_spans_the_windows() -> None:
    """The messages start before the kill and last past the last window's start."""
    assert WINDOWS_MS[0][0] == -LEAD_S * 1000
    assert (MESSAGES - 1) * GAP_S - LEAD_S > WINDOWS_MS[-1][0] / 1000
