"""Plugin tools beside the built-in ones: one tool table per turn, each call routed and audited.

- **Names.** A plugin tool keeps its own name (``remind``): the Anthropic tool name pattern
  ``^[a-zA-Z0-9_-]{1,64}$`` has no room for a ``plugin.tool`` namespace. Clashes are settled
  instead: a built-in tool always wins, then plugins in config order. A tool that clashes (or
  whose spec is malformed) is left out of the table and named in ``ToolTable.dropped``, which
  :class:`PluginToolCache` logs as a warning.
- **Freshness.** :class:`PluginToolCache` asks every configured plugin for its specs at most
  once per ``ttl_s`` seconds, all at once, one refresh at a time. A plugin that does not answer
  (down, restarting, refused, slow) has no tools until a later refresh; the turn goes on.
- **Routing.** :class:`MergedTools` is the ``ToolRunner`` of one turn: a plugin tool goes to its
  plugin, any other name to the built-in runner. Every call is reported to an audit sink (which
  never blocks): session, tool, plugin, outcome (``ok`` / ``error`` / ``denied``) and duration;
  for bash also the command, shortened. Never the other inputs: they may hold secrets.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from moltbot.agent.loop import ToolRunner
from moltbot.clock import SYSTEM_CLOCK, Clock
from moltbot.errors import MoltbotError
from moltbot.messages import ToolContext, ToolResult
from moltbot.plugins.api import TOOL_NAME
from moltbot.security.audit import AuditSink

log = logging.getLogger("moltbot.agent.plugins")

Outcome = Literal["ok", "error", "denied"]
DENIED_CODES = frozenset(
    {
        "approval_required",
        "approval_denied",
        "access_denied",
        "capability_denied",
        "path_escape",
        "fetch_refused",
    }
)  # refused by a policy, as opposed to failed
COMMAND_CHARS = 500  # of a bash command kept in its audit record
TOOLS_TTL_S = 5.0

SpecFetch = Callable[[str], Awaitable[list[dict[str, Any]] | None]]
"""A plugin's tool specs, or None when it cannot answer right now (never raises)."""


class PluginToolCaller(Protocol):
    async def call_tool(
        self, plugin: str, name: str, input: dict[str, Any], session: str
    ) -> ToolResult: ...


@dataclass(frozen=True)
class ToolTable:
    """What the model is offered in one turn, and which plugin owns which tool."""

    specs: tuple[dict[str, Any], ...] = ()
    owners: Mapping[str, str] = field(default_factory=dict)  # plugin tool name -> plugin
    dropped: tuple[str, ...] = ()  # why a plugin tool was left out, one line each

    def names(self) -> list[str]:
        return [str(s["name"]) for s in self.specs]


def clean_spec(spec: object) -> dict[str, Any] | None:
    """``spec`` as a tool definition (name, description, input_schema), or None if malformed."""
    if not isinstance(spec, Mapping):
        return None
    name = spec.get("name")
    description = spec.get("description", "")
    schema = spec.get("input_schema")
    if not (isinstance(name, str) and TOOL_NAME.match(name)):
        return None
    if not isinstance(description, str) or not isinstance(schema, Mapping):
        return None
    return {"name": name, "description": description, "input_schema": dict(schema)}


def merge_tools(
    builtin: Sequence[dict[str, Any]], plugins: Mapping[str, Sequence[object]]
) -> ToolTable:
    """Built-in specs first, then each plugin's (in the mapping's order) without clashes."""
    specs = [dict(s) for s in builtin]
    taken = {str(s["name"]) for s in specs}
    owners: dict[str, str] = {}
    dropped: list[str] = []
    for plugin, offered in plugins.items():
        for raw in offered:
            spec = clean_spec(raw)
            if spec is None:
                dropped.append(f"plugin {plugin}: a tool with a malformed spec is left out")
                continue
            name = spec["name"]
            if name in taken:
                owner = f"plugin {owners[name]}'s tool" if name in owners else "a built-in tool"
                dropped.append(f"plugin {plugin}: tool {name} is left out (same name as {owner})")
                continue
            taken.add(name)
            owners[name] = plugin
            specs.append(spec)
    return ToolTable(specs=tuple(specs), owners=owners, dropped=tuple(dropped))


