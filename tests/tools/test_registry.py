"""The registry: Anthropic specs, input validation, safe error mapping."""

from __future__ import annotations

from pathlib import Path

import msgspec

from moltbot.clock import FakeClock
from moltbot.errors import PathEscape
from moltbot.messages import ToolResult
from moltbot.tools import ApprovalBook, Tool, ToolRegistry, default_registry


class EchoInput(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    text: str
    times: int = 1


def make_registry() -> ToolRegistry:
    async def echo(args: EchoInput, session: str) -> str:
        return f"{session}:{args.text * args.times}"

    async def boom(args: EchoInput, session: str) -> str:
        raise RuntimeError("postgres://admin:hunter2@db/internal exploded")

    async def refuse(args: EchoInput, session: str) -> ToolResult:
        raise PathEscape("that path is outside the workspace")

    reg = ToolRegistry()
    reg.register(Tool("echo", "Echo text.", EchoInput, echo))
    reg.register(Tool("boom", "Fails.", EchoInput, boom))
    reg.register(Tool("refuse", "Refuses.", EchoInput, refuse))
    return reg


def test_specs_are_anthropic_tool_definitions() -> None:
    specs = make_registry().specs()
    assert [s["name"] for s in specs] == ["echo", "boom", "refuse"]
    echo = specs[0]
    assert set(echo) == {"name", "description", "input_schema"}
    schema = echo["input_schema"]
    assert schema["type"] == "object"
    assert schema["required"] == ["text"]
    assert schema["properties"]["text"] == {"type": "string"}
    assert schema["properties"]["times"]["type"] == "integer"
    assert schema["additionalProperties"] is False
    assert "$ref" not in str(schema)


async def test_call_runs_the_tool() -> None:
    res = await make_registry().call("echo", {"text": "ab", "times": 2}, "s1")
    assert res == ToolResult(text="s1:abab", is_error=False)


async def test_unknown_tool_and_bad_input_are_error_results() -> None:
    reg = make_registry()
    res = await reg.call("nope", {}, "s")
    assert res.is_error and "unknown tool" in res.text and "echo" in res.text
    for bad in ({}, {"text": 3}, {"text": "x", "extra": 1}, {"text": "x", "times": "2"}):
        res = await reg.call("echo", bad, "s")
        assert res.is_error
        assert "invalid input for echo" in res.text and "text (string, required)" in res.text
    res = await reg.call("echo", ["not", "an", "object"], "s")  # type: ignore[arg-type]
    assert res.is_error


async def test_errors_are_mapped_without_leaking() -> None:
    reg = make_registry()
    res = await reg.call("boom", {"text": "x"}, "s")
    assert res.is_error
    assert "hunter2" not in res.text and "postgres" not in res.text
    assert res.text == "the boom tool failed unexpectedly"
    res = await reg.call("refuse", {"text": "x"}, "s")
    assert res == ToolResult(
        text="that path is outside the workspace", is_error=True, code="path_escape"
    )


async def test_default_registry_has_all_tools(tmp_path: Path) -> None:
    reg = default_registry(tmp_path, approvals=ApprovalBook(FakeClock()))
    names = [s["name"] for s in reg.specs()]
    assert names == ["bash", "read_file", "write_file", "edit_file", "list_dir", "web_fetch"]
    res = await reg.call("write_file", {"path": "notes/a.md", "content": "# hi\n"}, "s")
    assert not res.is_error, res.text
    res = await reg.call("read_file", {"path": "notes/a.md"}, "s")
    assert res.text == "# hi\n"
    res = await reg.call("read_file", {"path": "../../etc/passwd"}, "s")
    assert res.is_error and "not allowed" in res.text
    res = await reg.call("edit_file", {"path": "notes/a.md", "old": "hi", "new": "yo"}, "s")
    assert not res.is_error
    res = await reg.call("list_dir", {}, "s")
    assert res.text == "notes/"
    res = await reg.call("web_fetch", {"url": "file:///etc/passwd"}, "s")
    assert res.is_error and "http" in res.text
