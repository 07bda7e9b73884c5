"""The one backoff formula: how long to wait after a run of failures (pure; randomness injected).

Every retry in moltbot waits ``delay(failures, ...)``: supervision between restarts of a child,
the channels' sends and receive loops, the model providers, the chat client's reconnects and
the routing of calls through an actor's restart. Each caller picks its own numbers:

* ``failures``: how many attempts failed in a row before this wait, from 0 (the first wait);
* ``base``: the first wait (before jitter); each further failure doubles it ...
* ``cap``: ... up to ``cap``; no wait is ever longer than ``cap``;
* ``jitter``: the random spread, a fraction of the wait, so that many clients that failed
  together do not retry in lock-step, and ``kind`` where it goes: ``"below"`` draws the wait
  from ``[d*(1-jitter), d]`` (it never exceeds the exponential step ``d``), ``"around"`` from
  ``[d*(1-jitter), d*(1+jitter)]`` (the step is the mean), both cut at ``cap``;
* ``rand``: a number in [0, 1) that picks the point in that range (tests pass it; callers pass
  their own ``random.Random().random()`` or leave it to the module's generator).
"""

from __future__ import annotations

import random
from typing import Literal

Jitter = Literal["below", "around"]

_RNG = random.Random()


def delay(
    failures: int,
    *,
    base: float,
    cap: float,
    jitter: float = 0.5,
    kind: Jitter = "below",
    rand: float | None = None,
) -> float:
    """Seconds to wait after ``failures + 1`` failures in a row (see the module docstring)."""
    if failures < 0:
        raise ValueError("failures must be >= 0")
    step = min(cap, base * (2.0 ** min(failures, 62)))
    r = _RNG.random() if rand is None else rand
    low = step * (1.0 - jitter)
    high = step * (1.0 + jitter) if kind == "around" else step
    return max(0.0, min(cap, low + (high - low) * r))
