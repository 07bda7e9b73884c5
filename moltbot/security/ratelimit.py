"""Rate limiting: a token bucket and a failed-login lockout, both pure (time from a ``Clock``).

``TokenBucket.take()`` answers how long to wait (0.0 = allowed), so callers can answer a clear
``rate_limited`` error with ``retry_after``. ``Lockout`` counts failed logins per client address
(loopback included) in a sliding window; reaching the limit locks the address out for a backoff
that doubles with every lockout until a successful login resets it.
"""

from __future__ import annotations

from collections import OrderedDict, deque

from moltbot.clock import Clock


class TokenBucket:
    """``rate`` tokens per second, holding at most ``burst``; starts full."""

    def __init__(self, rate: float, burst: int, clock: Clock) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self._rate = rate
        self._burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock.monotonic()

    def _refill(self) -> None:
        now = self._clock.monotonic()
        elapsed = max(0.0, now - self._last)
        self._last = now
        self._tokens = min(self._burst, self._tokens + elapsed * self._rate)

    def take(self, cost: float = 1.0) -> float:
        """Take ``cost`` tokens. Returns 0.0 when allowed, else seconds until it would be."""
        self._refill()
        if self._tokens >= cost:
            self._tokens -= cost
            return 0.0
        return (cost - self._tokens) / self._rate


class _Record:
    __slots__ = ("failures", "level", "locked_until")

    def __init__(self) -> None:
        self.failures: deque[float] = deque()
        self.level = 0
        self.locked_until = 0.0


class Lockout:
    """``max_failures`` failed logins within ``window_s`` lock an address out.

    The n-th lockout lasts ``base_s * 2**(n-1)`` seconds, capped at ``cap_s``. At most
    ``max_addresses`` are tracked (the least recently seen are forgotten first).
    """

    def __init__(
        self,
        clock: Clock,
        *,
        max_failures: int = 10,
        window_s: float = 60.0,
        base_s: float = 60.0,
        cap_s: float = 3600.0,
        max_addresses: int = 10_000,
    ) -> None:
        self._clock = clock
        self._max = max_failures
        self._window = window_s
        self._base = base_s
        self._cap = cap_s
        self._max_addresses = max_addresses
        self._records: OrderedDict[str, _Record] = OrderedDict()

    def _record(self, address: str) -> _Record:
        rec = self._records.get(address)
        if rec is None:
            rec = _Record()
            self._records[address] = rec
            while len(self._records) > self._max_addresses:
                self._records.popitem(last=False)
        else:
            self._records.move_to_end(address)
        return rec

    def retry_after(self, address: str) -> float:
        """Seconds the address is still locked out for (0.0 = it may try)."""
        rec = self._records.get(address)
        if rec is None:
            return 0.0
        return max(0.0, rec.locked_until - self._clock.monotonic())

    def failure(self, address: str) -> float:
        """Count a failed login. Returns the lockout length if this failure triggered one."""
        now = self._clock.monotonic()
        rec = self._record(address)
        rec.failures.append(now)
        while rec.failures and rec.failures[0] <= now - self._window:
            rec.failures.popleft()
        if len(rec.failures) < self._max:
            return 0.0
        rec.level += 1
        backoff = min(self._cap, self._base * 2 ** (rec.level - 1))
        rec.locked_until = now + backoff
        rec.failures.clear()
        return backoff

    def success(self, address: str) -> None:
        """A successful login forgets the address's failures and lockout level."""
        self._records.pop(address, None)
