"""Agent profiles and bindings as pure functions: config errors naming the JSON path and the fix,
binding resolution (first match wins, ``default`` otherwise), the profile's view of the config,
and where the tree places a profile's agents."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from moltbot.agent import profiles
from moltbot.agent.profiles import Route, agent_path, resolve, route_of, route_of_session
from moltbot.agent.service import approval_book, tool_registry
from moltbot.config.loader import load_config, load_config_text
from moltbot.config.profiles import BUILTIN_TOOLS, SCHEDULE_TOOLS, SEND_FILE_TOOL, SKILL_TOOL
from moltbot.config.schema import Config
from moltbot.errors import ConfigError
from moltbot.media import send_tool
from moltbot.messages import InboundMessage
from moltbot.schedule.tools import schedule_tools
from moltbot.supervision.tree import build_tree

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


SLACK_WORK = {"slack": [{"account": "work", "bot_token": "env:B", "app_token": "env:A"}]}


def cfg_of(agent: dict[str, Any], tmp_path: Path | None = None, **extra: Any) -> Config:
    raw: dict[str, Any] = {"agent": agent, "channels": SLACK_WORK, **extra}
    if tmp_path is not None:
        raw["tools"] = {"workspace": str(tmp_path / "ws")}
    return load_config_text(json.dumps(raw))


AGENT = {
    "system_prompt": "You are the home assistant.",
    "profiles": {
        "work": {"system_prompt": "You help with work.", "tools": ["read_file", "skill"]},
        "family": {"system_prompt": "You help the family.", "models": ["claude-haiku-4-5"]},
    },
    "bindings": [
        {"channel": "slack", "account": "work", "profile": "work"},
        {"channel": "telegram", "chat": "-100777", "profile": "family"},
        {"sender": "U_BOSS", "profile": "family"},  # never reached on slack:work (rule 1 wins)
        {"channel": "telegram", "sender": "99", "profile": "work"},
    ],
}


@pytest.mark.parametrize(
    ("route", "profile"),
    [
        (Route(channel="slack", account="work", chat="D1", sender="U1"), "work"),
        (Route(channel="slack", account="work", chat="D1", sender="U_BOSS"), "work"),
        (Route(channel="slack", account="home", chat="D1", sender="U_BOSS"), "family"),
        (Route(channel="telegram", account="main", chat="-100777", sender="5"), "family"),
        (Route(channel="telegram", account="main", chat="99", sender="99"), "work"),
        (Route(channel="telegram", account="main", chat="42", sender="42"), "default"),
        (Route(channel="signal", account="phone", chat="+1", sender="+1"), "default"),
        (Route(channel="web", account="gateway"), "default"),
    ],
)
def test_the_first_matching_binding_wins_else_default(route: Route, profile: str) -> None:
    assert resolve(cfg_of(AGENT), route) == profile


def test_routes_of_messages_and_session_keys() -> None:
    msg = InboundMessage(
        id="x",
        channel="telegram",
        account="main",
        chat_id="-100777",
        sender_id="5",
        text="hi",
        is_group=True,
    )
    assert route_of(msg) == Route(channel="telegram", account="main", chat="-100777", sender="5")
    assert route_of(None) == Route(channel="web", account="gateway")
    cfg = cfg_of(AGENT)
    assert resolve(cfg, route_of_session(msg.session_key)) == "family"
    assert resolve(cfg, route_of_session("telegram:main:dm:99")) == "work"
    assert resolve(cfg, route_of_session("web:gateway:dm:abc")) == "default"


def test_no_profiles_is_the_old_single_agent_unchanged(tmp_path: Path) -> None:
    cfg = cfg_of({"system_prompt": "plain"}, tmp_path)
    assert profiles.profile_names(cfg) == ["default"]
    assert profiles.profile_config(cfg, "default") is cfg  # the very same config
    assert resolve(cfg, Route(channel="slack", account="x", sender="y")) == "default"
    assert agent_path(cfg, "telegram:main:dm:1", "default").startswith("agents/agent-")
    assert profiles.workspace(cfg, "default") == tmp_path / "ws"


def test_a_profile_overlays_the_agent_with_its_own_folders(tmp_path: Path) -> None:
    cfg = cfg_of(AGENT, tmp_path)
    work = profiles.profile_config(cfg, "work")
    family = profiles.profile_config(cfg, "family")
    assert work.agent.system_prompt == "You help with work."
    assert work.agent.models == cfg.agent.models  # not given: the agent's
    assert family.agent.models == ["claude-haiku-4-5"]
    assert work.tools.workspace == str(tmp_path / "ws" / "profiles" / "work")
    assert family.tools.workspace == str(tmp_path / "ws" / "profiles" / "family")
    assert profiles.skills_folder(cfg, "work") == tmp_path / "ws" / "profiles" / "work" / "skills"
    assert profiles.has_own_provider(cfg, "family") and not profiles.has_own_provider(cfg, "work")
    assert profiles.allows(cfg, "work", "read_file") and not profiles.allows(cfg, "work", "bash")
    assert profiles.allows(cfg, "family", "bash")  # no list: every tool


class NoJobs:
    async def add(self, request: dict[str, Any]) -> dict[str, Any]:
        raise AssertionError("not called")

    async def list(self) -> list[dict[str, Any]]:
        return []

    async def remove(self, job_id: str) -> dict[str, Any]:
        raise AssertionError("not called")


def test_builtin_tool_names_match_the_registry(tmp_path: Path) -> None:
    """A new built-in tool must be added to BUILTIN_TOOLS, or profiles could not allow it."""
    cfg = cfg_of({}, tmp_path)
    names = set(tool_registry(cfg, approval_book(Config())).names())
    names |= set(schedule_tools(NoJobs(), cfg).names())
    assert set(SCHEDULE_TOOLS) <= names
    names |= {send_tool.NAME}  # offered by the agent to a turn answering a chat (media)
    assert send_tool.NAME == SEND_FILE_TOOL
    assert names | {SKILL_TOOL} == set(BUILTIN_TOOLS)


@pytest.mark.parametrize(
    ("agent", "plugins", "path", "fix"),
    [
        (
            {"bindings": [{"channel": "slack", "profile": "wrok"}], "profiles": {"work": {}}},
            [],
            "$.agent.bindings[0].profile",
            "use one of: default, work",
        ),
        (
            {"profiles": {"work": {"tools": ["read_file", "rm_rf"]}}},
            [],
            "$.agent.profiles.work.tools[1]",
            "plugin:<name>",
        ),
        (
            {"profiles": {"work": {"tools": ["plugin:nope"]}}},
            [],
            "$.agent.profiles.work.tools[0]",
            "use one of: none",
        ),
        (
            {"profiles": {"work": {"workspace": "/srv/../etc"}}},
            [],
            "$.agent.profiles.work.workspace",
            "plain path",
        ),
        (
            {"profiles": {"work": {"memory_dir": "/"}}},
            [],
            "$.agent.profiles.work.memory_dir",
            "plain path",
        ),
        (
            {"providers": [{"kind": "offline"}], "profiles": {"w": {"models": ["m"]}}},
            [],
            "$.agent.profiles.w.models",
            'own "providers"',
        ),
        (
            {"profiles": {"w": {"providers": [{"kind": "openai", "models": ["m"]}]}}},
            [],
            "$.agent.profiles.w.providers[0].base_url",
            "Ollama",
        ),
        ({"profiles": {"Work!": {}}}, [], '$.agent.profiles["Work!"]', "lower-case"),
    ],
)
def test_bad_profiles_and_bindings_name_the_json_path_and_the_fix(
    agent: dict[str, Any], plugins: list[Any], path: str, fix: str
) -> None:
    with pytest.raises(ConfigError) as info:
        cfg_of(agent, plugins=plugins)
    assert info.value.path.startswith(path)
    assert fix in info.value.fix


def test_a_binding_to_an_account_that_does_not_exist_is_an_error() -> None:
    bad = {
        "profiles": {"w": {}},
        "bindings": [{"channel": "slack", "account": "wrk", "profile": "w"}],
    }
    with pytest.raises(ConfigError) as info:
        cfg_of(bad)
    assert info.value.path == "$.agent.bindings[0].account"
    assert "did you mean 'work'" in info.value.problem and "use one of: work" in info.value.fix


def test_a_profiles_memory_is_its_own_even_when_the_default_has_a_memory_dir(
    tmp_path: Path,
) -> None:
    from moltbot.agent.memory import memory_store

    agent = {"memory": {"dir": str(tmp_path / "home-memory")}, "profiles": {"w": {}}}
    cfg = cfg_of(agent, tmp_path)
    home = memory_store(profiles.profile_config(cfg, "default"))
    work = memory_store(profiles.profile_config(cfg, "w"), profile="w")
    assert home.folder == tmp_path / "home-memory"
    assert work.folder == tmp_path / "ws" / "profiles" / "w" / "memory-profiles" / "w"
    own = cfg_of({"profiles": {"w": {"memory_dir": str(tmp_path / "w-mem")}}}, tmp_path)
    assert memory_store(profiles.profile_config(own, "w"), profile="w").folder == tmp_path / "w-mem"


def test_a_did_you_mean_for_a_misspelt_profile_or_tool() -> None:
    with pytest.raises(ConfigError) as info:
        cfg_of({"profiles": {"work": {}}, "bindings": [{"profile": "wrok"}]})
    assert "did you mean 'work'" in info.value.problem
    with pytest.raises(ConfigError) as info:
        cfg_of({"profiles": {"work": {"tools": ["read_fille"]}}})
    assert "did you mean 'read_file'" in info.value.problem


def test_a_plugins_tools_are_allowed_by_its_name() -> None:
    plugin = {"name": "notes", "module": "notes_plugin"}
    cfg = cfg_of({"profiles": {"w": {"tools": ["plugin:notes"]}}}, plugins=[plugin])
    assert profiles.allows(cfg, "w", "notes_add", plugin="notes")
    assert not profiles.allows(cfg, "w", "other_add", plugin="other")
    assert not profiles.allows(cfg, "w", "notes_add")  # a built-in by that name: not listed


def test_a_placed_profile_gets_its_own_agent_pool_on_its_node() -> None:
    cfg = cfg_of(
        {
            "workers": 2,
            "profiles": {
                "local": {"placement": {"gpu_box": 0.01}, "workers": 2},
                "work": {},
            },
        },
        cluster={"placement": {"agents/*": {"resources": {"lab": 0.001}}}},
    )
    [agents] = [c for c in build_tree(cfg) if c.id == "agents"]
    kids = {c.id: c.resources for c in agents.args["children"]}
    assert kids == {
        "agent-0": {"lab": 0.001},
        "agent-1": {"lab": 0.001},
        "profile:local-0": {"lab": 0.001, "gpu_box": 0.01},
        "profile:local-1": {"lab": 0.001, "gpu_box": 0.01},
    }
    assert agent_path(cfg, "signal:phone:dm:+1", "local") in (
        "agents/profile:local-0",
        "agents/profile:local-1",
    )
    assert agent_path(cfg, "signal:phone:dm:+1", "work").startswith("agents/agent-")


def test_the_homelab_example_places_its_local_model_profile() -> None:
    cfg = load_config(CONFIGS / "homelab.json")
    local = cfg.agent.profiles["local"]
    assert local.providers[0].kind == "openai" and local.placement == {"gpu_box": 0.01}
    route = Route(channel="signal", account="phone", chat="+15557654321", sender="+15557654321")
    assert resolve(cfg, route) == "local"
    [agents] = [c for c in build_tree(cfg) if c.id == "agents"]
    placed = [c for c in agents.args["children"] if c.id.startswith("profile:")]
    assert [(c.id, c.resources) for c in placed] == [("profile:local-0", {"gpu_box": 0.01})]
