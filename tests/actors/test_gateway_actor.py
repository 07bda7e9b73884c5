"""The gateway as a supervised actor in a real tree: protocol over the wire, streamed chat from
a real agent actor, and `moltbot chat` riding through a gateway crash and restart."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import ray
from PIL import Image
from websockets.asyncio.client import connect

from moltbot import paths
from moltbot.cli.main import main as cli
from moltbot.config.loader import load_config_text
from moltbot.gateway.client import Backoff as ClientBackoff
from moltbot.gateway.client import GatewayClient
from moltbot.security import audit
from moltbot.security.vault import Vault
from moltbot.supervision.spec import Backoff, ChildSpec, ChildType, SupervisorFlags
from tests.actors.helpers import (
    child,
    free_port,
    node,
    request,
    start_root,
    stop_root,
    tree,
    wait_for,
)

pytestmark = pytest.mark.usefixtures("ray_cluster")
ROOT = Path(__file__).resolve().parents[2]


async def tree_events_until_restarted(ws: Any, within_s: float = 30.0) -> list[dict[str, Any]]:
    """The ``tree`` events ``ws`` receives, up to the first ``restarted`` (or ``within_s``)."""
    deadline = asyncio.get_running_loop().time() + within_s
    seen: list[dict[str, Any]] = []
    while asyncio.get_running_loop().time() < deadline:
        frame = json.loads(await asyncio.wait_for(ws.recv(), within_s))
        if frame["type"] == "event" and frame["event"] == "tree":
            seen.append(frame["payload"])
            if frame["payload"].get("event") == "restarted":
                break
    return seen


def flags() -> SupervisorFlags:
    return SupervisorFlags(
        intensity=10, period=30, backoff=Backoff(base_s=0.05, max_s=0.5), ping_interval_s=0.5
    )


def sup(cid: str, kids: list[ChildSpec]) -> ChildSpec:
    return ChildSpec(
        id=cid,
        kind="supervisor",
        child_type=ChildType.SUPERVISOR,
        shutdown=30,
        args={"flags": flags(), "children": kids},
    )


def test_gateway_actor_serves_the_tree_and_chat_survives_its_restart(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("MOLTBOT_HOME", str(home))
    assert cli(["init"]) == 0
    token = Vault.open(home).get("gateway_token")
    port = free_port()
    cfg = load_config_text(
        json.dumps({"gateway": {"port": port}, "agent": {"workers": 1}, "tools": {"workers": 1}})
    )
    spec = dict(config=cfg)
    children = [
        ChildSpec(id="store", kind="store", args=spec),
        sup("tools", [ChildSpec(id="sandbox-0", kind="sandbox", args={**spec, "index": 0})]),
        sup("agents", [ChildSpec(id="agent-0", kind="agent", args={**spec, "index": 0})]),
        ChildSpec(id="gateway", kind="gateway", args=spec),
    ]
    root, ns = start_root(flags(), children, env={"MOLTBOT_HOME": str(home)})
    url = f"ws://127.0.0.1:{port}"
    try:
        health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
        assert health.status_code == 200
        assert health.headers["content-security-policy"].startswith("default-src 'self'")

        async def protocol() -> None:
            async with connect(url) as ws:
                res = await request(ws, "c", "connect", {"auth": {"token": token}})
                assert res["ok"], res
                res = await request(ws, "s", "status", {})
                assert res["ok"], res
                names = json.dumps(res["payload"])
                assert "moltbot.gateway" in names and "moltbot.agents.agent-0" in names
                res = await request(ws, "h", "health", {})
                assert res["ok"] and res["payload"]["ok"] is True
                # a picture from the web page: through the agent actor into the operator's inbox
                picture = base64.b64encode(_png()).decode()
                files = [{"name": "dot.png", "data": picture}]
                res = await request(
                    ws, "f", "chat.send", {"session": "up", "text": "see", "files": files}
                )
                assert res["ok"], res
                assert "inbox/" in res["payload"]["text"] and "image" in res["payload"]["text"]
                inbox = home / "workspace" / "operator" / "inbox"
                assert [p.suffix for p in inbox.iterdir()] == [".jpg"]
            async with connect(url) as ws:  # a wrong token is refused by the actor's gateway
                res = await request(ws, "c", "connect", {"auth": {"token": "nope" * 10}})
                assert not res["ok"] and res["error"]["code"] == "unauthorized"

        asyncio.run(protocol())

        quick = ClientBackoff(initial=0.2, maximum=1.0, give_up_after=90)

        async def chat(text: str) -> tuple[str, list[str]]:
            deltas: list[str] = []
            async with GatewayClient(url, token, session="t1", backoff=quick) as client:
                return await client.ask(text, deltas.append), deltas

        reply, deltas = asyncio.run(chat("hello there"))
        assert "hello there" in reply and "offline" in reply
        assert len(deltas) > 1 and "".join(deltas) == reply

        async def approvals_history_and_events() -> None:
            async with (
                GatewayClient(url, token, session="t3", backoff=quick) as client,
                connect(url) as ws,
            ):
                # the turn waits for the answer; the operator approves on the gateway
                asked = asyncio.create_task(client.ask('!tool bash {"command": "echo ran-ok-42"}'))
                assert (await request(ws, "c", "connect", {"auth": {"token": token}}))["ok"]
                pending: list[dict[str, Any]] = []
                for i in range(100):
                    res = await request(ws, f"a{i}", "approvals.list", {})
                    pending = res["payload"]["approvals"]
                    if pending:
                        break
                    await asyncio.sleep(0.1)
                assert [a["command"] for a in pending] == ["echo ran-ok-42"]
                assert not asked.done()
                res = await request(
                    ws, "r", "approvals.resolve", {"id": pending[0]["id"], "decision": "approve"}
                )
                assert res["ok"], res
                ran = await asyncio.wait_for(asked, 60)  # the same turn went on by itself
                assert "ran-ok-42" in ran and "/approve" not in ran, ran
                res = await request(ws, "a2", "approvals.list", {})
                assert res["payload"]["approvals"] == []
                res = await request(ws, "hist", "chat.history", {"session": "t1"})
                texts = [m.get("text") or json.dumps(m) for m in res["payload"]["messages"]]
                assert any("hello there" in t for t in texts), texts
                res = await request(ws, "sl", "sessions.list", {})
                keys = [x["key"] for x in res["payload"]["sessions"]]
                assert "web:gateway:dm:t1" in keys and "web:gateway:dm:t3" in keys
                res = await request(ws, "sr", "sessions.reset", {"session": "t1"})
                assert res["ok"], res
                res = await request(ws, "hist2", "chat.history", {"session": "t1"})
                assert res["payload"]["messages"] == []
                # reset through the agent that owns t1: what it remembers of t1 is gone too
                async with GatewayClient(url, token, session="t1", backoff=quick) as client:
                    assert "has 0 messages" in await client.ask("/status")
                # a supervision event reaches connected clients: crash the sandbox
                ray.kill(child(ns, "tools/sandbox-0"), no_restart=True)
                seen = await tree_events_until_restarted(ws)
                assert any(e["child"] == "tools/sandbox-0" for e in seen), seen

        asyncio.run(approvals_history_and_events())

        async def events_after_nobody_listened() -> None:
            # every client left: the gateway stops polling the tree; a client that comes
            # later gets what happens from then on (a crash), not what it missed before
            await asyncio.sleep(1.0)
            ray.kill(child(ns, "tools/sandbox-0"), no_restart=True)  # while nobody listens
            wait_for(lambda: node(node(tree(root), "tools"), "sandbox-0")["restarts"] == 2, 60)
            async with connect(url) as ws:
                assert (await request(ws, "c", "connect", {"auth": {"token": token}}))["ok"]
                await asyncio.sleep(1.5)  # the first look after the pause
                ray.kill(child(ns, "tools/sandbox-0"), no_restart=True)
                seen = await tree_events_until_restarted(ws)
                sandbox = [e for e in seen if e["child"] == "tools/sandbox-0"]
                assert [e["event"] for e in sandbox][-1] == "restarted", seen
                # only the crash after it connected: the one before (restarts 2) is not sent
                restarts = [e for e in sandbox if e["event"] == "restarted"]
                assert len(restarts) == 1, seen

        asyncio.run(events_after_nobody_listened())

        # kill the gateway actor: its supervisor restarts it, the client reconnects by itself
        gw_pid = int(node(tree(root), "gateway")["pid"])

        async def chat_through_crash() -> tuple[str, int]:
            async with GatewayClient(url, token, session="t2", backoff=quick) as client:
                first = await client.ask("before the crash")
                assert "before the crash" in first
                ray.kill(child(ns, "gateway"), no_restart=True)
                reply = await client.ask("after the crash")
                return reply, client.reconnects

        reply, reconnects = asyncio.run(chat_through_crash())
        assert "after the crash" in reply and reconnects >= 1
        wait_for(lambda: node(tree(root), "gateway")["restarts"] == 1, what="gateway restarted")
        assert int(node(tree(root), "gateway")["pid"]) != gw_pid

        # `moltbot chat "..."` one-shot through the real command, token from the vault
        out = subprocess.run(
            [sys.executable, "-m", "moltbot.cli.main", "chat", "--url", url, "one shot please"],
            env={**os.environ, "MOLTBOT_HOME": str(home), "PYTHONPATH": str(ROOT)},
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr
        assert "one shot please" in out.stdout
        # the gateway read its token from the vault at each start: audited, never the value
        log = paths.audit_file(home)
        reads = [
            r["fields"]
            for r in map(json.loads, log.read_text().splitlines())
            if r["kind"] == "secret_read" and r["fields"]["reader"] == "gateway"
        ]
        assert reads.count({"secret_name": "gateway_token", "reader": "gateway"}) >= 2
        assert token not in log.read_text() and audit.verify(log).ok
    finally:
        stop_root(root)


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (12, 8), (0, 0, 200)).save(out, format="PNG")
    return out.getvalue()
