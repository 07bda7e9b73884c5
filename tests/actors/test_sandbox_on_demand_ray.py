"""A sandbox started on demand, in a real tree on the session's Ray.

The tree: store, tools → sandbox-0 (on demand, transient, idle after 2 s, as ``build_tree``
makes it from ``tools.idle_stop_s``), agents → agent-0 (offline provider, whose ``!tool``
messages call tools). No sandbox process runs until the first tool call; it ends normally
when idle (not a restart) and the next call starts it again; an approval waiting in it keeps
it; a crash while in use restarts it as any transient child's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest

from actors import routing
from moltbot.config.schema import Config
from moltbot.messages import ChatEvent, ChatFinal
from moltbot.supervision.spec import Restart
from moltbot.supervision.tree import build_tree
from tests.actors import helpers
from tests.actors.helpers import (
    FAST,
    as_built,
    child,
    child_node,
    home_with_workspace,
    kill,
    node,
    pid_of,
    start_root,
    stop_root,
    supervisor,
    tree,
    wait_for,
    worker,
)

IDLE_S = 2.0


class Live(msgspec.Struct):
    root: Any
    ns: str


def config(workspace: Path) -> Config:
    return msgspec.convert(
        {
            "agent": {"workers": 1},
            "tools": {
                "workers": 1,
                "workspace": str(workspace),
                "idle_stop_s": IDLE_S,
                "bash": {"policy": "ask"},
            },
        },
        Config,
    )


@pytest.fixture(scope="module")
def live(ray_cluster: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    home, workspace = home_with_workspace(tmp_path_factory.mktemp("on-demand"))
    cfg = config(workspace)
    made = {c.id: c for c in build_tree(cfg)}["tools"].args["children"][0]
    assert made.on_demand and made.restart == Restart.TRANSIENT
    sandbox = as_built(made, cfg)
    children = [
        worker("store", "store", cfg),
        supervisor("tools", [sandbox]),
        supervisor("agents", [worker("agent-0", "agent", cfg)]),
    ]
    root, ns = start_root(FAST, children, env={"MOLTBOT_HOME": str(home)})
    try:
        yield Live(root=root, ns=ns)
    finally:
        stop_root(root)


def sandbox_node(t: Live) -> dict[str, Any]:
    return child_node(t.root, "tools/sandbox-0")


def asleep(t: Live) -> bool:
    return helpers.asleep(t.root, t.ns, "tools/sandbox-0")


async def say(t: Live, session: str, text: str) -> str:
    events: list[ChatEvent] = []
    async for ref in child(t.ns, "agents/agent-0").chat.remote(session, text):
        events.append(await ref)
    final = events[-1]
    assert isinstance(final, ChatFinal)
    return final.text


async def pending(t: Live) -> list[dict[str, Any]] | None:
    got: list[dict[str, Any]] | None = await routing.call_running(
        t.ns, "tools/sandbox-0", "approvals_list"
    )
    return got


async def test_no_process_until_the_first_tool_call_then_none_again_once_idle(
    live: Live,
) -> None:
    # the tree is up; the sandbox has no process, and holds no approvals
    assert asleep(live)
    assert sandbox_node(live)["restarts"] == 0
    assert await pending(live) is None
    # the first tool call starts it and runs there
    text = await say(live, "web:s1", '!tool write_file {"path": "a.txt", "content": "x"}')
    assert text.startswith("[offline] tool write_file returned")
    assert sandbox_node(live)["state"] == "running"
    first = pid_of(live.ns, "tools/sandbox-0")
    assert await pending(live) == []
    # idle for idle_stop_s: it ends normally, which is no restart, and sleeps
    wait_for(lambda: asleep(live), IDLE_S + 15, "the idle sandbox asleep")
    slept = sandbox_node(live)
    assert slept["restarts"] == 0 and slept["last_exit"] == "normal"
    # the next call starts a new process, which reads what the first one wrote
    assert "a.txt" in await say(live, "web:s1", "!tool list_dir {}")
    assert pid_of(live.ns, "tools/sandbox-0") != first
    assert sandbox_node(live)["restarts"] == 0


async def test_a_waiting_approval_keeps_it_and_a_crash_in_use_restarts_it(live: Live) -> None:
    asked = asyncio.create_task(say(live, "web:s2", '!tool bash {"command": "echo hi"}'))
    waiting: list[dict[str, Any]] | None = None
    for _ in range(200):
        waiting = await pending(live)
        if waiting:
            break
        await asyncio.sleep(0.1)
    assert waiting and [w["command"] for w in waiting] == ["echo hi"]
    pid = pid_of(live.ns, "tools/sandbox-0")
    await asyncio.sleep(IDLE_S * 3)  # longer than idle: the approval holds it
    assert pid_of(live.ns, "tools/sandbox-0") == pid
    assert [w["id"] for w in await pending(live) or []] == [waiting[0]["id"]]
    answer = await say(live, "web:s3", f"/deny {waiting[0]['id']}")
    assert answer.startswith(f"Denied {waiting[0]['id']}")
    assert "denied" in (await asyncio.wait_for(asked, 60)).lower()

    # in use again, then killed: a transient child that died is restarted (and counted)
    assert "a.txt" in await say(live, "web:s1", "!tool list_dir {}")
    before = sandbox_node(live)["restarts"]
    kill(live.ns, "tools/sandbox-0")
    wait_for(
        lambda: (
            sandbox_node(live)["restarts"] == before + 1
            and sandbox_node(live)["state"] == "running"
        ),
        60,
        "the restart",
    )
    wait_for(lambda: asleep(live), IDLE_S + 15, "asleep after the restart")
    assert node(tree(live.root), "tools")["state"] == "running"  # the pool never escalated
    assert sandbox_node(live)["restarts"] == before + 1  # sleeping again is not a restart
