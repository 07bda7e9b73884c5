"""The one backoff formula: exponential from ``base`` to ``cap``, with a jitter of either kind."""

from __future__ import annotations

import pytest

from moltbot.backoff import delay


def test_doubles_from_base_and_never_exceeds_cap() -> None:
    steps = [delay(n, base=0.1, cap=1.0, jitter=0.0) for n in range(6)]
    assert steps == [0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert delay(10_000, base=0.1, cap=1.0, jitter=0.0) == 1.0  # no overflow on a long run
    for kind in ("below", "around"):
        for r in (0.0, 0.5, 0.999999):
            assert delay(50, base=0.1, cap=1.0, jitter=0.5, kind=kind, rand=r) <= 1.0


def test_below_jitter_only_shortens_the_step() -> None:
    assert delay(2, base=1.0, cap=100.0, jitter=0.5, rand=0.0) == pytest.approx(2.0)
    assert delay(2, base=1.0, cap=100.0, jitter=0.5, rand=0.999999) == pytest.approx(4.0, abs=1e-5)
    assert delay(2, base=1.0, cap=100.0, jitter=0.25, rand=0.5) == pytest.approx(3.5)


def test_around_jitter_spreads_both_ways_and_is_cut_at_the_cap() -> None:
    def around(rand: float) -> float:
        return delay(0, base=1.0, cap=100.0, jitter=0.2, kind="around", rand=rand)

    assert around(0.0) == pytest.approx(0.8)
    assert around(0.5) == pytest.approx(1.0)
    assert around(0.999999) == pytest.approx(1.2, abs=1e-5)
    assert delay(9, base=1.0, cap=4.0, jitter=0.5, kind="around", rand=0.9) == 4.0


def test_without_rand_it_draws_within_the_range() -> None:
    got = {delay(3, base=1.0, cap=100.0) for _ in range(50)}
    assert all(4.0 <= d <= 8.0 for d in got) and len(got) > 1


def test_negative_failures_are_refused() -> None:
    with pytest.raises(ValueError):
        delay(-1, base=1.0, cap=1.0)