class PluginToolCache:
    """The tool table, with the plugins' specs fetched at most once per ``ttl_s``."""

    def __init__(
        self,
        builtin: Sequence[dict[str, Any]],
        plugins: Sequence[str],
        fetch: SpecFetch,
        *,
        ttl_s: float = TOOLS_TTL_S,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._builtin = list(builtin)
        self._plugins = list(dict.fromkeys(plugins))
        self._fetch = fetch
        self._ttl = ttl_s
        self._clock = clock
        self._table = merge_tools(self._builtin, {})
        self._at: float | None = None
        self._lock = asyncio.Lock()
        self._noted: set[str] = set()  # warnings already logged (again once they reappear)

    async def table(self) -> ToolTable:
        if not self._plugins:
            return self._table
        async with self._lock:
            if self._at is not None and self._clock.monotonic() - self._at < self._ttl:
                return self._table
            got = await asyncio.gather(
                *(self._fetch(p) for p in self._plugins), return_exceptions=True
            )
            offered: dict[str, Sequence[object]] = {}
            notes: list[str] = []
            for plugin, specs in zip(self._plugins, got, strict=True):
                if isinstance(specs, list):
                    offered[plugin] = specs
                else:
                    if isinstance(specs, BaseException):
                        log.error("plugin %s: fetching its tools failed", plugin, exc_info=specs)
                    notes.append(f"plugin {plugin}: not available, its tools are left out")
            self._table = merge_tools(self._builtin, offered)
            self._at = self._clock.monotonic()
            self._note([*notes, *self._table.dropped])
            return self._table

    def _note(self, notes: list[str]) -> None:
        for note in notes:
            if note not in self._noted:
                log.warning("%s", note)
        self._noted = set(notes)


def outcome_of(result: ToolResult) -> Outcome:
    if not result.is_error:
        return "ok"
    return "denied" if result.code in DENIED_CODES else "error"


def tool_call_fields(
    *,
    session: str,
    tool: str,
    plugin: str | None,
    outcome: Outcome,
    duration_ms: float,
    input: Mapping[str, Any],
) -> dict[str, Any]:
    """The fields of a ``tool_call`` audit record (no tool input except a bash command)."""
    fields: dict[str, Any] = {
        "session": session,
        "tool": tool,
        "outcome": outcome,
        "duration_ms": round(duration_ms, 1),
    }
    if plugin is not None:
        fields["plugin"] = plugin
    command = input.get("command") if isinstance(input, Mapping) else None
    if plugin is None and tool == "bash" and isinstance(command, str):
        cut = len(command) > COMMAND_CHARS
        fields["command"] = command[:COMMAND_CHARS] + ("…" if cut else "")
    return fields


class MergedTools:
    """The ``ToolRunner`` of one turn: built-in and plugin tools of one ``ToolTable``."""

    def __init__(
        self,
        builtin: ToolRunner,
        plugins: PluginToolCaller,
        table: ToolTable,
        *,
        audit: AuditSink | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._builtin = builtin
        self._plugins = plugins
        self._table = table
        self._names = frozenset(table.names())
        self._audit = audit
        self._clock = clock

    def specs(self) -> list[dict[str, Any]]:
        return list(self._table.specs)

    def owner(self, name: str) -> str | None:
        """The plugin whose tool ``name`` is (None: a built-in tool)."""
        return self._table.owners.get(name)

    async def call(
        self, name: str, input: dict[str, Any], session: str, ctx: ToolContext | None = None
    ) -> ToolResult:
        plugin = self._table.owners.get(name)
        started = self._clock.monotonic()
        outcome: Outcome = "error"
        try:
            if name not in self._names:
                known = ", ".join(sorted(self._names)) or "none"
                result = ToolResult(
                    text=f"unknown tool {name!r}; available tools: {known}",
                    is_error=True,
                    code="not_found",
                )
            elif plugin is None:
                result = await self._builtin.call(name, input, session, ctx)
            else:
                result = await self._plugins.call_tool(plugin, name, input, session)
            outcome = outcome_of(result)
            return result
        except MoltbotError as exc:
            outcome = "denied" if exc.code in DENIED_CODES else "error"
            raise
        finally:
            self._record(session, name, plugin, outcome, started, input)

    def _record(
        self,
        session: str,
        name: str,
        plugin: str | None,
        outcome: Outcome,
        started: float,
        input: dict[str, Any],
    ) -> None:
        if self._audit is None:
            return
        took = (self._clock.monotonic() - started) * 1000
        fields = tool_call_fields(
            session=session,
            tool=name,
            plugin=plugin,
            outcome=outcome,
            duration_ms=took,
            input=input,
        )
        try:
            self._audit("tool_call", fields)
        except Exception:  # the audit sink must not break a turn
            log.exception("tool call %s not audited", name)
