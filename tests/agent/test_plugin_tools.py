"""Plugin tools beside the built-in ones, without Ray: the merge, the cache, routing and audit.

The turn tests use real parts: the offline provider, the real built-in tool registry over a temp
workspace, and the ``hostprobe`` test plugin loaded in-process through the plugin loader.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator
from pathlib import Path
from typing import Any

import pytest

from moltbot.agent.loop import TurnRunner
from moltbot.agent.plugin_tools import (
    COMMAND_CHARS,
    MergedTools,
    PluginToolCache,
    ToolTable,
    merge_tools,
    outcome_of,
    tool_call_fields,
)
from moltbot.agent.providers.base import ModelRequest, ProviderEvent
from moltbot.agent.providers.offline import OfflineProvider
from moltbot.clock import FakeClock
from moltbot.errors import ApprovalDenied
from moltbot.messages import ChatEvent, ChatFinal, ChatTool, ToolResult
from moltbot.plugins.loader import LoadedPlugin, activate, prepare
from moltbot.store.transcripts import AsyncTranscripts, TranscriptStore
from moltbot.tools import ApprovalBook, ToolRegistry, default_registry
from tests.plugins.support import FIXTURES, Host, entry

SESSION = "web:gateway:dm:me"
SCHEMA = {"type": "object", "properties": {}}


def spec(name: str, description: str = "", **extra: Any) -> dict[str, Any]:
    return {"name": name, "description": description or name, "input_schema": SCHEMA, **extra}


# --- merging -----------------------------------------------------------------------------------
def test_builtin_names_win_then_plugins_in_order_and_malformed_specs_are_left_out() -> None:
    builtin = [spec("bash"), spec("list_dir")]
    table = merge_tools(
        builtin,
        {
            "reminders": [spec("remind", extra_key=1), spec("bash"), spec("list")],
            "notes": [spec("list"), spec("note"), {"name": "bad name!"}, "nonsense"],
            "empty": [],
        },
    )
    assert table.names() == ["bash", "list_dir", "remind", "list", "note"]
    assert table.owners == {"remind": "reminders", "list": "reminders", "note": "notes"}
    assert table.specs[2] == spec("remind")  # only name, description, input_schema go on
    assert table.dropped == (
        "plugin reminders: tool bash is left out (same name as a built-in tool)",
        "plugin notes: tool list is left out (same name as plugin reminders's tool)",
        "plugin notes: a tool with a malformed spec is left out",
        "plugin notes: a tool with a malformed spec is left out",
    )
    assert merge_tools(builtin, {}) == ToolTable(specs=tuple(builtin))


def test_specs_need_a_valid_name_a_text_description_and_an_object_schema() -> None:
    offered: list[object] = [
        {"name": "x" * 65, "description": "", "input_schema": SCHEMA},
        {"name": "ok", "description": 3, "input_schema": SCHEMA},
        {"name": "ok", "description": "", "input_schema": "schema"},
        {"name": "ok"},
        {"name": "fine-name_2", "input_schema": SCHEMA},  # description defaults to ""
    ]
    table = merge_tools([], {"p": offered})
    assert table.names() == ["fine-name_2"] and len(table.dropped) == 4
    assert table.specs[0]["description"] == ""


# --- the cache ---------------------------------------------------------------------------------
class Plugins:
    """Answers spec requests from a dict; a plugin mapped to None is down, to an error broken."""

    def __init__(self, answers: dict[str, list[dict[str, Any]] | Exception | None]) -> None:
        self.answers = answers
        self.asked: list[str] = []
        self.gate: asyncio.Event | None = None

    async def fetch(self, plugin: str) -> list[dict[str, Any]] | None:
        self.asked.append(plugin)
        if self.gate is not None:
            await self.gate.wait()
        answer = self.answers[plugin]
        if isinstance(answer, Exception):
            raise answer
        return answer


async def test_the_cache_refreshes_after_its_ttl_and_a_down_plugin_only_loses_its_tools(
    caplog: pytest.LogCaptureFixture,
) -> None:
    clock = FakeClock()
    plugins = Plugins({"up": [spec("remind")], "down": None})
    cache = PluginToolCache([spec("bash")], ["up", "down"], plugins.fetch, ttl_s=5, clock=clock)
    caplog.set_level(logging.WARNING, "moltbot.agent.plugins")
    first = await cache.table()
    assert first.names() == ["bash", "remind"] and plugins.asked == ["up", "down"]
    assert ["plugin down: not available, its tools are left out"] == caplog.messages
    clock.advance(4.9)
    assert await cache.table() is first and len(plugins.asked) == 2  # cached
    plugins.answers["down"] = [spec("note"), spec("bash")]
    clock.advance(0.1)
    second = await cache.table()
    assert second.names() == ["bash", "remind", "note"] and len(plugins.asked) == 4
    assert second.owners == {"remind": "up", "note": "down"}
    clash = "plugin down: tool bash is left out (same name as a built-in tool)"
    assert caplog.messages[-1] == clash
    clock.advance(5)
    await cache.table()
    assert len(caplog.messages) == 2  # the same clash is not logged at every refresh

    plugins.answers["up"] = RuntimeError("a bug in the fetch")
    clock.advance(5)
    third = await cache.table()
    assert third.names() == ["bash", "note"]
    assert "plugin up: fetching its tools failed" in caplog.messages


async def test_one_refresh_at_a_time_and_no_fetch_without_plugins() -> None:
    plugins = Plugins({"a": [spec("one")]})
    plugins.gate = asyncio.Event()
    cache = PluginToolCache([], ["a", "a"], plugins.fetch, clock=FakeClock())
    waiting = [asyncio.create_task(cache.table()) for _ in range(3)]
    await asyncio.sleep(0.01)
    plugins.gate.set()
    tables = await asyncio.gather(*waiting)
    assert plugins.asked == ["a"] and all(t.names() == ["one"] for t in tables)

    nothing = Plugins({})
    bare = PluginToolCache([spec("bash")], [], nothing.fetch)
    assert (await bare.table()).names() == ["bash"] and nothing.asked == []


# --- routing and audit in a turn -------------------------------------------------------------
class InProcessPlugins:
    """``PluginToolCaller`` over plugins loaded in this process; each call takes 250 ms."""

    def __init__(self, loaded: dict[str, LoadedPlugin], clock: FakeClock) -> None:
        self.loaded = loaded
        self.clock = clock
        self.calls: list[tuple[str, str]] = []

    async def specs(self, plugin: str) -> list[dict[str, Any]] | None:
        found = self.loaded.get(plugin)
        return None if found is None else found.api.registered.tools.specs()

    async def call_tool(
        self, plugin: str, name: str, input: dict[str, Any], session: str
    ) -> ToolResult:
        self.calls.append((plugin, name))
        self.clock.advance(0.25)
        if name == "forbidden":
            raise ApprovalDenied("no")
        return await self.loaded[plugin].api.registered.tools.call(name, input, session)


class Recording:
    """The offline provider, keeping every request it was sent."""

    def __init__(self) -> None:
        self.inner = OfflineProvider()
        self.requests: list[ModelRequest] = []

    @property
    def name(self) -> str:
        return "recording"

    async def stream(self, request: ModelRequest) -> AsyncGenerator[ProviderEvent, None]:
        self.requests.append(request)
        async for event in self.inner.stream(request):
            yield event


@pytest.fixture
async def hostprobe() -> LoadedPlugin:
    pc = entry("hostprobe", f"{FIXTURES}.host_probe", capabilities=["tools", "gateway_methods"])
    loaded = prepare(pc, Host().services())
    await activate(loaded)
    return loaded


def builtin(tmp_path: Path) -> ToolRegistry:
    (tmp_path / "ws").mkdir()
    (tmp_path / "ws" / "operator").mkdir(parents=True)
    (tmp_path / "ws" / "operator" / "hello.txt").write_text("hi\n")
    return default_registry(tmp_path / "ws", approvals=ApprovalBook(FakeClock()))


async def test_a_turn_offers_plugin_tools_routes_each_call_and_audits_it(
    tmp_path: Path, hostprobe: LoadedPlugin
) -> None:
    clock = FakeClock()
    plugins = InProcessPlugins({"hostprobe": hostprobe}, clock)
    registry = builtin(tmp_path)
    cache = PluginToolCache(registry.specs(), ["hostprobe", "gone"], plugins.specs, clock=clock)
    table = await cache.table()
    audited: list[tuple[str, dict[str, Any]]] = []

    def audit(kind: str, fields: dict[str, Any]) -> None:
        audited.append((kind, fields))

    tools = MergedTools(registry, plugins, table, audit=audit, clock=clock)
    provider = Recording()
    transcripts = AsyncTranscripts(TranscriptStore(tmp_path / "sessions"))
    runner = TurnRunner(provider, tools, transcripts, max_turns=3)

    async def turn(text: str) -> list[ChatEvent]:
        return [e async for e in runner.run_turn(SESSION, text)]

    events = await turn('!tool shout {"text": "hi"}')
    names = [s["name"] for s in provider.requests[0].tools]
    assert names.count("list_dir") == 1 and names[-1] == "shout"  # the plugin's list_dir: out
    assert names[: len(registry.names())] == registry.names()
    results = provider.requests[1].messages[-1]["content"]
    assert results[0]["type"] == "tool_result"
    assert results[0]["content"] == f"HI! (said in {SESSION})"  # what the model was given
    final = events[-1]
    assert isinstance(final, ChatFinal)
    assert final.text == f"[offline] tool shout returned: HI! (said in {SESSION})"

    listed = await turn("!tool list_dir {}")
    assert "hello.txt" in listed[-1].text  # type: ignore[union-attr]
    assert plugins.calls == [("hostprobe", "shout")]  # list_dir stayed built-in

    long = "echo " + "x" * 600
    asked = await turn(f'!tool bash {{"command": "{long}"}}')
    assert "needs the user's approval" in asked[-1].text  # type: ignore[union-attr]
    unknown = await turn("!tool nosuch {}")
    assert "unknown tool 'nosuch'" in unknown[-1].text  # type: ignore[union-attr]
    assert "shout" in unknown[-1].text  # type: ignore[union-attr]
    refused = await turn("!tool forbidden {}")
    tool_events = [e for e in refused if isinstance(e, ChatTool)]
    assert [e.status for e in tool_events] == ["started", "error"]

    assert [kind for kind, _ in audited] == ["tool_call"] * 5
    shout, listing, bash, nosuch, forbidden = (fields for _, fields in audited)
    assert shout == {
        "session": SESSION,
        "tool": "shout",
        "plugin": "hostprobe",
        "outcome": "ok",
        "duration_ms": 250.0,
    }
    assert listing == {"session": SESSION, "tool": "list_dir", "outcome": "ok", "duration_ms": 0.0}
    assert bash["outcome"] == "denied" and "plugin" not in bash
    assert bash["command"] == long[:COMMAND_CHARS] + "…"
    assert nosuch["outcome"] == "error" and nosuch["tool"] == "nosuch"
    assert forbidden["outcome"] == "error" and plugins.calls == [("hostprobe", "shout")]
    # "forbidden" is in no table, so it never reached a plugin; a plugin tool that raises one
    # of our refusals is audited as denied (and the turn goes on, as above):
    table_with = ToolTable(specs=(spec("forbidden"),), owners={"forbidden": "hostprobe"})
    direct = MergedTools(registry, plugins, table_with, audit=audit, clock=clock)
    with pytest.raises(ApprovalDenied):
        await direct.call("forbidden", {"secret": "s3cret"}, SESSION)
    assert audited[-1][1]["outcome"] == "denied" and "s3cret" not in str(audited[-1])


async def test_a_broken_audit_sink_never_breaks_a_call(
    tmp_path: Path, hostprobe: LoadedPlugin
) -> None:
    def broken(kind: str, fields: dict[str, Any]) -> None:
        raise RuntimeError("audit down")

    plugins = InProcessPlugins({"hostprobe": hostprobe}, FakeClock())
    table = merge_tools([], {"hostprobe": await plugins.specs("hostprobe") or []})
    tools = MergedTools(ToolRegistry(), plugins, table, audit=broken)
    result = await tools.call("shout", {"text": "still"}, SESSION)
    assert result == ToolResult(text=f"STILL! (said in {SESSION})")
    bad = await tools.call("shout", {"nope": 1}, SESSION)
    assert bad.is_error and outcome_of(bad) == "error"


def test_tool_call_fields_keep_no_input_but_a_builtin_bash_command() -> None:
    fields = tool_call_fields(
        session="s",
        tool="write_file",
        plugin=None,
        outcome="ok",
        duration_ms=1.23456,
        input={"path": "a", "content": "token=abc"},
    )
    assert fields == {"session": "s", "tool": "write_file", "outcome": "ok", "duration_ms": 1.2}
    short = tool_call_fields(
        session="s", tool="bash", plugin=None, outcome="ok", duration_ms=0, input={"command": "ls"}
    )
    assert short["command"] == "ls"
    assert outcome_of(ToolResult(text="x", is_error=True, code="path_escape")) == "denied"
    assert outcome_of(ToolResult(text="x", is_error=True, code="sandbox_unavailable")) == "error"
