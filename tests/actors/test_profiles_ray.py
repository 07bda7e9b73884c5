"""Agent profiles on a real local Ray: the tree built from the config (store, agents, tools,
channels) with a profile ``work`` that has its own placed agent pool and is bound to the Slack
account; Telegram stays with the default profile. Messages go through the fake Telegram and
fake Slack, the channel actors route each to its profile's pool, and ``/status`` says which
agent actor and which profile answered.

The pool is placed with Ray's own head-node resource (the only custom resource a one-node test
cluster has); placing on another node by a resource of the home lab is the same mechanism,
shown on several nodes by ``test_placement_cluster.py``."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

from moltbot.config.schema import Config
from tests.actors.helpers import node, tree, wait_for
from tests.actors.rig import fast_config, running_tree, serving, telegram_main
from tests.fakes.slack_api import APP_TOKEN, BOT_TOKEN, FakeSlack
from tests.fakes.telegram_api import DEFAULT_TOKEN, FakeTelegram

pytestmark = [pytest.mark.usefixtures("ray_cluster"), pytest.mark.timeout(300)]

HEAD_RESOURCE = "node:__internal_head__"


def config(tg: FakeTelegram, slack: FakeSlack, workspace: str) -> Config:
    return fast_config(
        {
            "agent": {
                "provider": "offline",
                "workers": 1,
                "profiles": {
                    "work": {
                        "system_prompt": "You help with work.",
                        "tools": ["read_file", "list_dir"],
                        "placement": {HEAD_RESOURCE: 0.001},
                        "workers": 1,
                    }
                },
                "bindings": [{"channel": "slack", "account": "work", "profile": "work"}],
            },
            "tools": {"workspace": workspace},
            "channels": {
                "telegram": [telegram_main(tg)],
                "slack": [
                    {
                        "account": "work",
                        "bot_token": "env:MB_TEST_SLACK_BOT",
                        "app_token": "env:MB_TEST_SLACK_APP",
                        "api_base": slack.api_base,
                        "dm_policy": "open",
                    }
                ],
            },
        },
        groups=("tools",),
    )


class Rig(msgspec.Struct, kw_only=True):
    loop: Any
    tg: Any
    slack: Any
    root: Any


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    tg, slack = FakeTelegram(), FakeSlack()
    home = tmp_path_factory.mktemp("home")
    env = {
        "MB_TEST_TG": DEFAULT_TOKEN,
        "MB_TEST_SLACK_BOT": BOT_TOKEN,
        "MB_TEST_SLACK_APP": APP_TOKEN,
    }
    ids = ("store", "agents", "tools", "channels")
    with serving(tg, slack) as loop:
        with running_tree(config(tg, slack, str(home / "ws")), ids, home, env) as (root, _):
            yield Rig(loop=loop, tg=tg, slack=slack, root=root)


def test_each_channel_is_answered_by_its_bound_profiles_agent_pool(rig: Rig) -> None:
    agents = node(tree(rig.root), "agents")
    names = sorted(c["name"] for c in agents["children"])
    assert names == ["moltbot.agents.agent-0", "moltbot.agents.profile:work-0"]
    # both pools sleep until a message is given to them (agent.idle_stop_s)
    assert all(c["state"] == "idle" for c in agents["children"])

    rig.loop.call(rig.tg.inject_message, chat_id=42, user_id=42, text="/status")
    rig.loop.call(rig.slack.inject_message, channel="D42", user="U42", text="/status")

    def replies() -> tuple[list[str], list[str]]:
        return [s["plain"] for s in rig.tg.sent], [s["text"] for s in rig.slack.sent]

    wait_for(lambda: all(replies()), 60, "both /status answers")
    [home], [work] = replies()
    assert "moltbot agents/agent-0:" in home and "profile" not in home
    assert "moltbot agents/profile:work-0 (profile work):" in work
    # each channel's first message started its own pool's agent
    woken = node(tree(rig.root), "agents")["children"]
    assert all(c["state"] == "running" and c["restarts"] == 0 for c in woken)
