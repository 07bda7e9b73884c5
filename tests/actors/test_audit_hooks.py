"""What feeds the audit log: the gateway server's login/auth/lockout/approval records (no Ray),
and, in one small real tree (store, a worker, the gateway), supervision transitions and failed
gateway logins landing in ``$MOLTBOT_HOME/audit/audit.jsonl`` as an intact chain."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import ray
from websockets.asyncio.client import connect

from moltbot import paths
from moltbot.cli.main import main as cli
from moltbot.config.loader import load_config_text
from moltbot.gateway.server import GatewayServer, GatewaySettings
from moltbot.security.audit import AuditLog, tail, verify
from moltbot.security.vault import Vault
from moltbot.supervision.spec import Backoff, ChildSpec, SupervisorFlags
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
from tests.gateway.echo_backend import EchoBackend

TOKEN = "audit-hook-token-0123456789-abcdefghijklmnop"
WRONG = "wrong-token-that-must-never-be-logged-4242"


async def login(url: str, token: str) -> dict[str, Any]:
    async with connect(url) as ws:
        return await request(ws, "c", "connect", {"auth": {"token": token}})


async def wait_records(path: Path, n: int) -> list[dict[str, Any]]:
    for _ in range(200):
        recs = tail(path, 1000)
        if len(recs) >= n:
            return recs
        await asyncio.sleep(0.02)
    raise AssertionError(f"expected {n} audit records, have {tail(path, 1000)}")


# --- the gateway server, no Ray ------------------------------------------------------------
async def test_gateway_server_audits_logins_failures_lockouts_and_approvals(
    tmp_path: Path,
) -> None:
    path = tmp_path / "audit" / "audit.jsonl"
    log = AuditLog(path)

    async def audit(kind: str, fields: dict[str, Any]) -> None:
        await asyncio.to_thread(log.append, kind, fields)

    settings = GatewaySettings(port=0, token=TOKEN, lockout_max=3, connect_timeout_s=2.0)
    gw = GatewayServer(settings, EchoBackend(), audit=audit)
    await gw.start()
    serving = asyncio.create_task(gw.serve_forever())
    try:
        url = gw.ws_url.rstrip("/")
        assert (await login(url, TOKEN))["ok"]
        async with connect(url) as ws:
            assert (await request(ws, "c", "connect", {"auth": {"token": TOKEN}}))["ok"]
            params = {"id": "a1", "decision": "approve"}
            assert (await request(ws, "r", "approvals.resolve", params))["ok"]
            params = {"id": "zz", "decision": "deny"}
            assert not (await request(ws, "r2", "approvals.resolve", params))["ok"]
        for _ in range(3):  # the third failure starts the lockout
            assert not (await login(url, WRONG))["ok"]
        refused = await login(url, TOKEN)  # locked out: even the right token is refused
        assert refused["error"]["code"] == "rate_limited"
        recs = await wait_records(path, 8)
    finally:
        await gw.stop()
        await asyncio.wait_for(serving, 5)
    kinds = [r["kind"] for r in recs]
    assert (
        kinds == ["login", "login", "approval", "approval"] + ["auth_failed"] * 2 + ["lockout"] * 2
    ), kinds
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for r in recs:
        by_kind.setdefault(r["kind"], []).append(r["fields"])
    assert by_kind["login"][0] == {"address": "127.0.0.1", "method": "token"}
    assert by_kind["approval"][0]["id"] == "a1" and by_kind["approval"][0]["outcome"] == "ok"
    assert by_kind["approval"][0]["decision"] == "approve"
    assert by_kind["approval"][1]["outcome"] == "not_found"
    assert by_kind["approval"][0]["method"] == "approvals.resolve"
    assert by_kind["auth_failed"][0] == {"address": "127.0.0.1", "reason": "unauthorized"}
    assert len(by_kind["auth_failed"]) == 2 and len(by_kind["lockout"]) == 2
    assert by_kind["lockout"][0]["address"] == "127.0.0.1"
    assert by_kind["lockout"][0]["retry_after"] > 0
    text = path.read_text()
    assert TOKEN not in text and WRONG not in text
    assert verify(path).ok


# --- a real tree ---------------------------------------------------------------------------
@pytest.mark.usefixtures("ray_cluster")
def test_tree_transitions_and_failed_logins_reach_the_audit_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    home = tmp_path / "home"
    monkeypatch.setenv("MOLTBOT_HOME", str(home))
    assert cli(["init"]) == 0
    token = Vault.open(home).get("gateway_token")
    port = free_port()
    cfg = load_config_text(json.dumps({"gateway": {"port": port}}))
    flags = SupervisorFlags(
        intensity=10, period=30, backoff=Backoff(base_s=0.05, max_s=0.3), ping_interval_s=0.5
    )
    children = [
        ChildSpec(id="store", kind="store", args={"config": cfg}),
        ChildSpec(id="worker", kind="worker", shutdown=2.0),
        ChildSpec(id="gateway", kind="gateway", args={"config": cfg}),
    ]
    audit = paths.audit_file(home)
    root, ns = start_root(flags, children, env={"MOLTBOT_HOME": str(home)})

    def records(kind: str) -> list[dict[str, Any]]:
        return [r for r in tail(audit, 1000) if r["kind"] == kind]

    def supervision(event: str, who: str) -> list[dict[str, Any]]:
        return [
            r["fields"]
            for r in records("supervision")
            if r["fields"]["event"] == event and r["fields"]["child"] == who
        ]

    try:
        wait_for(lambda: len(supervision("started", "gateway")) == 1, what="start records")
        ray.get(child(ns, "worker").crash.remote("raise"), timeout=10)
        wait_for(lambda: node(tree(root), "worker")["restarts"] == 1, what="worker restart")
        wait_for(lambda: bool(supervision("restarted", "worker")), what="restart record")
        exited = supervision("exited", "worker")
        assert len(exited) == 1 and exited[0]["exit"] == "abnormal"
        assert exited[0]["reason"] == "raised CrashRequested"
        assert exited[0]["supervisor"] == "moltbot"

        async def logins() -> None:
            assert not (await login(f"ws://127.0.0.1:{port}", WRONG))["ok"]
            assert (await login(f"ws://127.0.0.1:{port}", token))["ok"]

        asyncio.run(logins())
        wait_for(lambda: bool(records("auth_failed")) and bool(records("login")), what="logins")
        assert records("auth_failed")[0]["fields"]["reason"] == "unauthorized"
        assert records("login")[0]["fields"]["method"] == "token"
    finally:
        stop_root(root)
    text = audit.read_text()
    assert WRONG not in text and token not in text
    assert cli(["audit", "verify"]) == 0
    out = capsys.readouterr().out
    assert "chain intact" in out and "audit log OK" in out
