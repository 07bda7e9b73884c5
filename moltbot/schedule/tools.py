"""schedule_add, schedule_list, schedule_remove: the agent's tools over the scheduler's jobs.

The jobs are the owner's: a turn for anyone else (a stranger, a group member who is not an
owner) is refused, so nobody else can read the owner's jobs or make the assistant speak first.
A session holding content from the web or files cannot add a job either (a page must not plant
a standing order); the owner adds it from a fresh conversation (``/reset``) or with
``moltbot cron add``. A job added from a chat answers in the owner's DM on that account.

The tools run in the agent actor (``WithScheduleTools`` wraps the turn's other tools), since
they talk to the scheduler actor, not to a sandbox.
"""

from __future__ import annotations

import datetime
import json
import time
from typing import Annotated, Any, Literal, Protocol

import msgspec

from moltbot.agent.loop import ToolRunner
from moltbot.agent.plugin_tools import outcome_of, tool_call_fields
from moltbot.clock import SYSTEM_CLOCK, Clock
from moltbot.config.schema import Config
from moltbot.errors import AccessDenied
from moltbot.messages import ToolContext, ToolResult
from moltbot.security import owners
from moltbot.security.audit import AuditSink
from moltbot.tools import scope
from moltbot.tools.registry import Tool, ToolRegistry

NOT_OWNER = (
    "scheduled jobs belong to the owner of this assistant: only their turns may see or set them"
)
UNTRUSTED = (
    "this conversation holds content from the web or from files, so it cannot add a scheduled "
    "job; the owner can add it in a new conversation (/reset) or with `moltbot cron add`"
)
ADD_DESCRIPTION = (
    "Schedule a job for the owner: at each fire you get its text as a message from the "
    'scheduler and your answer is sent to the owner. kind "once": a reminder, spec an ISO '
    'time (2026-12-05T09:00, in tz); kind "cron": spec a cron expression ("0 9 * * 1-5"). '
    'text: what you should do or say then. catch_up: "skip" (default) or "once" (run once '
    "after downtime). Use schedule_list first to learn the current time."
)
LIST_DESCRIPTION = "List the owner's scheduled jobs (id, kind, spec, next fire) and the time now."
REMOVE_DESCRIPTION = "Remove one of the owner's scheduled jobs by its id."


class Jobs(Protocol):
    """The scheduler, as the tools reach it (its errors come back as moltbot errors)."""

    async def add(self, request: dict[str, Any]) -> dict[str, Any]: ...
    async def list(self) -> list[dict[str, Any]]: ...
    async def remove(self, job_id: str) -> dict[str, Any]: ...


class AddInput(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    kind: Literal["once", "cron"]
    spec: Annotated[str, msgspec.Meta(min_length=1, max_length=100)]
    text: Annotated[str, msgspec.Meta(min_length=1, max_length=2000)]
    id: Annotated[str, msgspec.Meta(max_length=32)] = ""
    catch_up: Literal["skip", "once"] = "skip"
    tz: Annotated[str, msgspec.Meta(max_length=64)] = "UTC"


class ListInput(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    pass


class RemoveInput(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    id: Annotated[str, msgspec.Meta(min_length=1, max_length=32)]


def _iso(ts: float) -> str:
    if not ts:
        return "never"
    return datetime.datetime.fromtimestamp(ts, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def schedule_tools(jobs: Jobs, cfg: Config, clock: Clock = SYSTEM_CLOCK) -> ToolRegistry:
    def ctx() -> ToolContext:
        current = scope.current()
        if owners.approver(cfg, current.sender) is None:
            raise AccessDenied(NOT_OWNER)
        return current

    def now() -> str:
        return f"now: {_iso(clock.time())}"

    async def add(args: AddInput, session: str) -> ToolResult:
        current = ctx()
        if current.untrusted:
            raise AccessDenied(UNTRUSTED)
        # the owner's direct chat: the one being answered, else (asked in a group) the sender's
        request = {**msgspec.to_builtins(args), "deliver_to": current.reply_to or current.sender}
        job = await jobs.add(request)
        return ToolResult(text=f"scheduled {job['id']}: next fire {_iso(job['next_at'])} ({now()})")

    async def list_jobs(args: ListInput, session: str) -> ToolResult:
        ctx()
        found = await jobs.list()
        rows = [
            {
                "id": j["id"],
                "kind": j["kind"],
                "spec": j["spec"],
                "text": j["text"],
                "next": _iso(j["next_at"]),
            }
            for j in found
        ]
        return ToolResult(text=f"{now()}\n" + (json.dumps(rows) if rows else "no jobs"))

    async def remove(args: RemoveInput, session: str) -> ToolResult:
        ctx()
        job = await jobs.remove(args.id)
        return ToolResult(text=f"removed {job['id']}")

    registry = ToolRegistry()
    registry.register(Tool("schedule_add", ADD_DESCRIPTION, AddInput, add))
    registry.register(Tool("schedule_list", LIST_DESCRIPTION, ListInput, list_jobs))
    registry.register(Tool("schedule_remove", REMOVE_DESCRIPTION, RemoveInput, remove))
    return registry


class WithScheduleTools:
    """A turn's tools plus the schedule tools (which run here, not in a sandbox)."""

    def __init__(
        self, inner: ToolRunner, schedule: ToolRegistry, *, audit: AuditSink | None = None
    ) -> None:
        self._inner, self._schedule, self._audit = inner, schedule, audit
        self._names = frozenset(schedule.names())

    def specs(self) -> list[dict[str, Any]]:
        taken = {str(s["name"]) for s in self._schedule.specs()}
        return [s for s in self._inner.specs() if s["name"] not in taken] + self._schedule.specs()

    async def call(
        self, name: str, input: dict[str, Any], session: str, ctx: ToolContext | None = None
    ) -> ToolResult:
        if name not in self._names:
            return await self._inner.call(name, input, session, ctx)
        started = time.monotonic()
        result = await self._schedule.call(name, input, session, ctx)
        if self._audit is not None:  # like every tool call (plugin_tools.MergedTools)
            took = (time.monotonic() - started) * 1000
            self._audit(
                "tool_call",
                tool_call_fields(
                    session=session,
                    tool=name,
                    plugin=None,
                    outcome=outcome_of(result),
                    duration_ms=took,
                    input=input,
                ),
            )
        return result
