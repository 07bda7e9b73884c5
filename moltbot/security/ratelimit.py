"""Rate limiting: a token bucket and a failed-login lockout, both pure (time from a ``Clock``).

``TokenBucket.take()`` answers how long to wait (0.0 = allowed), so callers can answer a clear
``rate_limited`` error with ``retry_after``. ``Lockout`` counts failed logins per client (an
IPv4 address, an IPv6 /64: one host owns a whole /64) in a sliding window, loopback included;
reaching the limit locks the client out for a backoff that doubles with every lockout until a
successful login resets it. A flood of new addresses cannot push a locked client out of the
table (only unlocked ones are forgotten; a table full of locked clients refuses newcomers), and
a global failure budget locks every login out for a while when failures pour in from everywhere.
``Admission`` caps the connections not yet authenticated, in total and per client.
"""

from __future__ import annotations

import ipaddress
from collections import Counter, OrderedDict, deque

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


def client_key(address: str) -> str:
    """Who an address belongs to, for counting: an IPv4 address (also IPv4-mapped IPv6) as
    itself, an IPv6 address as its /64, anything else (a Unix socket ...) as given."""
    try:
        ip = ipaddress.ip_address(address.strip("[]").split("%", 1)[0])
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class _Record:
    __slots__ = ("failures", "level", "locked_until")

    def __init__(self) -> None:
        self.failures: deque[float] = deque()
        self.level = 0
        self.locked_until = 0.0


class Lockout:
    """``max_failures`` failed logins within ``window_s`` lock a client out.

    The n-th lockout lasts ``base_s * 2**(n-1)`` seconds, capped at ``cap_s``. At most
    ``max_addresses`` clients are tracked: the least recently seen *unlocked* one is forgotten
    first, a locked one never; when all are locked a new client is refused (fail closed).
    ``global_max`` failures within ``window_s`` from all clients together lock every login out
    for ``global_lock_s`` (0 turns the budget off). Addresses go through :func:`client_key`.
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
        global_max: int = 100,
        global_lock_s: float = 30.0,
    ) -> None:
        self._clock = clock
        self._max = max_failures
        self._window = window_s
        self._base = base_s
        self._cap = cap_s
        self._max_addresses = max_addresses
        self._global_max = global_max
        self._global_lock = global_lock_s
        self._global: deque[float] = deque()
        self._global_until = 0.0
        self._records: OrderedDict[str, _Record] = OrderedDict()

    def _locked(self, rec: _Record, now: float) -> bool:
        return rec.locked_until > now

    def _make_room(self, now: float) -> bool:
        """Forget the least recently seen unlocked client if the table is full."""
        if len(self._records) < self._max_addresses:
            return True
        for key, rec in self._records.items():
            if not self._locked(rec, now):
                del self._records[key]
                return True
        return False

    def _record(self, key: str, now: float) -> _Record | None:
        rec = self._records.get(key)
        if rec is None:
            if not self._make_room(now):
                return None
            rec = _Record()
            self._records[key] = rec
        else:
            self._records.move_to_end(key)
        return rec

    def retry_after(self, address: str) -> float:
        """Seconds the client (or everyone, under the global budget) is still locked out for
        (0.0 = it may try)."""
        now = self._clock.monotonic()
        wait = max(0.0, self._global_until - now)
        rec = self._records.get(client_key(address))
        if rec is None:
            if not self._has_room(now):
                return max(wait, self._base)  # full of locked clients: newcomers wait too
            return wait
        return max(wait, rec.locked_until - now)

    def _has_room(self, now: float) -> bool:
        if len(self._records) < self._max_addresses:
            return True
        return any(not self._locked(rec, now) for rec in self._records.values())

    def failure(self, address: str) -> float:
        """Count a failed login. Returns the lockout length if this failure triggered one (the
        client's, or the global one)."""
        now = self._clock.monotonic()
        glob = self._global_failure(now)
        rec = self._record(client_key(address), now)
        if rec is None:  # no room to remember it: treat it as locked
            return max(glob, self._base)
        rec.failures.append(now)
        while rec.failures and rec.failures[0] <= now - self._window:
            rec.failures.popleft()
        if len(rec.failures) < self._max:
            return glob
        rec.level += 1
        backoff = min(self._cap, self._base * 2 ** (rec.level - 1))
        rec.locked_until = now + backoff
        rec.failures.clear()
        return max(glob, backoff)

    def _global_failure(self, now: float) -> float:
        if self._global_max <= 0:
            return 0.0
        self._global.append(now)
        while self._global and self._global[0] <= now - self._window:
            self._global.popleft()
        if len(self._global) < self._global_max:
            return 0.0
        self._global.clear()
        self._global_until = now + self._global_lock
        return self._global_lock

    @property
    def globally_locked(self) -> bool:
        return self._global_until > self._clock.monotonic()

    def success(self, address: str) -> None:
        """A successful login forgets the client's failures and lockout level."""
        self._records.pop(client_key(address), None)


class Admission:
    """Connections that have not authenticated yet: at most ``total``, at most ``per_client``
    from one client (:func:`client_key`). ``enter`` says why one is refused ('' = admitted)."""

    def __init__(self, *, total: int = 64, per_client: int = 8) -> None:
        self.total = total
        self.per_client = per_client
        self._by_client: Counter[str] = Counter()
        self._count = 0

    def enter(self, address: str) -> str:
        key = client_key(address)
        if self._count >= self.total:
            return "too many connections waiting to log in"
        if self._by_client[key] >= self.per_client:
            return "too many connections waiting to log in from this address"
        self._by_client[key] += 1
        self._count += 1
        return ""

    def leave(self, address: str) -> None:
        key = client_key(address)
        if self._by_client[key] <= 0:
            return
        self._by_client[key] -= 1
        self._count -= 1
        if not self._by_client[key]:
            del self._by_client[key]

    @property
    def waiting(self) -> int:
        return self._count
