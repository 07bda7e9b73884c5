"""WhatsApp on a real local Ray tree (store, agent, channel and gateway actors; offline
provider).

Cloud mode: Meta's signed webhook POSTs reach the gateway actor's HTTP server, which hands them
to the channel actor; replies go out through the fake Graph API. Good, forged and replayed
posts; the refusal lands in the store's audit log.

Web mode, up to its boundary: the channel actor reaches the fake WhatsApp at the ``WaClient``
port over the bridge socket (``bridge_socket``; the fake stands where neonize stands). The
channel actor is killed while a reply is on its way out (journaled, marked read, the send not
yet taken); its replacement replays it from the journal and it is answered exactly once."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import ray

from actors.supervisor import Supervisor
from moltbot import paths
from moltbot.channels.whatsapp_bridge import serve_bridge
from moltbot.channels.whatsapp_login import link_device
from moltbot.channels.whatsapp_session import SessionFile, decode_key, key_name, new_key
from moltbot.config.schema import Config
from moltbot.security.audit import tail
from moltbot.security.vault import Vault
from moltbot.supervision.tree import build_tree, root_flags
from tests.actors.helpers import child, free_port, wait_for
from tests.actors.rig import ECHO, RAY_ENV, LoopThread, host_node
from tests.actors.rig import channel_node as rig_channel_node
from tests.fakes.whatsapp_api import (
    APP_SECRET,
    NUMBER_ID,
    SENDER,
    TOKEN,
    VERIFY_TOKEN,
    FakeGraph,
    payload,
    post_webhook,
)
from tests.fakes.whatsapp_web import ALICE, FakeWhatsApp

pytestmark = [pytest.mark.usefixtures("ray_cluster"), pytest.mark.timeout(300)]


class Rig(msgspec.Struct, kw_only=True):
    loop: Any
    graph: Any
    wa: Any
    wa2: Any  # a second "WhatsApp" for the account linked while the tree runs
    home: Path
    ns: str
    root: Any
    hook_url: str

    def post(self, body: bytes, secret: str | None) -> int:
        return int(self.loop.run(post_webhook(self.hook_url, body, secret)).status_code)

    def cloud_replies(self) -> Counter[str]:
        return Counter(m["text"]["body"] for m in list(self.graph.sent))

    def web_replies(self) -> Counter[str]:
        return Counter(text for _chat, text in list(self.wa.sent))


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    loop = LoopThread()
    graph, wa, wa2 = FakeGraph(), FakeWhatsApp(), FakeWhatsApp()
    wa.scan_after = wa2.scan_after = 1
    loop.run(graph.start())
    home = tmp_path_factory.mktemp("wa-home")
    sock = Path(tmp_path_factory.mktemp("wa-run")) / "bridge" / "wa.sock"
    bridge = loop.run(serve_bridge(wa.client, sock))
    sock2 = sock.parent / "wa2.sock"
    bridge2 = loop.run(serve_bridge(wa2.client, sock2))
    vault = Vault.create(home)
    vault.set("gateway_token", "gw-" + uuid.uuid4().hex * 2)
    key = new_key()  # linked as `moltbot channels login` does it, with the fake at the port
    session = SessionFile("home", decode_key(key), home=home)
    loop.run(link_device(wa.client(), session, lambda _code: None, timeout_s=10))
    vault.set(key_name("home"), key)
    port = free_port()
    fast = {"intensity": 20, "period": 60, "backoff": {"base_s": 0.05, "max_s": 0.5}}
    cfg = msgspec.convert(
        {
            "gateway": {"port": port},
            "agent": {"provider": "offline", "workers": 1},
            "channels": {
                "whatsapp": [
                    {
                        "account": "biz",
                        "mode": "cloud",
                        "phone_number_id": NUMBER_ID,
                        "access_token": "env:MB_WA_TOKEN",
                        "app_secret": "env:MB_WA_APP",
                        "verify_token": "env:MB_WA_VERIFY",
                        "api_base": graph.api_base,
                        "dm_policy": "open",
                    },
                    {
                        "account": "home",
                        "mode": "web",
                        "bridge_socket": str(sock),
                        "dm_policy": "open",
                    },
                    {
                        "account": "later",
                        "mode": "web",
                        "bridge_socket": str(sock2),
                        "dm_policy": "open",
                    },
                ]
            },
            "supervision": {
                "root": fast,
                "agents": fast,
                "channels": fast,
                "ping_interval_s": 0.5,
                "ping_timeout_s": 5.0,
                "shutdown_s": 3.0,
                "ready_timeout_s": 120.0,
            },
        },
        type=Config,
    )
    kids = [c for c in build_tree(cfg) if c.id in ("store", "agents", "channels", "gateway")]
    env = {
        **RAY_ENV,
        "MOLTBOT_HOME": str(home),
        "MB_WA_TOKEN": TOKEN,
        "MB_WA_APP": APP_SECRET,
        "MB_WA_VERIFY": VERIFY_TOKEN,
    }
    ns = f"t-{uuid.uuid4().hex[:8]}"
    root = Supervisor.options(  # type: ignore[attr-defined]
        name="moltbot", namespace=ns, num_cpus=0, runtime_env={"env_vars": env}
    ).remote(path="", flags=root_flags(cfg), children=kids, namespace=ns)
    try:
        ray.get(root.start_detached.remote())
        ray.get(root.ready.remote(), timeout=240)
        hook = f"http://127.0.0.1:{port}/hooks/whatsapp/biz"
        yield Rig(
            loop=loop, graph=graph, wa=wa, wa2=wa2, home=home, ns=ns, root=root, hook_url=hook
        )
    finally:
        try:
            ray.get(root.stop.remote(), timeout=60)
        finally:
            ray.kill(root)
            bridge.close()
            bridge2.close()
            loop.run(graph.stop())
            loop.close()


def channel_node(rig: Rig, cid: str) -> dict[str, Any]:
    return rig_channel_node(rig.root, cid)


def test_cloud_webhooks_through_the_gateway_actor(rig: Rig) -> None:
    body = json.dumps(payload("hello from meta", wamid="wamid.RAY1")).encode()
    wait_for(lambda: rig.post(body, APP_SECRET) == 200, 60, "the webhook taken")
    wait_for(lambda: rig.cloud_replies()[ECHO + "hello from meta"] == 1, 60, "the reply")
    assert rig.graph.sent[0]["to"] == SENDER
    assert rig.post(body, APP_SECRET) == 200  # Meta's retry, or a replay of a captured post
    assert rig.post(json.dumps(payload("forged")).encode(), "guessed-secret") == 401
    time.sleep(1.5)
    assert rig.cloud_replies() == Counter({ECHO + "hello from meta": 1})
    audit = paths.audit_file(rig.home)
    wait_for(lambda: any(r["kind"] == "webhook_refused" for r in tail(audit, 50)), 30, "the audit")
    refused = [r for r in tail(audit, 50) if r["kind"] == "webhook_refused"][-1]["fields"]
    assert refused["reason"] == "bad_signature" and refused["account"] == "biz"
    assert APP_SECRET not in audit.read_text()


def test_web_crash_mid_message_is_answered_exactly_once(rig: Rig) -> None:
    wait_for(lambda: channel_node(rig, "whatsapp:home")["state"] == "running", 120, "running")
    rig.loop.call(rig.wa.deliver, "before")
    wait_for(lambda: rig.web_replies()[ECHO + "before"] == 1, 60, "the first answer")

    rig.loop.call(setattr, rig.wa, "gate", asyncio.Event())  # the next send stays in flight
    msg = rig.loop.call(rig.wa.deliver, "mid crash")
    wait_for(lambda: msg.id in rig.wa.reads and rig.wa.sending >= 1, 60, "journaled, sending")
    restarts = host_node(rig.root, "whatsapp")["restarts"]
    ray.kill(child(rig.ns, "channels/whatsapp"), no_restart=True)  # the reply never went out
    wait_for(
        lambda: (
            host_node(rig.root, "whatsapp")["restarts"] > restarts
            and channel_node(rig, "whatsapp:home")["state"] == "running"
        ),
        120,
        "the restart",
    )
    gate = rig.wa.gate
    rig.loop.call(setattr, rig.wa, "gate", None)
    rig.loop.call(gate.set)
    wait_for(lambda: rig.web_replies()[ECHO + "mid crash"] >= 1, 60, "the replayed answer")
    time.sleep(1.5)
    assert rig.web_replies() == Counter({ECHO + "before": 1, ECHO + "mid crash": 1})
    assert all(chat == ALICE for chat, _t in rig.wa.sent)
    assert (rig.home / "whatsapp" / "home.session").is_file()


def test_an_unlinked_account_is_parked_with_the_fix_and_starts_once_linked(rig: Rig) -> None:
    path = "channels/whatsapp:later"

    def link_state() -> dict[str, Any]:
        status: dict[str, Any] = ray.get(child(rig.ns, path).status.remote(), timeout=10)
        return dict(status.get("link") or {})

    wait_for(lambda: link_state().get("state") == "rejected", 60, "parked")
    assert "moltbot channels login whatsapp:later" in link_state()["fix"]
    key = new_key()  # what `moltbot channels login whatsapp:later` does, with the fake
    session = SessionFile("later", decode_key(key), home=rig.home)
    rig.loop.run(link_device(rig.wa2.client(), session, lambda _code: None, timeout_s=10))
    Vault.open(rig.home).set(key_name("later"), key)  # the actor sees the vault change
    wait_for(lambda: link_state().get("state") == "connected", 60, "started once linked")
    rig.loop.call(rig.wa2.deliver, "now linked")
    wait_for(lambda: [t for _c, t in rig.wa2.sent] == [ECHO + "now linked"], 60, "answered")
