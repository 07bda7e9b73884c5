"""Agent profiles on a real local Ray: the tree built from the config (store, agents, tools,
channels) with a profile ``work`` that has its own placed agent pool and is bound to the Slack
account; Telegram stays with the default profile. Messages go through the fake Telegram and
fake Slack, the channel actors route each to its profile's pool, and ``/status`` says which
agent actor and which profile answered.

The pool is placed with Ray's own head-node resource (the only custom resource a one-node test
cluster has); placing on another node by a resource of the home lab is the same mechanism,
shown on several nodes by ``test_placement_cluster.py``."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
import ray

from actors.supervisor import Supervisor
from moltbot.config.schema import Config
from moltbot.supervision.tree import build_tree, root_flags
from tests.actors.helpers import node, tree, wait_for
from tests.actors.test_channel_actor import RAY_ENV, LoopThread
from tests.fakes.slack_api import APP_TOKEN, BOT_TOKEN, FakeSlack
from tests.fakes.telegram_api import DEFAULT_TOKEN, FakeTelegram

pytestmark = [pytest.mark.usefixtures("ray_cluster"), pytest.mark.timeout(300)]

HEAD_RESOURCE = "node:__internal_head__"


def config(tg: FakeTelegram, slack: FakeSlack, workspace: str) -> Config:
    fast = {"intensity": 20, "period": 60, "backoff": {"base_s": 0.05, "max_s": 0.5}}
    return msgspec.convert(
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
                "telegram": [
                    {
                        "account": "main",
                        "token": "env:MB_TEST_TG",
                        "api_base": tg.api_base,
                        "dm_policy": "open",
                        "poll_timeout_s": 1,
                    }
                ],
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
            "supervision": {
                "root": fast,
                "agents": fast,
                "channels": fast,
                "tools": fast,
                "ping_interval_s": 0.5,
                "ping_timeout_s": 5.0,
                "shutdown_s": 3.0,
                "ready_timeout_s": 120.0,
            },
        },
        type=Config,
    )


class Rig(msgspec.Struct, kw_only=True):
    loop: Any
    tg: Any
    slack: Any
    root: Any


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    loop = LoopThread()
    tg, slack = FakeTelegram(), FakeSlack()
    for fake in (tg, slack):
        loop.run(fake.start())
    home = tmp_path_factory.mktemp("home")
    cfg = config(tg, slack, str(home / "ws"))
    kids = [c for c in build_tree(cfg) if c.id in ("store", "agents", "tools", "channels")]
    env = {
        **RAY_ENV,
        "MOLTBOT_HOME": str(home),
        "MB_TEST_TG": DEFAULT_TOKEN,
        "MB_TEST_SLACK_BOT": BOT_TOKEN,
        "MB_TEST_SLACK_APP": APP_TOKEN,
    }
    ns = f"t-{uuid.uuid4().hex[:8]}"
    root = Supervisor.options(  # type: ignore[attr-defined]
        name="moltbot", namespace=ns, num_cpus=0, runtime_env={"env_vars": env}
    ).remote(path="", flags=root_flags(cfg), children=kids, namespace=ns)
    try:
        ray.get(root.start_detached.remote())
        ray.get(root.ready.remote(), timeout=240)
        yield Rig(loop=loop, tg=tg, slack=slack, root=root)
    finally:
        try:
            ray.get(root.stop.remote(), timeout=60)
        finally:
            ray.kill(root)
            for fake in (tg, slack):
                loop.run(fake.stop())
            loop.close()


def test_each_channel_is_answered_by_its_bound_profiles_agent_pool(rig: Rig) -> None:
    agents = node(tree(rig.root), "agents")
    names = sorted(c["name"] for c in agents["children"])
    assert names == ["moltbot.agents.agent-0", "moltbot.agents.profile:work-0"]
    assert all(c["state"] == "running" for c in agents["children"])

    rig.loop.call(rig.tg.inject_message, chat_id=42, user_id=42, text="/status")
    rig.loop.call(rig.slack.inject_message, channel="D42", user="U42", text="/status")

    def replies() -> tuple[list[str], list[str]]:
        return [s["plain"] for s in rig.tg.sent], [s["text"] for s in rig.slack.sent]

    wait_for(lambda: all(replies()), 60, "both /status answers")
    [home], [work] = replies()
    assert "moltbot agents/agent-0:" in home and "profile" not in home
    assert "moltbot agents/profile:work-0 (profile work):" in work
