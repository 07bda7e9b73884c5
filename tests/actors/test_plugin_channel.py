"""A plugin's channel in a real tree on the session's Ray: the channel pipeline of a channel
actor, run by the plugin actor, with the real store and agent (offline provider).

One tree for the module: store, agents → agent-0, plugins → plugin:relay
(tests/plugins/fixtures/relay.py: ``inject`` delivers a message, ``send`` appends the reply to
the plugin's ``outbox`` in the store's kv, ``hold`` makes ``send`` fail until a restart).
``plugins[relay].channel_policy``: pairing, ``alice`` allowlisted.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import msgspec
import pytest
import ray

from actors import routing
from actors.gateway import RayBackend
from moltbot.config.schema import Config
from moltbot.errors import NotFound
from moltbot.plugins.manifest import source_digest
from tests.actors.helpers import FAST, child, pid_of, start_root, stop_root, supervisor, worker
from tests.plugins.support import FIXTURES, ROOT

pytestmark = pytest.mark.timeout(300)
PATH = "plugins/plugin:relay"
ECHO = "[offline] you said: "


@dataclass
class Tree:
    root: Any
    ns: str
    cfg: Config


@pytest.fixture(scope="module")
def live(ray_cluster: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tree]:
    relay = {
        "name": "relay",
        "module": f"{FIXTURES}.relay",
        "capabilities": ["channel", "storage", "gateway_methods"],
        "channel_policy": {"dm_policy": "pairing", "allow_from": ["alice"]},
        "sha256": source_digest(f"{FIXTURES}.relay"),  # not bundled with moltbot: pinned
    }
    cfg = msgspec.convert(
        {"agent": {"provider": "offline", "workers": 1}, "plugins": [relay]}, Config
    )
    children = [
        worker("store", "store", cfg),
        supervisor("agents", [worker("agent-0", "agent", cfg, index=0)]),
        supervisor("plugins", [worker("plugin:relay", "plugin", cfg, plugin="relay")]),
    ]
    home = tmp_path_factory.mktemp("plugin-channel")
    env = {"MOLTBOT_HOME": str(home), "PYTHONPATH": str(ROOT)}
    root, ns = start_root(FAST, children, env=env, ready_timeout=120)
    try:
        yield Tree(root=root, ns=ns, cfg=cfg)
    finally:
        stop_root(root)


async def relay(t: Tree, method: str, *args: Any) -> Any:
    return await routing.call(t.ns, PATH, method, *args, deadline_s=60)


async def inject(t: Tree, sender: str, mid: str, text: str) -> None:
    params = {"sender": sender, "chat": f"dm-{sender}", "id": mid, "text": text}
    assert await relay(t, "call_method", "inject", params) == {"journaled": mid}


async def store(t: Tree, method: str, *args: Any) -> Any:
    return await routing.call(t.ns, "store", method, *args, deadline_s=30)


async def outbox(t: Tree) -> list[dict[str, Any]]:
    raw = await store(t, "kv_get", "plugin.relay.outbox")
    return list(json.loads(raw)) if raw else []


async def until(cond: Any, what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not await cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def pending_ids(t: Tree) -> list[str]:
    return [m.id for m in await store(t, "pending", "relay", "relay")]


async def replies_to(t: Tree, msg_id: str) -> list[str]:
    return [o["text"] for o in await outbox(t) if o["in_reply_to"] == msg_id]


async def test_delivered_messages_are_answered_once_and_strangers_pair(live: Tree) -> None:
    await inject(live, "alice", "m1", "hello relay")
    await inject(live, "alice", "m1", "hello relay")  # re-delivered: the journal dedups it

    async def answered() -> bool:
        return bool(await replies_to(live, "relay:relay:dm-alice:m1"))

    await until(answered, "the answer to m1")
    await until(lambda: _empty(pending_ids(live)), "m1 marked done")
    await asyncio.sleep(0.5)  # a second answer would have had time to arrive
    assert await replies_to(live, "relay:relay:dm-alice:m1") == [ECHO + "hello relay"]

    await inject(live, "mallory", "m2", "let me in")  # pairing: a code, no journal, no turn

    async def coded() -> bool:
        return bool(await replies_to(live, "relay:relay:dm-mallory:m2"))

    await until(coded, "the pairing code sent to mallory")
    assert await pending_ids(live) == []  # never journaled: no turn
    book = await relay(live, "pairing_list", "relay")
    [request] = book["pending"]
    assert request["sender_id"] == "mallory"
    [notice] = await replies_to(live, "relay:relay:dm-mallory:m2")
    assert request["code"] in notice and not notice.startswith(ECHO)
    # the gateway's pairing.list / pairing.approve reach plugin channels as <channel>:<plugin>
    gateway = RayBackend(live.cfg, live.ns)
    [listed] = await gateway.pairing_list()
    assert listed["channel"] == "relay:relay" and listed["code"] == request["code"]
    with pytest.raises(NotFound):
        await gateway.pairing_approve("relay:elsewhere", request["code"])
    approved = await gateway.pairing_approve("relay:relay", request["code"], by="gateway:test")
    assert approved == {"sender": "mallory"}
    await inject(live, "mallory", "m3", "thanks")

    async def welcomed() -> bool:
        return bool(await replies_to(live, "relay:relay:dm-mallory:m3"))

    await until(welcomed, "the answer to mallory once approved")
    info = await relay(live, "describe")
    assert info["channels"] == ["relay"] and info["channel_status"]["relay"]["in"] >= 2


async def test_a_message_unfinished_when_the_plugin_dies_is_replayed_once(live: Tree) -> None:
    pid = pid_of(live.ns, PATH)
    assert await relay(live, "call_method", "hold", {}) == {"held": True}
    await inject(live, "alice", "m9", "survive this")
    msg_id = "relay:relay:dm-alice:m9"
    assert await pending_ids(live) == [msg_id]  # journaled when deliver returned
    await asyncio.sleep(1.0)  # answered by the agent, but every send fails while held
    assert await replies_to(live, msg_id) == []

    ray.kill(child(live.ns, PATH))  # the supervisor restarts it; the hold is gone with it

    async def replayed() -> bool:
        return bool(await replies_to(live, msg_id))

    await until(replayed, "the replayed answer", timeout=120)
    assert pid_of(live.ns, PATH) != pid
    await until(lambda: _empty(pending_ids(live)), "m9 marked done")
    await asyncio.sleep(0.5)
    assert await replies_to(live, msg_id) == [ECHO + "survive this"]


async def _empty(ids: Any) -> bool:
    return not await ids
