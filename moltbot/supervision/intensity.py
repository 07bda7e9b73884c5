"""Restart intensity: at most ``intensity`` restarts within any ``period`` seconds."""

from __future__ import annotations


def record_restart(history: tuple[float, ...], now: float, period: float) -> tuple[float, ...]:
    """The restart times still inside the window, with ``now`` added (pure)."""
    return (*(t for t in history if now - t < period), now)


def exceeded(history: tuple[float, ...], intensity: int) -> bool:
    """OTP: more than ``intensity`` restarts within the period stops the supervisor."""
    return len(history) > intensity
