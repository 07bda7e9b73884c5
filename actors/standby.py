"""Warm standbys: a spare process per child, created with the child's class and arguments,
that has done its heavy imports (at the lowest priority) and waits.

A restart costs a new Ray worker process (~2.5 s here) plus the child's imports (a model SDK,
aiogram: a second or more of CPU). With ``supervision.<pool>.standby`` the supervisor keeps one
spare per worker child and a restart promotes it: it runs ``run(incarnation=...)`` right
away. Ray cannot rename an actor, so the promoted child keeps the spare's name
(``<name>@<n>``) and the supervisor records it under the child's path
(``actors.registry.lookup`` follows it). A new spare is made once the promoted child is up. A
spare holds the same resources as its child (a channel account's unit: the head offers two
then), so it runs where its child would.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

import ray

from actors.registry import actor_class, standby_name
from moltbot.supervision.spec import ChildSpec, ChildType, SupervisorFlags
from moltbot.supervision.tree import is_placement

if TYPE_CHECKING:
    from actors.child_record import Record

log = logging.getLogger("moltbot.supervisor")
STANDBY_DELAY_S = 1.0  # at least this long after its child started (its backlog first)


def wanted(flags: SupervisorFlags, spec: ChildSpec) -> bool:
    """Whether a child gets a spare: standby is on, it is a worker or a host (a process of
    its own), not placed on a node by custom resources (that node may come and go), not one
    started on demand (a spare would hold the very process its sleep gives back)."""
    return (
        flags.standby
        and not spec.on_demand
        and (spec.child_type == ChildType.WORKER or spec.kind == "host")
        and not any(is_placement(name) for name in spec.resources)
    )


class Standby:
    """One spare: its handle, Ray name, and the ``warm()`` call (done = ready to promote)."""

    def __init__(self, cls: Any, options: dict[str, Any], args: dict[str, Any], name: str):
        self.name = name
        self.handle = cls.options(**{**options, "name": name}).remote(**args)
        self.warm: asyncio.Future[Any] = asyncio.ensure_future(self.handle.warm.remote())
        # settles only when the spare's process dies (or once it is promoted)
        self.parked: asyncio.Future[Any] = asyncio.ensure_future(self.handle.parked.remote())

    def usable(self) -> bool:
        w = self.warm
        return w.done() and not w.cancelled() and w.exception() is None and not self.parked.done()

    def state(self) -> str:
        if self.usable():
            return "warm"
        return "failed" if self.warm.done() or self.parked.done() else "warming"

    def kill(self) -> None:
        self.warm.cancel()
        self.parked.cancel()
        ray.kill(self.handle, no_restart=True)


class Standbys:
    """Mixed into the supervisor, which sets these attributes: its children's spares."""

    flags: SupervisorFlags
    _stopping: bool
    _standby_seq: int

    def _child_path(self, rec: Record) -> str:
        raise NotImplementedError

    def _options(self, rec: Record) -> dict[str, Any]:
        raise NotImplementedError

    def _args(self, rec: Record) -> dict[str, Any]:
        raise NotImplementedError

    async def _spawn_standby(self, rec: Record, gen: int) -> None:
        """Once the child stayed up a whole period: a spare process for ``rec`` that does its
        imports at the lowest priority and then waits to be promoted. Not sooner: in a crash
        loop a spare per crash only adds a process start to each restart (measured: two
        processes starting at once stall a 2-core machine for over a second)."""
        await asyncio.sleep(max(STANDBY_DELAY_S, self.flags.period))
        if self._stopping or rec.gen != gen or rec.standby is not None:
            return
        self._standby_seq += 1
        name = standby_name(self._child_path(rec), self._standby_seq)
        cls = actor_class(rec.spec.kind)
        try:
            rec.standby = Standby(cls, self._options(rec), self._args(rec), name)
        except Exception as exc:  # a spare is an optimisation: the child runs without one
            log.warning("standby for %s not created: %s", self._child_path(rec), type(exc).__name__)

    def _take_standby(self, rec: Record) -> Standby | None:
        """The child's spare if it is warm (it becomes the child); a failed one is dropped."""
        spare = rec.standby
        if spare is None or not spare.usable():
            if spare is not None and spare.state() == "failed":
                self._drop_standby(rec)
            return None
        rec.standby = None
        return spare

    def _drop_standby(self, rec: Record) -> None:
        spare, rec.standby = rec.standby, None
        if spare is not None:
            spare.kill()
