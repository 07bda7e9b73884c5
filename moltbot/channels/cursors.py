"""Per-channel read cursors for platforms that do not re-deliver (Discord).

For every channel a message came from, the id of the last message the sink accepted and the
guild (server) it belongs to ("" for a DM). Message ids are snowflakes: numbers that grow with
time, so "after the cursor" is simply "a larger id". The book is one small JSON value in a
:class:`~moltbot.channels.base.CursorStore`; it keeps the ``max_channels`` most recently
active channels (the ones whose cursors are the newest).
"""

from __future__ import annotations

import logging

import msgspec

from moltbot.channels.base import CursorStore

log = logging.getLogger(__name__)


class Cursor(msgspec.Struct, frozen=True):
    last: int  # id of the last message accepted (or skipped on purpose) in the channel
    guild: str = ""  # "" for a direct message channel


class _Saved(msgspec.Struct, frozen=True):
    v: int = 1
    channels: dict[str, Cursor] = {}


class CursorBook:
    def __init__(self, store: CursorStore, key: str, *, max_channels: int = 200) -> None:
        self._store, self._key, self._max = store, key, max_channels
        self.channels: dict[str, Cursor] = {}
        self._loaded = False

    async def load(self) -> dict[str, Cursor]:
        if not self._loaded:
            data = await self._store.get(self._key)
            if data:
                try:
                    self.channels = dict(msgspec.json.decode(data, type=_Saved).channels)
                except (msgspec.DecodeError, msgspec.ValidationError):
                    log.error("%s unreadable: starting without cursors (no catch-up)", self._key)
            self._loaded = True
        return self.channels

    def last(self, channel: str) -> int:
        cursor = self.channels.get(channel)
        return cursor.last if cursor is not None else 0

    def advanced(self, moves: dict[str, Cursor]) -> bool:
        """Apply ``moves`` (never backwards); True when something changed."""
        changed = False
        for channel, cursor in moves.items():
            old = self.channels.get(channel)
            if old is None or cursor.last > old.last:
                self.channels[channel] = Cursor(
                    cursor.last, cursor.guild or (old.guild if old else "")
                )
                changed = True
        if len(self.channels) > self._max:
            keep = sorted(self.channels.items(), key=lambda kv: kv[1].last)[-self._max :]
            self.channels = dict(keep)
        return changed

    def forget(self, channel: str) -> None:
        self.channels.pop(channel, None)

    async def save(self) -> None:
        await self._store.put(self._key, msgspec.json.encode(_Saved(channels=self.channels)))
