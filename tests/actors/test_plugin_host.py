"""The host side of plugins in a real tree on the session's Ray: plugin tools in an agent's turn,
plugin gateway methods over a real WebSocket, and ``tool_call`` records in the audit log.

One tree for the module: store, gateway, tools → sandbox-0, agents → agent-0 (offline provider)
and plugins → plugin:hostprobe (tests/plugins/fixtures/host_probe.py). The config also lists a
plugin ``ghost`` that is never started: the agent finds no actor for it, so it has no tools,
and the turns go on without them.
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest
from websockets.asyncio.client import connect

from actors import routing
from moltbot import paths
from moltbot.config.schema import Config
from moltbot.messages import ChatEvent, ChatFinal, ChatTool
from moltbot.plugins.manifest import source_digest
from moltbot.security import audit
from moltbot.security.vault import PASSPHRASE_ENV, Vault
from tests.actors.helpers import (
    FAST,
    child,
    free_port,
    home_with_workspace,
    request,
    start_root,
    stop_root,
    supervisor,
    worker,
)
from tests.plugins.fixtures.host_probe import CRASH_DETAIL
from tests.plugins.support import FIXTURES, ROOT

TOKEN = "plugin-host-token-0123456789-abcdefghijklmn"
SESSION = "web:gateway:dm:plugins"


@dataclass
class Tree:
    root: Any
    ns: str
    home: Path
    url: str


def config(workspace: Path, port: int) -> Config:
    probe = f"{FIXTURES}.host_probe"
    pin = source_digest(probe)  # not bundled with moltbot: pinned
    both = ["tools", "gateway_methods"]
    return msgspec.convert(
        {
            "gateway": {"port": port},
            "agent": {"workers": 1},
            "tools": {"workers": 1, "workspace": str(workspace)},
            "plugins": [
                {"name": "hostprobe", "module": probe, "capabilities": both, "sha256": pin},
                {"name": "ghost", "module": probe, "capabilities": ["tools"], "sha256": pin},
            ],
        },
        Config,
    )


@pytest.fixture(scope="module")
def live(ray_cluster: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tree]:
    home, workspace = home_with_workspace(tmp_path_factory.mktemp("plugin-host"))
    assert not os.environ.get(PASSPHRASE_ENV), "the test vault uses a key file"
    Vault.create(home).set("gateway_token", TOKEN)
    port = free_port()
    cfg = config(workspace, port)
    children = [
        worker("store", "store", cfg),
        supervisor("tools", [worker("sandbox-0", "sandbox", cfg, index=0)]),
        supervisor("agents", [worker("agent-0", "agent", cfg, index=0)]),
        supervisor("plugins", [worker("plugin:hostprobe", "plugin", cfg, plugin="hostprobe")]),
        worker("gateway", "gateway", cfg),
    ]
    env = {"MOLTBOT_HOME": str(home), "PYTHONPATH": str(ROOT)}
    root, ns = start_root(FAST, children, env=env, ready_timeout=120)
    try:
        yield Tree(root=root, ns=ns, home=home, url=f"ws://127.0.0.1:{port}")
    finally:
        stop_root(root)


async def chat(t: Tree, text: str) -> list[ChatEvent]:
    return [await ref async for ref in child(t.ns, "agents/agent-0").chat.remote(SESSION, text)]


def final_text(events: list[ChatEvent]) -> str:
    final = events[-1]
    assert isinstance(final, ChatFinal), events
    return final.text


async def tool_calls(log: Path, n: int) -> list[dict[str, Any]]:
    """The ``fields`` of the audit log's tool_call records, once there are ``n`` of them."""
    for _ in range(300):
        found = [r["fields"] for r in audit.tail(log, 1000) if r["kind"] == "tool_call"]
        if len(found) >= n:
            return found
        await asyncio.sleep(0.05)
    raise AssertionError(f"expected {n} tool_call records in {audit.tail(log, 1000)}")


async def test_a_turn_calls_a_plugin_tool_and_every_tool_call_is_audited(live: Tree) -> None:
    events = await chat(live, '!tool shout {"text": "hi there"}')
    steps = [(e.name, e.status) for e in events if isinstance(e, ChatTool)]
    assert steps == [("shout", "started"), ("shout", "done")]
    # the offline model answers from the tool result it was sent: the plugin's text reached it
    assert final_text(events) == f"[offline] tool shout returned: HI THERE! (said in {SESSION})"

    listed = final_text(await chat(live, "!tool list_dir {}"))
    assert "hello.txt" in listed and "plugin's list_dir" not in listed  # the built-in won
    asking = asyncio.create_task(chat(live, '!tool bash {"command": "echo audited-42"}'))
    pending: list[dict[str, Any]] = []
    while not pending:  # the turn waits for an answer: the operator denies it
        await asyncio.sleep(0.1)
        pending = await routing.call(live.ns, "tools/sandbox-0", "approvals_list")
    await routing.call(
        live.ns, "tools/sandbox-0", "approvals_resolve", pending[0]["id"], False, "gateway:test"
    )
    asked = final_text(await asyncio.wait_for(asking, 60))
    assert "the user denied this" in asked

    log = paths.audit_file(live.home)
    shout, listing, bash = await tool_calls(log, 3)
    assert shout["plugin"] == "hostprobe" and shout["outcome"] == "ok"
    assert shout["tool"] == "shout" and shout["session"] == SESSION
    assert isinstance(shout["duration_ms"], float) and shout["duration_ms"] > 0
    assert set(shout) == {"session", "tool", "plugin", "outcome", "duration_ms"}  # no input
    assert (listing["tool"], listing["outcome"], "plugin" in listing) == ("list_dir", "ok", False)
    assert (bash["tool"], bash["outcome"], bash["command"]) == ("bash", "denied", "echo audited-42")
    assert audit.verify(log).ok


async def test_plugin_gateway_methods_over_a_real_websocket(live: Tree) -> None:
    async with connect(live.url) as ws:
        assert (await request(ws, "c", "connect", {"auth": {"token": TOKEN}}))["ok"]
        res = await request(ws, "1", "plugin.hostprobe.echo", {"a": [1, 2], "b": "x"})
        assert res["ok"] is True, res
        assert res["payload"] == {"plugin": "hostprobe", "params": {"a": [1, 2], "b": "x"}}

        res = await request(ws, "2", "plugin.hostprobe.nope", {})
        assert res["error"]["code"] == "not_found", res
        assert res["error"]["message"] == "plugin 'hostprobe' has no method 'nope'"
        res = await request(ws, "3", "plugin.nobody.echo", {})
        assert res["error"]["code"] == "not_found", res
        assert res["error"]["message"] == "no plugin named 'nobody'"

        res = await request(ws, "4", "plugin.hostprobe.refuse", {})
        assert res["error"] == {
            "code": "plugin_error",
            "message": "hostprobe will not do that",
            "hint": "ask for echo instead",
        }
        res = await request(ws, "5", "plugin.hostprobe.crash", {"x": 1})
        assert res["error"]["code"] == "plugin_error", res
        assert res["error"]["message"] == "plugin 'hostprobe': method crash failed"
        assert CRASH_DETAIL not in json.dumps(res)

        res = await request(ws, "6", "plugin.hostprobe.echo", {})  # the connection survived
        assert res["ok"] is True and res["payload"]["params"] == {}
