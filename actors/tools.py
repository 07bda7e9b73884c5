"""The sandbox actor: runs the agent's tool calls (bash in bubblewrap, files, web_fetch).

Each ``tools/sandbox-<i>`` holds a tool registry over the configured workspace and the book of
exec approvals of the sessions that shard to it (``routing.sandbox_path``). Approvals are in
memory: a restart forgets pending ones (the model is told to ask again).
"""

from __future__ import annotations

from typing import Any

import ray

from actors.base import CHILD_OPTIONS, ChildBase
from moltbot.agent.service import approval_book, approval_dict, tool_registry
from moltbot.config.schema import Config
from moltbot.messages import ToolContext, ToolResult
from moltbot.tools import ApprovalBook, ToolRegistry


@ray.remote(**CHILD_OPTIONS)
class SandboxActor(ChildBase):
    def __init__(
        self, *, path: str = "", config: Config | None = None, index: int = 0, **kw: Any
    ) -> None:
        super().__init__(path=path, **kw)
        self.config = config or Config()
        self.index = index
        self._approvals: ApprovalBook | None = None
        self._registry: ToolRegistry | None = None

    async def setup(self) -> None:
        self._approvals = approval_book(self.config)
        self._registry = tool_registry(self.config, self._approvals)

    @property
    def registry(self) -> ToolRegistry:
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
        return await self.registry.call(name, input, session, ctx)

    async def specs(self) -> list[dict[str, Any]]:
        await self._ready.wait()
        return self.registry.specs()

    async def approvals_list(self) -> list[dict[str, Any]]:
        """Pending approvals held here (each: id, session, command, created, expires, state)."""
        await self._ready.wait()
        return [approval_dict(a) for a in self.approvals.list_pending()]

    async def approvals_resolve(
        self, id: str, approve: bool, by_session: str | None = None
    ) -> dict[str, Any]:
        """Answer a pending approval; ``by_session`` None means an operator on the gateway.

        Raises ``NotFound`` (no such pending approval here) or ``AccessDenied`` (another chat).
        """
        await self._ready.wait()
        return approval_dict(self.approvals.resolve(id, approve, by_session))
