"""Backoff and retry shared by the channel adapters.

Adapters map their SDK's errors once into moltbot errors; this module only sees those:
``RateLimited`` (429, wait ``retry_after``) and ``PlatformUnavailable`` (5xx, connection) are
retried, ``PlatformRejected`` (4xx) and everything else propagate at once. Time and randomness
are injected so tests run on a fake clock.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

import msgspec

from moltbot.backoff import delay as backoff_delay
from moltbot.channels.link import current_link
from moltbot.clock import SYSTEM_CLOCK, Clock
from moltbot.errors import MoltbotError, PlatformRejected, PlatformUnavailable, RateLimited

T = TypeVar("T")
Sleep = Callable[[float], Awaitable[None]]

log = logging.getLogger(__name__)

_RNG = random.Random()


class RetryPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """``deadline``: total seconds one send may take before giving up (the message stays
    journaled and is retried later by the caller)."""

    base: float = 0.5
    cap: float = 30.0
    deadline: float = 60.0


DEFAULT_RETRY = RetryPolicy()


def backoff(attempt: int, *, base: float, cap: float, rng: random.Random | None = None) -> float:
    """The wait after ``attempt + 1`` transient failures: ``moltbot.backoff`` with equal jitter
    (in ``[d/2, d]`` with ``d = min(cap, base*2**attempt)``)."""
    return backoff_delay(attempt, base=base, cap=cap, jitter=0.5, rand=(rng or _RNG).random())


def classify_status(
    status: int, *, platform: str, retry_after: float | None = None
) -> MoltbotError | None:
    """The moltbot error for an HTTP status (None when it is a success)."""
    if 200 <= status < 300:
        return None
    if status == 429:
        return RateLimited(f"{platform} is rate limiting us", retry_after=retry_after or 1.0)
    if status >= 500 or status in (408, 0):
        return PlatformUnavailable(f"{platform} is unavailable right now (HTTP {status})")
    if status in (401, 403):
        return PlatformRejected(
            f"{platform} refused our credentials (HTTP {status})",
            hint=f"check the {platform} token in the config",
        )
    return PlatformRejected(f"{platform} rejected the request (HTTP {status})")


def parse_retry_after(value: str | None, default: float = 1.0) -> float:
    try:
        return max(0.0, float(value)) if value is not None else default
    except ValueError:
        return default


async def retrying(
    fn: Callable[[], Awaitable[T]],
    *,
    deadline: float,
    sleep: Sleep = asyncio.sleep,
    clock: Clock = SYSTEM_CLOCK,
    rng: random.Random | None = None,
    base: float = 0.5,
    cap: float = 30.0,
    platform: str = "the platform",
) -> T:
    """Call ``fn`` until it succeeds, retrying transient errors until ``deadline`` seconds.

    A wait that would end past the deadline is not started: ``PlatformUnavailable`` is raised
    right away so the caller can keep the message for later.
    """
    start = clock.monotonic()
    attempt = failures = 0
    last: MoltbotError
    while True:
        try:
            return await fn()
        except RateLimited as e:
            delay, last = e.retry_after, e
        except PlatformUnavailable as e:
            delay, last = backoff(failures, base=base, cap=cap, rng=rng), e
            failures += 1
        attempt += 1
        remaining = deadline - (clock.monotonic() - start)
        if delay > remaining:
            raise PlatformUnavailable(
                f"{platform} did not accept the message in time; it will be retried later",
                hint=f"gave up after {attempt} attempts ({last.code})",
            ) from last
        log.info("%s: %s, retry %d in %.2fs", platform, last.code, attempt, delay)
        await sleep(delay)


class ReceiveBackoff:
    """Backoff state for a receive loop: ``await failed(err)`` sleeps, ``ok()`` resets."""

    def __init__(
        self,
        *,
        base: float = 0.5,
        cap: float = 30.0,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
        platform: str = "the platform",
    ) -> None:
        self._base, self._cap, self._sleep, self._rng = base, cap, sleep, rng
        self._platform = platform
        self.attempt = 0
        self._link = current_link.get()  # the running service's connection state, if any

    def ok(self) -> None:
        self.attempt = 0
        if self._link is not None:
            self._link.connected()

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """``fn()`` retried (no deadline) until it succeeds or fails for good."""
        while True:
            try:
                result = await fn()
            except (PlatformUnavailable, RateLimited) as e:
                await self.failed(e)
                continue
            self.ok()
            return result

    async def failed(self, err: RateLimited | PlatformUnavailable) -> None:
        if isinstance(err, RateLimited):
            delay = err.retry_after
        else:
            delay = backoff(self.attempt, base=self._base, cap=self._cap, rng=self._rng)
        self.attempt += 1
        if self._link is not None:
            self._link.retrying(err, self.attempt, delay)
        log.warning(
            "%s receive: %s, retry %d in %.2fs", self._platform, err.code, self.attempt, delay
        )
        await self._sleep(delay)


class Retrier:
    """One adapter's retry settings, built once from its policy, sleep, clock and rng, so a
    call site says only what it retries: ``await retrier.run(once)`` for a send (bounded by
    the policy's deadline), ``retrier.receiving()`` for a receive loop's backoff.

    ``platform`` names the service in errors users may see ("Telegram"); ``channel`` names
    the adapter in receive-loop logs ("telegram")."""

    def __init__(
        self,
        policy: RetryPolicy = DEFAULT_RETRY,
        *,
        platform: str,
        channel: str,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = SYSTEM_CLOCK,
        rng: random.Random | None = None,
    ) -> None:
        self.policy, self.platform, self.channel = policy, platform, channel
        self._sleep, self._clock, self._rng = sleep, clock, rng

    async def run(self, fn: Callable[[], Awaitable[T]]) -> T:
        """``fn()`` retried on transient errors until the policy's deadline."""
        return await retrying(
            fn,
            deadline=self.policy.deadline,
            sleep=self._sleep,
            clock=self._clock,
            rng=self._rng,
            base=self.policy.base,
            cap=self.policy.cap,
            platform=self.platform,
        )

    def receiving(self) -> ReceiveBackoff:
        """A fresh backoff for one receive loop (it reports to the running service's link)."""
        return ReceiveBackoff(
            base=self.policy.base,
            cap=self.policy.cap,
            sleep=self._sleep,
            rng=self._rng,
            platform=self.channel,
        )
