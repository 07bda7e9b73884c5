"""The truth about one channel account's connection, for ``moltbot status`` and the web page.

States: ``connecting`` (not yet heard from the platform), ``connected`` (a receive succeeded
lately), ``retrying`` (a receive failed for a reason that may pass: attempt n, next in s),
``rejected`` (the platform refused us for good, e.g. a revoked token: parked until its secret
changes). Beside it: when the last message came in and the last reply went out.

The receive loops report through ``ReceiveBackoff`` (``moltbot.channels.retry``), which finds
the ``Link`` of the service running it in ``current_link``: no adapter needs to know of it.
"""

from __future__ import annotations

import contextvars
from typing import Any, Literal

from moltbot.clock import SYSTEM_CLOCK, Clock
from moltbot.errors import MoltbotError

State = Literal["connecting", "connected", "retrying", "rejected"]

current_link: contextvars.ContextVar[Link | None] = contextvars.ContextVar(
    "moltbot_current_link", default=None
)


class Link:
    def __init__(self, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self._clock = clock
        self.state: State = "connecting"
        self.attempt = 0
        self.reason = ""
        self.fix = ""
        self._next_at = 0.0  # monotonic: the next retry
        self.last_in: float | None = None  # wall clock
        self.last_out: float | None = None
        self.since = clock.time()  # when the state last changed

    def _to(self, state: State) -> None:
        if state != self.state:
            self.since = self._clock.time()
        self.state = state

    def connected(self) -> None:
        self._to("connected")
        self.attempt, self.reason, self.fix = 0, "", ""

    def retrying(self, err: MoltbotError, attempt: int, delay_s: float) -> None:
        self._to("retrying")
        self.attempt, self.reason, self.fix = attempt, err.user_message, err.hint
        self._next_at = self._clock.monotonic() + delay_s

    def rejected(self, err: MoltbotError) -> None:
        self._to("rejected")
        self.reason, self.fix = err.user_message, err.hint

    def received(self) -> None:
        self.last_in = self._clock.time()

    def sent(self) -> None:
        self.last_out = self._clock.time()

    def snapshot(self) -> dict[str, Any]:
        """What status shows (JSON-safe)."""
        out: dict[str, Any] = {
            "state": self.state,
            "since": round(self.since, 3),
            "last_in": self.last_in,
            "last_out": self.last_out,
        }
        if self.state == "retrying":
            out["attempt"] = self.attempt
            out["next_in_s"] = round(max(0.0, self._next_at - self._clock.monotonic()), 1)
        if self.state in ("retrying", "rejected"):
            out["reason"], out["fix"] = self.reason, self.fix
        return out


def describe(link: dict[str, Any]) -> str:
    """One line for a table: ``connected``, ``retrying 3, next in 4.0s: ...``, ``rejected: ...``."""
    state = str(link.get("state", ""))
    if state == "retrying":
        text = f"retrying {link.get('attempt')}, next in {link.get('next_in_s')}s"
        return f"{text}: {link.get('reason')}" if link.get("reason") else text
    if state == "rejected":
        fix = f" (fix: {link['fix']})" if link.get("fix") else ""
        return f"rejected: {link.get('reason')}{fix}"
    return state


def _ago(seconds: float) -> str:
    if seconds < 120:
        return f"{max(0, round(seconds))}s ago"
    if seconds < 7200:
        return f"{round(seconds / 60)}m ago"
    return f"{seconds / 3600:.1f}h ago"


def traffic(link: dict[str, Any], now: float) -> str:
    """When the last message came in and the last reply went out: ``in 12s ago, out 3s ago``."""
    times = (("in", link.get("last_in")), ("out", link.get("last_out")))
    parts = [f"{label} {_ago(now - float(at))}" for label, at in times if at]
    return ", ".join(parts) if parts else "nothing in or out yet"
