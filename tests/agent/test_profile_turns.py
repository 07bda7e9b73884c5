"""Turns of several agent profiles through ``AgentService`` with the real pieces the actors wire:
the fake Anthropic API (real HTTP, real SDK), providers built from the config, transcripts on
disk, and the sandbox side's ``ProfileRegistries`` (one registry per profile) as the tools port.

Each message is answered by its bound profile (prompt, model, tools); one profile's memory and
files are out of reach of another's turn; a tool the profile does not allow is refused on both
sides of the call; skills are listed by name and loaded only when asked for."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from moltbot.agent.agent_service import AgentPorts, AgentService, profile_providers
from moltbot.agent.profile_tools import ProfileRegistries
from moltbot.agent.service import approval_book, build_provider
from moltbot.config.loader import load_config_text
from moltbot.config.schema import Config
from moltbot.messages import InboundMessage, ToolContext
from moltbot.store.transcripts import AsyncTranscripts, TranscriptStore
from tests.fakes.anthropic_api import FakeAnthropicAPI, text_reply, tool_reply

pytestmark = pytest.mark.timeout(60)

KEY_VAR = "MOLTBOT_TEST_ANTHROPIC_KEY"


def config(tmp_path: Path, base_url: str) -> Config:
    raw = {
        "agent": {
            "provider": "anthropic",
            "api_key": f"env:{KEY_VAR}",
            "base_url": base_url,
            "models": ["claude-home"],
            "system_prompt": "You are the home assistant.",
            "profiles": {
                "work": {
                    "system_prompt": "You help with work.",
                    "models": ["claude-work"],
                    "tools": ["read_file", "write_file", "memory_write", "memory_search", "skill"],
                },
            },
            "bindings": [{"channel": "slack", "account": "work", "profile": "work"}],
        },
        "tools": {"workspace": str(tmp_path / "ws"), "bash": {"policy": "deny"}},
        "channels": {
            "telegram": [{"account": "main", "token": "env:T", "owners": ["42"]}],
            "slack": [
                {"account": "work", "bot_token": "env:B", "app_token": "env:A", "owners": ["U42"]}
            ],
        },
    }
    return load_config_text(json.dumps(raw))


@pytest.fixture
async def api() -> AsyncIterator[FakeAnthropicAPI]:
    async with FakeAnthropicAPI() as server:
        yield server


class Rig:
    def __init__(self, tmp_path: Path, api: FakeAnthropicAPI) -> None:
        self.cfg = cfg = config(tmp_path, api.base_url)
        env = {KEY_VAR: api.api_key}

        def build(view: Config, at: str = "$.agent.providers") -> Any:
            return build_provider(view, vault_get=lambda _n: "", environ=env, providers_at=at)

        self.sandbox = ProfileRegistries(cfg, approval_book(cfg))

        async def tools() -> ProfileRegistries:
            return self.sandbox

        transcripts = AsyncTranscripts(TranscriptStore(tmp_path / "sessions"))
        self.audit: list[tuple[str, dict[str, Any]]] = []
        ports = AgentPorts(
            transcripts=transcripts,
            tools=tools,
            audit=lambda kind, fields: self.audit.append((kind, fields)),
        )
        self.agent = AgentService(
            cfg,
            build(cfg),
            ports,
            providers=profile_providers(cfg, build),
        )

    async def aclose(self) -> None:
        await self.agent.aclose()


@pytest.fixture
async def rig(tmp_path: Path, api: FakeAnthropicAPI) -> AsyncIterator[Rig]:
    made = Rig(tmp_path, api)
    try:
        yield made
    finally:
        await made.aclose()


N = iter(range(1, 10_000))


def telegram(text: str, sender: str = "42") -> InboundMessage:
    n = next(N)
    return InboundMessage(
        id=f"telegram:main:{sender}:{n}",
        channel="telegram",
        account="main",
        chat_id=sender,
        sender_id=sender,
        text=text,
    )


def slack(text: str, sender: str = "U42") -> InboundMessage:
    n = next(N)
    return InboundMessage(
        id=f"slack:work:D1:{n}",
        channel="slack",
        account="work",
        chat_id="D1",
        sender_id=sender,
        text=text,
    )


def tool_names(request: Any) -> list[str]:
    return [t["name"] for t in request.tools]


def tool_result(request: Any) -> str:
    """The text of the last tool_result the SDK sent back."""
    for block in request.messages[-1]["content"]:
        if block.get("type") == "tool_result":
            content = block["content"]
            return content if isinstance(content, str) else json.dumps(content)
    raise AssertionError("no tool_result in the request")


async def test_each_message_is_answered_by_its_bound_profile(
    rig: Rig, api: FakeAnthropicAPI
) -> None:
    api.script(text_reply("home answer"), text_reply("work answer"))
    assert await rig.agent.answer(telegram("hi")) == "home answer"
    assert await rig.agent.answer(slack("hi")) == "work answer"
    home, work = api.requests
    assert home.model == "claude-home" and "You are the home assistant." in str(home.system)
    assert work.model == "claude-work" and "You help with work." in str(work.system)
    assert "bash" in tool_names(home) and "web_fetch" in tool_names(home)
    assert sorted(tool_names(work)) == ["memory_search", "memory_write", "read_file", "write_file"]
    status = await rig.agent.answer(slack("/status"))
    assert "profile work" in status and "claude-work" in status


async def test_a_tool_the_profile_does_not_allow_is_refused_on_both_sides(
    rig: Rig, api: FakeAnthropicAPI
) -> None:
    api.script(tool_reply("bash", {"command": "cat /etc/hostname"}), text_reply("done"))
    assert await rig.agent.answer(slack("run something")) == "done"
    assert "not available to this assistant profile" in tool_result(api.requests[-1])
    [(kind, record)] = rig.audit
    assert kind == "tool_call"
    assert (record["tool"], record["outcome"], record["profile"]) == ("bash", "denied", "work")
    # a call reaching the sandbox with the profile in its context is refused there too
    ctx = ToolContext(sender="slack:work:U42", profile="work")
    refused = await rig.sandbox.call("bash", {"command": "id"}, "s", ctx)
    assert refused.is_error and "not available" in refused.text
    unknown = await rig.sandbox.call("read_file", {"path": "x"}, "s", ToolContext(profile="zz"))
    assert unknown.is_error and "no known assistant profile" in unknown.text


async def test_one_profile_cannot_read_the_others_memory_or_files(
    rig: Rig, api: FakeAnthropicAPI, tmp_path: Path
) -> None:
    api.script(
        tool_reply("memory_write", {"text": "The safe code is 4711", "kind": "fact"}),
        tool_reply("write_file", {"path": "diary.txt", "content": "home diary 4711"}),
        text_reply("Saved."),
    )
    assert await rig.agent.answer(telegram("remember the safe code 4711")) == "Saved."
    home_memory = tmp_path / "ws" / "memory-profiles" / "default" / "MEMORY.md"
    assert "4711" in home_memory.read_text()
    [diary] = (tmp_path / "ws").rglob("diary.txt")

    ws = tmp_path / "ws"
    tries = [
        tool_reply("memory_search", {"query": "safe code"}),
        tool_reply("read_file", {"path": str(home_memory)}),
        tool_reply("read_file", {"path": "../../../../../memory-profiles/default/MEMORY.md"}),
        tool_reply("read_file", {"path": str(diary)}),
        tool_reply("read_file", {"path": "../../../../../" + str(diary.relative_to(ws))}),
        text_reply("I found nothing."),
    ]
    api.script(*tries)
    first = len(api.requests)
    assert await rig.agent.answer(slack("what is the safe code?")) == "I found nothing."
    work = list(api.requests)[first:]
    assert all("4711" not in str(r.system) for r in work)  # not recalled into its prompt
    results = [tool_result(r) for r in work[1:]]
    assert "nothing in memory matches" in results[0]
    assert all("4711" not in r for r in results), results
    assert (
        sum(
            "outside" in r or "not allowed" in r or "refused" in r or "escape" in r
            for r in results[1:]
        )
        == 4
    ), results

    work_memory = tmp_path / "ws" / "profiles" / "work" / "memory-profiles" / "work"
    api.script(tool_reply("memory_write", {"text": "Standup at 9"}), text_reply("ok"))
    await rig.agent.answer(slack("standup is at 9"))
    assert "Standup at 9" in (work_memory / "MEMORY.md").read_text()
    assert "Standup" not in home_memory.read_text()


async def test_skills_are_listed_by_name_and_loaded_only_when_asked(
    rig: Rig, api: FakeAnthropicAPI, tmp_path: Path
) -> None:
    skills = tmp_path / "ws" / "profiles" / "work" / "skills" / "weekly-report"
    skills.mkdir(parents=True)
    (skills / "SKILL.md").write_text(
        "---\nname: weekly-report\ndescription: How to write the weekly report.\n---\n"
        "STEP-ONE: list what shipped.\n"
    )
    api.script(
        tool_reply("skill", {"name": "../../../memory-profiles/default"}),
        tool_reply("skill", {"name": "weekly-report"}),
        text_reply("Here is the report."),
    )
    assert await rig.agent.answer(slack("write my weekly report")) == "Here is the report."
    first, refused, loaded = list(api.requests)[-3:]
    [spec] = [t for t in first.tools if t["name"] == "skill"]
    assert "weekly-report: How to write the weekly report." in spec["description"]
    assert "STEP-ONE" not in json.dumps(first.tools) and "STEP-ONE" not in str(first.system)
    assert "a skill name is" in tool_result(refused)
    assert "STEP-ONE: list what shipped." in tool_result(loaded)
    skills_used = [(f["skill"], f["outcome"]) for _k, f in rig.audit if f["tool"] == "skill"]
    assert skills_used == [("../../../memory-profiles/default", "error"), ("weekly-report", "ok")]
    api.script(text_reply("hi"))
    await rig.agent.answer(telegram("hello"))  # the default profile has no skills folder
    assert "skill" not in tool_names(api.requests[-1])
