"""Catch-up cursors for platforms that keep history but have no ack (BlueBubbles' message query).

The adapter asks the platform for everything created since its cursor, hands it to the sink
oldest first and moves the cursor only past messages the sink accepted; the cursor is kept in a
``CursorStore`` (the store actor's key/value space in production), so the next adapter
instance, after a crash, an outage or a restart, starts where the last one stopped.

Creation timestamps are not a perfect order: a message can reach the platform's database a
little after a newer one (two chats writing at once). So the cursor looks ``LOOKBACK_MS`` behind
its timestamp and remembers the ids it accepted in that window (``recent``); a message seen
again there is skipped, a late one is delivered.
"""

from __future__ import annotations

import logging

import msgspec

log = logging.getLogger(__name__)

LOOKBACK_MS = 15_000
RECENT_MAX = 1024  # ids remembered at most (the oldest go first)


class Cursor(msgspec.Struct, kw_only=True):
    """``ts``: creation time (ms) of the newest accepted message; ``floor``: nothing created
    before it is ever delivered (a first start begins at the newest message then, not at the
    whole history); ``recent``: accepted id -> creation time, for the lookback window."""

    ts: int = 0
    floor: int = 0
    recent: dict[str, int] = {}

    @classmethod
    def starting_at(cls, ts: int, guid: str | None) -> Cursor:
        return cls(ts=ts, floor=ts, recent={guid: ts} if guid else {})

    def after(self) -> int:
        """Ask the platform for messages created at or after this time (ms)."""
        return max(self.floor, self.ts - LOOKBACK_MS, 0)

    def seen(self, guid: str) -> bool:
        return guid in self.recent

    def accept(self, guid: str, ts: int, *, advance: bool = True) -> None:
        """Remember ``guid``; ``advance``: the sink took everything up to it, so the cursor may
        move to its time (not after an earlier refusal, which must be fetched again)."""
        self.recent[guid] = ts
        if advance and ts > self.ts:
            self.ts = ts
        horizon = self.ts - LOOKBACK_MS
        if len(self.recent) > RECENT_MAX or any(t < horizon for t in self.recent.values()):
            keep = sorted(((t, g) for g, t in self.recent.items() if t >= horizon), reverse=True)
            self.recent = {g: t for t, g in keep[:RECENT_MAX]}

    def encode(self) -> bytes:
        return msgspec.json.encode(self)

    @classmethod
    def decode(cls, data: bytes | None) -> Cursor | None:
        """The saved cursor; None when there is none or it is unreadable (logged)."""
        if not data:
            return None
        try:
            return msgspec.json.decode(data, type=cls)
        except (msgspec.DecodeError, msgspec.ValidationError):
            log.error("catch-up cursor unreadable; starting from the newest message")
            return None
