"""Exponential backoff with jitter between restarts of one child (pure; randomness injected)."""

from __future__ import annotations

from moltbot.supervision.spec import Backoff


def delay(backoff: Backoff, consecutive: int, rand: float) -> float:
    """Delay before the ``consecutive``-th restart in a row (1-based); ``rand`` in [0, 1).

    The first restart waits ``base_s``, each next one twice as long, capped at ``max_s``; the
    jitter spreads it by +/- ``jitter`` so crashing siblings do not restart in lock-step.
    """
    if consecutive <= 0:
        return 0.0
    raw = min(backoff.max_s, backoff.base_s * (2 ** min(consecutive - 1, 30)))
    spread = raw * backoff.jitter * (2.0 * rand - 1.0)
    return max(0.0, min(backoff.max_s, raw + spread))
