"""The tools of a profile's turn, on both sides of the tool call.

- :class:`ProfileTools` (in the agent): the ``ToolRunner`` of one turn of a profile. The model
  sees only the tools the profile allows (plus ``skill`` when it has skills); a call to any
  other is refused before it leaves the agent; every call carries the profile in its
  ``ToolContext`` (set here, never by the model).
- :class:`ProfileRegistries` (in the sandbox actor): one tool registry per profile, over the
  profile's own workspace and memory (``profiles.profile_config``); it checks the allowed
  tools again, so a call naming another profile's tool is refused there too.
"""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec

from moltbot.agent.loop import ToolRunner
from moltbot.agent.plugin_tools import Outcome, tool_call_fields
from moltbot.agent.profiles import allows, profile_config, profile_names
from moltbot.agent.service import tool_registry
from moltbot.agent.skills import SkillBook, SkillProblem
from moltbot.clock import SYSTEM_CLOCK, Clock
from moltbot.config.profiles import DEFAULT_PROFILE, SKILL_TOOL
from moltbot.config.schema import Config
from moltbot.messages import ToolContext, ToolResult
from moltbot.security.audit import AuditSink
from moltbot.tools import ApprovalBook, ToolRegistry
from moltbot.tools.registry import input_schema

SKILL_DESCRIPTION = (
    "Load one of your skills (instructions for a kind of task) into this conversation, by "
    "name, when the task at hand needs it. Your skills:"
)


class SkillInput(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    name: str


def not_allowed(name: str) -> ToolResult:
    return ToolResult(
        text=f"the tool {name!r} is not available to this assistant profile",
        is_error=True,
        code="access_denied",
    )


class ProfileTools:
    """``inner`` (the agent's ``MergedTools``, or a registry) as profile ``profile`` sees it."""

    def __init__(
        self,
        inner: ToolRunner,
        cfg: Config,
        profile: str,
        skills: SkillBook | None = None,
        *,
        audit: AuditSink | None = None,
        reply_to: str = "",
    ) -> None:
        self._inner, self._cfg, self.profile, self._audit = inner, cfg, profile, audit
        self.reply_to = reply_to  # the turn's direct chat (``ToolContext.reply_to``)
        self._skills = skills if skills is not None and self._allowed(SKILL_TOOL) else None
        self._listing = self._skills.listing() if self._skills is not None else []

    def _allowed(self, name: str) -> bool:
        owner = getattr(self._inner, "owner", None)
        plugin = owner(name) if callable(owner) else None
        return allows(self._cfg, self.profile, name, plugin)

    def specs(self) -> list[dict[str, Any]]:
        specs = [s for s in self._inner.specs() if s["name"] != SKILL_TOOL]
        specs = [s for s in specs if self._allowed(str(s["name"]))]
        if self._listing:
            listed = "\n".join(f"- {name}: {about}" for name, about in self._listing)
            specs.append(
                {
                    "name": SKILL_TOOL,
                    "description": f"{SKILL_DESCRIPTION}\n{listed}",
                    "input_schema": input_schema(SkillInput),
                }
            )
        return specs

    async def call(
        self, name: str, input: dict[str, Any], session: str, ctx: ToolContext | None = None
    ) -> ToolResult:
        if name == SKILL_TOOL and self._skills is not None:
            result = await asyncio.to_thread(self._load_skill, input)
            self._record(session, name, "error" if result.is_error else "ok", input)
            return result
        if name == SKILL_TOOL or not self._allowed(name):
            self._record(session, name, "denied", {})
            return not_allowed(name)
        stamped = msgspec.structs.replace(
            ctx or ToolContext(), profile=self.profile, reply_to=self.reply_to
        )
        return await self._inner.call(name, input, session, stamped)

    def _record(self, session: str, name: str, outcome: Outcome, input: dict[str, Any]) -> None:
        """A ``tool_call`` audit record of what this layer answers itself (the other calls
        are audited by ``MergedTools``)."""
        if self._audit is None:
            return
        fields = tool_call_fields(
            session=session, tool=name, plugin=None, outcome=outcome, duration_ms=0.0, input={}
        )
        skill = input.get("name") if name == SKILL_TOOL else None
        extra = {"skill": skill[:64]} if isinstance(skill, str) else {}
        self._audit("tool_call", {**fields, "profile": self.profile, **extra})

    def _load_skill(self, input: dict[str, Any]) -> ToolResult:
        name = input.get("name") if isinstance(input, dict) else None
        if not isinstance(name, str) or set(input) != {"name"}:
            return ToolResult(
                text='invalid input for skill: expected {"name": "<skill>"}', is_error=True
            )
        assert self._skills is not None
        try:
            skill = self._skills.load(name)
        except SkillProblem as exc:
            return ToolResult(text=str(exc), is_error=True, code="not_found")
        return ToolResult(text=f"# Skill: {skill.name}\n{skill.body}")


class ProfileRegistries:
    """The sandbox's tools, one registry per profile, made on first use."""

    def __init__(
        self, cfg: Config, approvals: ApprovalBook, *, clock: Clock = SYSTEM_CLOCK
    ) -> None:
        self._cfg, self._approvals, self._clock = cfg, approvals, clock
        self._built: dict[str, ToolRegistry] = {}

    def registry(self, profile: str = DEFAULT_PROFILE) -> ToolRegistry:
        found = self._built.get(profile)
        if found is None:
            view = profile_config(self._cfg, profile)
            found = self._built[profile] = tool_registry(
                view, self._approvals, profile=profile, clock=self._clock
            )
        return found

    def specs(self, profile: str = DEFAULT_PROFILE) -> list[dict[str, Any]]:
        return self.registry(profile).specs()

    async def call(
        self, name: str, input: dict[str, Any], session: str, ctx: ToolContext | None = None
    ) -> ToolResult:
        profile = (ctx.profile if ctx is not None else "") or DEFAULT_PROFILE
        if profile not in profile_names(self._cfg):
            return ToolResult(
                text="this tool call names no known assistant profile",
                is_error=True,
                code="not_found",
            )
        if not allows(self._cfg, profile, name):
            return not_allowed(name)
        return await self.registry(profile).call(name, input, session, ctx)
