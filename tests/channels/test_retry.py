"""Backoff and retrying (pure, fake clock)."""

from __future__ import annotations

import random

import pytest

from moltbot.channels.retry import Retrier, RetryPolicy, backoff, classify_status, retrying
from moltbot.clock import FakeClock
from moltbot.errors import PlatformRejected, PlatformUnavailable, RateLimited


class Timeline:
    def __init__(self) -> None:
        self.clock = FakeClock()
        self.sleeps: list[float] = []

    async def sleep(self, d: float) -> None:
        self.sleeps.append(d)
        self.clock.advance(d)


def test_backoff_grows_caps_and_jitters() -> None:
    rng = random.Random(1)
    for attempt in range(12):
        d = min(8.0, 0.5 * 2**attempt)
        for _ in range(20):
            assert d / 2 <= backoff(attempt, base=0.5, cap=8.0, rng=rng) <= d
    assert backoff(10_000, base=0.5, cap=8.0, rng=rng) <= 8.0
    assert backoff(3, base=1, cap=100, rng=random.Random(5)) == backoff(
        3, base=1, cap=100, rng=random.Random(5)
    )
    with pytest.raises(ValueError):
        backoff(-1, base=1, cap=1)


def test_classify_status() -> None:
    assert classify_status(200, platform="X") is None
    rl = classify_status(429, platform="X", retry_after=7)
    assert isinstance(rl, RateLimited) and rl.retry_after == 7
    for s in (500, 502, 503, 504, 408):
        assert isinstance(classify_status(s, platform="X"), PlatformUnavailable)
    for s in (400, 401, 403, 404, 413):
        assert isinstance(classify_status(s, platform="X"), PlatformRejected)


async def test_retries_transient_then_succeeds() -> None:
    t = Timeline()
    errors: list[Exception] = [
        RateLimited("slow down", retry_after=4),
        PlatformUnavailable("502"),
        PlatformUnavailable("503"),
    ]

    async def fn() -> str:
        if errors:
            raise errors.pop(0)
        return "ok"

    assert (
        await retrying(
            fn, deadline=60, sleep=t.sleep, clock=t.clock, rng=random.Random(0), base=1, cap=10
        )
        == "ok"
    )
    assert t.sleeps[0] == 4 and len(t.sleeps) == 3
    assert 0.5 <= t.sleeps[1] <= 1 and 1 <= t.sleeps[2] <= 2


async def test_rejected_is_not_retried() -> None:
    t = Timeline()
    calls = 0

    async def fn() -> None:
        nonlocal calls
        calls += 1
        raise PlatformRejected("no")

    with pytest.raises(PlatformRejected):
        await retrying(fn, deadline=60, sleep=t.sleep, clock=t.clock)
    assert calls == 1 and t.sleeps == []


async def test_gives_up_at_the_deadline() -> None:
    t = Timeline()

    async def fn() -> None:
        raise PlatformUnavailable("down")

    with pytest.raises(PlatformUnavailable) as info:
        await retrying(fn, deadline=30, sleep=t.sleep, clock=t.clock, base=1, cap=8)
    assert t.clock.monotonic() - 1000.0 <= 30
    assert isinstance(info.value.__cause__, PlatformUnavailable)
    assert "retried later" in info.value.user_message


async def test_retry_after_beyond_deadline_gives_up_at_once() -> None:
    t = Timeline()

    async def fn() -> None:
        raise RateLimited("later", retry_after=120)

    with pytest.raises(PlatformUnavailable):
        await retrying(fn, deadline=60, sleep=t.sleep, clock=t.clock)
    assert t.sleeps == []


async def test_a_retrier_applies_its_adapters_policy_clock_and_names() -> None:
    t = Timeline()
    retrier = Retrier(
        RetryPolicy(base=2, cap=3, deadline=10),
        platform="Telegram",
        channel="telegram",
        sleep=t.sleep,
        clock=t.clock,
        rng=random.Random(0),
    )

    async def down() -> None:
        raise PlatformUnavailable("down")

    with pytest.raises(PlatformUnavailable) as info:
        await retrier.run(down)
    assert "Telegram did not accept" in info.value.user_message
    assert t.sleeps and 1 <= t.sleeps[0] <= 2 and all(d <= 3 for d in t.sleeps)
    assert sum(t.sleeps) <= 10

    receiving = retrier.receiving()
    await receiving.failed(PlatformUnavailable("down"))
    assert receiving.attempt == 1 and 1 <= t.sleeps[-1] <= 2
    assert retrier.receiving().attempt == 0  # each receive loop gets its own backoff
