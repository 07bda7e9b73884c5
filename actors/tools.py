"""The sandbox actor: runs the agent's tool calls (bash in bubblewrap, files, web_fetch).

Each ``tools/sandbox-<i>`` holds a tool registry per agent profile, each over the profile's
workspace (``moltbot.agent.profile_tools.ProfileRegistries``), and the book of
exec approvals of the sessions that shard to it (``routing.sandbox_path``). Approvals are in
memory: a restart forgets pending ones (the waiting turn is told the request expired).

A sandbox starts on its first call (the tree's ``on_demand``: the agent asks the tools
supervisor to ``wake`` it) and ends normally once ``tools.idle_stop_s`` (its ``idle_stop_s``)
passed without a call, with no call running and no approval pending. A call that comes as it
ends is refused with ``Dormant`` before anything runs; the agent wakes the next incarnation
and sends it there.
"""

from __future__ import annotations

from typing import Any

import ray

from actors.base import CHILD_OPTIONS, ChildBase
from moltbot.agent.profile_tools import ProfileRegistries
from moltbot.agent.service import approval_book, approval_dict
from moltbot.config.schema import Config
from moltbot.errors import NotFound
from moltbot.messages import ToolContext, ToolResult
from moltbot.supervision.idle import IdleWatch
from moltbot.tools import ApprovalBook


class SandboxCore(ChildBase):
    def __init__(
        self,
        *,
        path: str = "",
        config: Config | None = None,
        index: int = 0,
        idle_stop_s: float = 0.0,
        **kw: Any,
    ) -> None:
        super().__init__(path=path, **kw)
        self.config = config or Config()
        self.index = index
        # idle_stop_s: given when started on demand (the tree's ``on_demand``)
        self.idle = IdleWatch(path or "sandbox", idle_stop_s)
        self._approvals: ApprovalBook | None = None
        self._registry: ProfileRegistries | None = None

    async def setup(self) -> None:
        self._approvals = approval_book(self.config)
        self._registry = ProfileRegistries(self.config, self._approvals)
        self._registry.registry()  # the default profile's, now: a bad workspace fails the start

    async def main(self) -> None:
        """Ends (normally) after ``idle_stop_s`` idle; 0: runs until stopped."""
        if self.idle.idle_stop_s <= 0:
            return await super().main()
        await self.idle.wait_idle(held=lambda: bool(self.approvals.list_pending()))

    @property
    def registry(self) -> ProfileRegistries:
        assert self._registry is not None, "sandbox not set up"
        return self._registry

    @property
    def approvals(self) -> ApprovalBook:
        assert self._approvals is not None, "sandbox not set up"
        return self._approvals

    async def call(
        self, name: str, input: dict[str, Any], session: str, ctx: ToolContext | None = None
    ) -> ToolResult:
        """Run one tool call acting for ``ctx`` (its sender's folder, the session's trust);
        always a ``ToolResult`` (errors carry a safe message)."""
        await self._ready.wait()
        with self.idle.call():
            return await self.registry.call(name, input, session, ctx)

    async def specs(self) -> list[dict[str, Any]]:
        await self._ready.wait()
        return self.registry.specs()

    async def approvals_list(self) -> list[dict[str, Any]]:
        """Pending approvals held here (each: id, session, command, created, expires, state)."""
        await self._ready.wait()
        return [approval_dict(a) for a in self.approvals.list_pending()]

    async def approvals_resolve(self, id: str, approve: bool, by: str) -> dict[str, Any]:
        """Answer a pending approval, recording ``by``; the caller checked that ``by`` may
        (``moltbot.security.owners``). Raises ``NotFound`` (no such pending approval here)."""
        await self._ready.wait()
        return approval_dict(self.approvals.resolve(id, approve, by))

    async def approvals_get(self, id: str) -> dict[str, Any]:
        """One approval as it stands (``NotFound`` when this sandbox has none by that id)."""
        await self._ready.wait()
        found = self.approvals.get(id)
        if found is None:
            raise NotFound(f"no approval with id {id}")
        return approval_dict(found)

    async def approvals_wait(self, id: str, wait_s: float) -> dict[str, Any]:
        """The approval once answered or expired (at most ``wait_s``): the waiting turn's end."""
        await self._ready.wait()
        return approval_dict(await self.approvals.wait(id, wait_s))


SandboxActor = ray.remote(**CHILD_OPTIONS)(SandboxCore)
