"""An agent started on demand, in a real tree on the session's Ray.

The tree: store, agents → agent-0 (offline provider; on demand, transient, idle after 2 s, as
``build_tree`` makes it from ``agent.idle_stop_s``). No agent process runs until the first
message; a channel's answer (``channel_ports.call(..., wake=True)``, the channel's own path)
starts it; idle, it ends normally (no restart) and the web chat (the gateway's backend) starts
it again, with the session's transcript kept in the store; a reset of a sleeping agent's session
wakes it too.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import msgspec
import pytest

from actors.channel_ports import AGENT_DEADLINE_S, call
from actors.gateway import RayBackend, web_session
from moltbot.config.schema import Config
from moltbot.messages import ChatFinal, InboundMessage
from moltbot.supervision.spec import Restart
from moltbot.supervision.tree import build_tree
from tests.actors import helpers
from tests.actors.helpers import (
    FAST,
    as_built,
    child_node,
    home_with_workspace,
    inbound,
    pid_of,
    start_root,
    stop_root,
    supervisor,
    wait_for,
    worker,
)

IDLE_S = 2.0


class Live(msgspec.Struct):
    root: Any
    ns: str
    cfg: Config


@pytest.fixture(scope="module")
def live(ray_cluster: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    home, workspace = home_with_workspace(tmp_path_factory.mktemp("agent-on-demand"))
    cfg = msgspec.convert(
        {"agent": {"workers": 1, "idle_stop_s": IDLE_S}, "tools": {"workspace": str(workspace)}},
        Config,
    )
    made = {c.id: c for c in build_tree(cfg)}["agents"].args["children"][0]
    assert made.on_demand and made.restart == Restart.TRANSIENT
    assert made.args["idle_stop_s"] == IDLE_S
    agent = as_built(made, cfg)
    children = [worker("store", "store", cfg), supervisor("agents", [agent])]
    root, ns = start_root(FAST, children, env={"MOLTBOT_HOME": str(home)})
    try:
        yield Live(root=root, ns=ns, cfg=cfg)
    finally:
        stop_root(root)


def agent_node(t: Live) -> dict[str, Any]:
    return child_node(t.root, "agents/agent-0")


def asleep(t: Live) -> bool:
    return helpers.asleep(t.root, t.ns, "agents/agent-0")


def user_texts(history: list[dict[str, Any]]) -> list[str]:
    """What the user said, in a session's history (a record's content: text or blocks)."""
    out = []
    for h in history:
        if h.get("role") != "user":
            continue
        content = h.get("content")
        if isinstance(content, list):
            content = " ".join(b.get("text", "") for b in content if isinstance(b, dict))
        out.append(str(content))
    return out


async def answer(t: Live, msg: InboundMessage) -> str:
    """As a channel's answer port asks (``channel_ports``): waking the agent if it sleeps."""
    owner, path = "channels/telegram:main", "agents/agent-0"
    reply = await call(t.ns, owner, path, "answer", msg, deadline_s=AGENT_DEADLINE_S, wake=True)
    return str(reply)


async def chat(t: Live, session: str, text: str) -> str:
    events = [e async for e in RayBackend(t.cfg, t.ns).chat_send(session, text)]
    final = events[-1]
    assert isinstance(final, ChatFinal)
    return final.text


async def test_the_first_message_starts_it_and_an_idle_agent_sleeps(live: Live) -> None:
    # the tree is up, with no agent process
    assert asleep(live)
    assert agent_node(live)["restarts"] == 0
    # a channel's answer starts it (the channel's port: wake=True)
    msg = inbound("hello there")
    reply = await answer(live, msg)
    assert "hello there" in reply
    assert agent_node(live)["state"] == "running"
    first = pid_of(live.ns, "agents/agent-0")
    # idle for idle_stop_s: it ends normally, which is no restart, and sleeps
    wait_for(lambda: asleep(live), IDLE_S + 20, "the idle agent asleep")
    slept = agent_node(live)
    assert slept["restarts"] == 0 and slept["last_exit"] == "normal"
    # the same message again: the new process answers it once more from the transcript's
    # done mark (idempotent per message id), not a second turn
    again = await answer(live, msg)
    assert again == reply
    assert pid_of(live.ns, "agents/agent-0") != first
    history = await call(live.ns, "test", "store", "history", msg.session_key, 50)
    assert user_texts(history) == ["hello there"]


async def test_the_web_chat_and_a_reset_wake_a_sleeping_agent(live: Live) -> None:
    wait_for(lambda: asleep(live), IDLE_S + 20, "asleep before the web chat")
    assert "first words" in await chat(live, "s-web", "first words")
    assert agent_node(live)["state"] == "running"
    wait_for(lambda: asleep(live), IDLE_S + 20, "asleep after the web chat")
    key = web_session("s-web")
    history = await call(live.ns, "test", "store", "history", key, 50)
    assert user_texts(history) == ["first words"]
    await RayBackend(live.cfg, live.ns).sessions_reset("s-web")  # wakes it to reset
    assert agent_node(live)["state"] == "running"
    assert await call(live.ns, "test", "store", "history", key, 50) == []
    wait_for(lambda: asleep(live), IDLE_S + 20, "asleep after the reset")
    assert agent_node(live)["restarts"] == 0  # sleeping and waking are never restarts
