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
from typing import Any

import ray

from moltbot.supervision.spec import ChildSpec, ChildType, SupervisorFlags
from moltbot.supervision.tree import is_placement


def wanted(flags: SupervisorFlags, spec: ChildSpec) -> bool:
    """Whether a child gets a spare: standby is on, it is a worker, not placed on a node
    by custom resources (that node may come and go)."""
    return (
        flags.standby
        and spec.child_type == ChildType.WORKER
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
