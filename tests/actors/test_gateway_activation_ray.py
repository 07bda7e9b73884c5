"""The loopback gateway, socket-activated, in a real tree on the session's Ray.

The tree: store, gateway (on demand, transient, ``listen``, idle after 2 s, as ``build_tree``
makes it from ``gateway.idle_stop_s``). At boot the root holds the port and no gateway
process runs; the first connection (the page) starts it and is answered; a logged-in
WebSocket holds it awake past ``idle_stop_s``, and so does the web session its login was
given until it expires (``web_session.idle_minutes``: 0.5 here); then it ends normally (no
restart) and the port still answers, starting a new gateway; a crash restarts it on the same
port.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import msgspec
import pytest
from websockets.asyncio.client import connect

from moltbot.cli.main import main as cli
from moltbot.config.loader import load_config_text
from moltbot.security.vault import Vault
from moltbot.supervision.spec import Restart
from moltbot.supervision.tree import build_tree
from tests.actors import helpers
from tests.actors.helpers import (
    FAST,
    as_built,
    child_node,
    free_port,
    kill,
    pid_of,
    request,
    start_root,
    stop_root,
    wait_for,
    worker,
)

IDLE_S = 2.0
SESSION_S = 30.0  # web_session.idle_minutes: 0.5


class Live(msgspec.Struct):
    root: Any
    ns: str
    port: int
    token: str


@pytest.fixture(scope="module")
def live(ray_cluster: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    home = tmp_path_factory.mktemp("activation") / "home"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MOLTBOT_HOME", str(home))
        assert cli(["init"]) == 0
    token = Vault.open(home).get("gateway_token")
    port = free_port()
    gateway = {"port": port, "idle_stop_s": IDLE_S, "web_session": {"idle_minutes": 0.5}}
    cfg = load_config_text(json.dumps({"gateway": gateway}))
    made = {c.id: c for c in build_tree(cfg)}["gateway"]
    assert made.on_demand and made.restart == Restart.TRANSIENT and made.args["listen"] is True
    children = [worker("store", "store", cfg), as_built(made, cfg)]
    root, ns = start_root(FAST, children, env={"MOLTBOT_HOME": str(home)})
    try:
        yield Live(root=root, ns=ns, port=port, token=token)
    finally:
        stop_root(root)


def gateway_node(t: Live) -> dict[str, Any]:
    return child_node(t.root, "gateway")


def asleep(t: Live) -> bool:
    return helpers.asleep(t.root, t.ns, "gateway")


async def logged_in(t: Live) -> Any:
    ws = await connect(f"ws://127.0.0.1:{t.port}")
    res = await request(ws, "c", "connect", {"auth": {"token": t.token}})
    assert res["ok"], res
    return ws


def test_the_first_connection_starts_it_and_an_idle_gateway_sleeps(live: Live) -> None:
    assert asleep(live)  # the port is held by the root; no gateway process
    page = httpx.get(f"http://127.0.0.1:{live.port}/", timeout=30)  # waits while it starts
    assert page.status_code == 200 and "<html" in page.text.lower()
    # the page comes from the gateway as soon as it listens; the root marks it running when
    # its ready call returns, a moment later (a fresh clone's CI once saw "starting" here)
    helpers.wait_for(
        lambda: gateway_node(live)["state"] == "running", timeout=10.0, what="gateway running"
    )
    assert gateway_node(live)["state"] == "running"
    first = pid_of(live.ns, "gateway")

    async def held_by_a_client() -> None:
        ws = await logged_in(live)
        try:
            await asyncio.sleep(IDLE_S * 3)  # longer than idle: the connection holds it
            assert pid_of(live.ns, "gateway") == first
            res = await request(ws, "h", "health", {})
            assert res["ok"] and res["payload"]["ok"] is True
        finally:
            await ws.close()

    asyncio.run(held_by_a_client())
    time.sleep(IDLE_S * 3)  # nobody connected, but the login's web session is still valid
    assert pid_of(live.ns, "gateway") == first
    wait_for(lambda: asleep(live), SESSION_S + IDLE_S + 20, "the idle gateway asleep")
    slept = gateway_node(live)
    assert slept["restarts"] == 0 and slept["last_exit"] == "normal"

    async def again() -> None:  # the port still answers: a new gateway takes it
        ws = await logged_in(live)
        try:
            res = await request(ws, "s", "status", {})
            assert res["ok"] and "moltbot.gateway" in json.dumps(res["payload"])
        finally:
            await ws.close()

    asyncio.run(again())
    assert pid_of(live.ns, "gateway") != first
    assert gateway_node(live)["restarts"] == 0


def test_a_crashed_gateway_is_restarted_on_the_same_port(live: Live) -> None:
    httpx.get(f"http://127.0.0.1:{live.port}/healthz", timeout=30)  # awake
    before = gateway_node(live)["restarts"]
    kill(live.ns, "gateway")
    wait_for(
        lambda: (
            gateway_node(live)["restarts"] == before + 1
            and gateway_node(live)["state"] == "running"
        ),
        60,
        "the restart",
    )
    health = httpx.get(f"http://127.0.0.1:{live.port}/healthz", timeout=30)
    assert health.status_code == 200
    wait_for(lambda: asleep(live), IDLE_S + 20, "asleep after the restart")
    assert gateway_node(live)["restarts"] == before + 1  # sleeping is not a restart
