"""The soak benchmark's slopes (benchmarks/soak.py): the whole run's, and each 5-minute
window's, from made-up samples whose growth is known."""

from __future__ import annotations

from typing import Any

from benchmarks.soak import WARMUP_S, slope_per_min, window_slopes


def _samples(mb_at: Any, until_s: int = 900) -> list[dict[str, Any]]:
    return [{"t_s": float(t), "rest_mb": mb_at(t)} for t in range(10, until_s + 1, 10)]


def test_a_growth_that_slows_shows_in_its_windows() -> None:
    # 1 MB/min for five minutes, then 0.25 MB/min
    got = window_slopes(_samples(lambda t: 700 + (t / 60 if t < 300 else 5 + (t - 300) / 240)))
    assert [round(w, 3) for w in got[:3] if w is not None] == [1.0, 0.25, 0.25]


def test_the_first_window_starts_after_the_warm_up() -> None:
    # a jump inside the warm-up is not growth: the first window starts at WARMUP_S
    got = window_slopes(_samples(lambda t: 900 if t < WARMUP_S else 700 + t / 120, 600))
    assert got[0] is not None and abs(got[0] - 0.5) < 1e-9
    assert slope_per_min([(0.0, 1.0), (30.0, 2.0), (60.0, 3.0)]) == 2.0
    assert slope_per_min([(0.0, 1.0), (60.0, 3.0)]) is None  # two points: no slope


def test_a_window_with_too_few_samples_has_no_slope() -> None:
    assert window_slopes(_samples(lambda t: 700.0, 300)) == [0.0, None]
