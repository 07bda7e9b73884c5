"""Backoff between restarts of one child: the spec's numbers fed to ``moltbot.backoff``."""

from __future__ import annotations

from moltbot import backoff as _backoff
from moltbot.supervision.spec import Backoff


def delay(backoff: Backoff, consecutive: int, rand: float) -> float:
    """Delay before the ``consecutive``-th restart in a row (1-based); ``rand`` in [0, 1).

    The first restart waits ``base_s``, each next one twice as long, capped at ``max_s``; the
    jitter spreads it by +/- ``jitter`` so crashing siblings do not restart in lock-step.
    """
    if consecutive <= 0:
        return 0.0
    return _backoff.delay(
        consecutive - 1,
        base=backoff.base_s,
        cap=backoff.max_s,
        jitter=backoff.jitter,
        kind="around",
        rand=rand,
    )
