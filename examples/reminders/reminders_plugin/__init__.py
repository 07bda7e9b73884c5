"""A small moltbot plugin: reminders the agent can set, fired by a scheduler loop.

Tools: ``remind`` {in_seconds, text} and ``list_reminders`` {include_fired}. Reminders live in
the plugin's private storage (the store's kv, key ``reminders``), so they survive a restart of
the plugin; ``run`` marks due ones as fired (and logs them) every ``tick_s`` seconds.

Config entry::

    {"name": "reminders", "module": "reminders_plugin",
     "capabilities": ["tools", "storage"], "config": {"tick_s": 1.0}}
"""

from __future__ import annotations

import asyncio
import time
import uuid
import weakref
from typing import TYPE_CHECKING, Annotated

import msgspec
from msgspec import Meta

if TYPE_CHECKING:
    from moltbot.plugins import PluginAPI

__version__ = "0.1.0"
KEY = "reminders"
YEAR_S = 366 * 24 * 3600


class RemindersConfig(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    tick_s: Annotated[float, Meta(gt=0, le=3600)] = 1.0
    max_pending: Annotated[int, Meta(ge=1, le=10_000)] = 100


class RemindInput(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    in_seconds: Annotated[float, Meta(ge=0, le=YEAR_S)]
    text: Annotated[str, Meta(min_length=1, max_length=500)]


class ListInput(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    include_fired: bool = True


class Reminder(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    session: str
    text: str
    due: float
    created: float
    fired_at: float | None = None


MANIFEST = {
    "name": "reminders",
    "version": __version__,
    "description": "Reminders: the agent sets them, a scheduler fires them when due.",
    "capabilities": ["tools", "storage"],
    "config": RemindersConfig,
}

# one read-modify-write of the list at a time (tools and the loop), per plugin instance
_locks: weakref.WeakKeyDictionary[PluginAPI, asyncio.Lock] = weakref.WeakKeyDictionary()
_decoder = msgspec.json.Decoder(list[Reminder])


def _lock(api: PluginAPI) -> asyncio.Lock:
    return _locks.setdefault(api, asyncio.Lock())


async def load(api: PluginAPI) -> list[Reminder]:
    raw = await api.kv_get(KEY)
    return [] if raw is None else _decoder.decode(raw)


async def save(api: PluginAPI, items: list[Reminder]) -> None:
    await api.kv_put(KEY, msgspec.json.encode(items))


async def remind(api: PluginAPI, args: RemindInput, session: str, now: float | None = None) -> str:
    now = time.time() if now is None else now
    async with _lock(api):
        items = await load(api)
        pending = [r for r in items if r.fired_at is None]
        if len(pending) >= api.config.max_pending:
            return f"too many pending reminders ({len(pending)}); wait for some to fire"
        item = Reminder(
            id=uuid.uuid4().hex[:8],
            session=session,
            text=args.text,
            due=now + args.in_seconds,
            created=now,
        )
        await save(api, [*items, item])
    return f"reminder {item.id} set for {args.in_seconds:g}s from now: {args.text}"


async def list_reminders(api: PluginAPI, args: ListInput, session: str) -> str:
    items = [r for r in await load(api) if r.session == session]
    if not args.include_fired:
        items = [r for r in items if r.fired_at is None]
    if not items:
        return "no reminders"
    lines = []
    for r in sorted(items, key=lambda r: r.due):
        state = "fired" if r.fired_at is not None else "pending"
        lines.append(f"{r.id} [{state}] {r.text}")
    return "\n".join(lines)


async def fire_due(api: PluginAPI, now: float) -> list[Reminder]:
    """Mark every reminder due by ``now`` as fired; returns the ones fired this time."""
    async with _lock(api):
        items = await load(api)
        fired = [r for r in items if r.fired_at is None and r.due <= now]
        if not fired:
            return []
        done = {r.id for r in fired}
        await save(
            api, [msgspec.structs.replace(r, fired_at=now) if r.id in done else r for r in items]
        )
    for r in fired:
        api.log(f"reminder {r.id} fired for {r.session}: {r.text}")
    return fired


def setup(api: PluginAPI) -> None:
    async def _remind(args: RemindInput, session: str) -> str:
        return await remind(api, args, session)

    async def _list(args: ListInput, session: str) -> str:
        return await list_reminders(api, args, session)

    api.register_tool(
        "remind", "Set a reminder: text to remind of, in_seconds from now.", RemindInput, _remind
    )
    api.register_tool(
        "list_reminders",
        "List this conversation's reminders (pending and fired).",
        ListInput,
        _list,
    )


async def run(api: PluginAPI) -> None:
    while True:
        await fire_due(api, time.time())
        await asyncio.sleep(api.config.tick_s)
