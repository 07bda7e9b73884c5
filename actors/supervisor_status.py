"""What a supervisor tells about its children (``moltbot status``, the web page, the CLI's
``up`` progress): state, restarts, figures, memory, and a child supervisor's own children."""

from __future__ import annotations

import asyncio
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import msgspec

from actors.registry import actor_name
from moltbot.supervision.spec import ChildType, SupervisorFlags

if TYPE_CHECKING:
    from actors.child_record import Record

FIGURES_TIMEOUT_S = 0.5


class SupervisorStatus:
    """Mixed into the Supervisor actor, which sets these attributes."""

    path: str
    flags: SupervisorFlags
    records: list[Record]
    events: deque[dict[str, Any]]

    def _child_path(self, rec: Record) -> str:
        raise NotImplementedError

    async def status(self) -> dict[str, Any]:
        now = time.time()
        children = []
        figures = await asyncio.gather(*(self._figures(r) for r in self.records))
        subs = await asyncio.gather(*(self._sub_status(r) for r in self.records))
        for rec, figs, sub in zip(self.records, figures, subs, strict=True):
            entry: dict[str, Any] = {
                "name": actor_name(self._child_path(rec)),
                "id": rec.spec.id,
                "kind": rec.spec.kind,
                "state": rec.state,
                "restarts": rec.restarts,
                "node": rec.info.get("node", ""),
                "pid": rec.info.get("pid", 0),
                "uptime": round(now - rec.started_at, 1) if rec.state == "running" else 0.0,
                "last_exit": rec.last_exit,
            }
            if rec.spec.max_memory_mb and rec.mem_mb and rec.state == "running":
                entry["memory"] = {"mb": round(rec.mem_mb, 1), "max_mb": rec.spec.max_memory_mb}
            if figs:
                entry["figures"] = figs
            if rec.name and rec.name != entry["name"]:
                entry["ray_name"] = rec.name  # a promoted standby keeps its own Ray name
            if rec.standby is not None:
                entry["standby"] = rec.standby.state()
                entry["standby_name"] = rec.standby.name
            if sub is not None:
                entry["children"] = sub.get("children", [])
                entry["strategy"] = sub.get("strategy")
            children.append(entry)
        return {
            "name": actor_name(self.path),
            "strategy": self.flags.strategy.value,
            "children": children,
        }

    async def _sub_status(self, rec: Record) -> dict[str, Any] | None:
        """A child supervisor's status ({} when it does not answer in time: one still starting
        its own children gets a short wait, so the tree's status never waits on a start)."""
        handle = rec.handle if rec.handle is not None else rec.launching
        if rec.spec.child_type != ChildType.SUPERVISOR or handle is None:
            return None
        wait = 5.0 if rec.state == "running" else 0.5
        try:
            return dict(await asyncio.wait_for(asyncio.ensure_future(handle.status.remote()), wait))
        except Exception:
            return {}

    async def _figures(self, rec: Record) -> dict[str, Any]:
        """The child's ``status_figures()`` (its ``figures()`` and pipe counts) within a short
        timeout; {} on any failure."""
        if rec.handle is None or rec.state != "running":
            return {}
        try:
            figs = await asyncio.wait_for(
                asyncio.ensure_future(rec.handle.status_figures.remote()), FIGURES_TIMEOUT_S
            )
        except Exception:  # slow, dead, or no such method: status still answers
            return {}
        return dict(figs) if isinstance(figs, dict) else {}

    async def recent_events(self, since: int = 0) -> list[dict[str, Any]]:
        return [e for e in self.events if e["seq"] > since]

    async def spec_of(self) -> list[dict[str, Any]]:
        return [msgspec.to_builtins(r.spec) for r in self.records]
