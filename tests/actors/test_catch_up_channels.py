"""Channels whose platforms do not redeliver (iMessage through BlueBubbles, Discord): on a real
local Ray tree (store, agent, channel actors; offline provider) against the fake BlueBubbles
and Discord servers (the real discord.py client: REST and the gateway WebSocket).
The channel actor is killed; messages that arrive while it is down are caught up from the
platform's history by its replacement (its cursor is in the store), each answered exactly once,
and nothing answered before the crash is answered again."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
import ray

from tests.actors.helpers import child, killed, pid_of, wait_for
from tests.actors.rig import ECHO, channel_node, fast_config, host_node, running_tree, serving
from tests.fakes.bluebubbles_api import DM_ADDRESS, PASSWORD, FakeBlueBubbles
from tests.fakes.discord_api import BOT_TOKEN, GUILD_CHANNEL_ID, GUILD_ID, FakeDiscord

DISCORD_DM = "300000000000000001"
ALICE = "400000000000000001"

pytestmark = [pytest.mark.usefixtures("ray_cluster"), pytest.mark.timeout(300)]


def settled(ns: str, channel: str, account: str) -> None:
    """Wait until every reply seen is marked done (written just behind the send): a kill in
    between answers again after the restart, the one window channels keep (README)."""
    store = child(ns, "store")
    wait_for(lambda: not ray.get(store.pending.remote(channel, account), timeout=10), 30, "marked")


class Rig(msgspec.Struct, kw_only=True):
    loop: Any
    bb: Any
    dc: Any
    ns: str
    root: Any

    def replies(self) -> Counter[str]:
        return Counter(str(m["message"]) for m in list(self.bb.sent))

    def dm(self, text: str) -> None:
        self.loop.call(self.bb.inject_message, text, sender=DM_ADDRESS)

    def discord_replies(self) -> Counter[str]:
        return Counter(str(m.get("content")) for m in list(self.dc.sent))

    def discord(self, text: str, *, guild: bool = False) -> None:
        where = (
            {"channel_id": GUILD_CHANNEL_ID, "guild_id": GUILD_ID, "mention_bot": True}
            if guild
            else {"channel_id": DISCORD_DM}
        )
        self.loop.call(self.dc.inject_message, author_id=ALICE, content=text, **where)


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    bb, dc = FakeBlueBubbles(), FakeDiscord()
    home = tmp_path_factory.mktemp("catch-up-home")
    env = {"MB_TEST_BB": PASSWORD, "MB_TEST_DC": BOT_TOKEN}
    with serving(bb, dc) as loop:
        cfg = fast_config(
            {
                "channels": {
                    "imessage": [
                        {
                            "account": "home",
                            "api_base": bb.api_base,
                            "password": "env:MB_TEST_BB",
                            "dm_policy": "open",
                            "poll_interval_s": 0.3,
                        },
                    ],
                    "discord": [
                        {
                            "account": "main",
                            "token": "env:MB_TEST_DC",
                            "api_base": dc.api_base,
                            "dm_policy": "allowlist",
                            "allow_from": [ALICE],
                            "groups": {"allow": [GUILD_CHANNEL_ID]},
                        },
                    ],
                },
            }
        )
        with running_tree(cfg, ("store", "agents", "channels"), home, env) as (root, ns):
            yield Rig(loop=loop, bb=bb, dc=dc, ns=ns, root=root)


def test_imessages_sent_while_the_channel_is_down_are_answered_once(rig: Rig) -> None:
    path = "channels/imessage:home"
    rig.dm("before the crash")
    wait_for(lambda: rig.replies()[ECHO + "before the crash"] == 1, 60, "the first answer")
    settled(rig.ns, "imessage", "home")
    pid = pid_of(rig.ns, path)
    restarts = host_node(rig.root, "imessage")["restarts"]

    killed(child(rig.ns, "channels/imessage"))  # the process its accounts share
    later = [f"while down {i}" for i in range(3)]
    for text in later:  # BlueBubbles keeps them; nobody is polling
        rig.dm(text)
    wait_for(
        lambda: (
            host_node(rig.root, "imessage")["restarts"] > restarts
            and channel_node(rig.root, "imessage:home")["state"] == "running"
        ),
        120,
        "the restart",
    )
    assert pid_of(rig.ns, path) != pid
    wait_for(lambda: all(rig.replies()[ECHO + t] >= 1 for t in later), 60, "caught up")
    time.sleep(1.5)  # a few more polls: anything answered twice would show by now
    replies = rig.replies()
    assert {t: replies[ECHO + t] for t in [*later, "before the crash"]} == dict.fromkeys(
        [*later, "before the crash"], 1
    )
    saved = ray.get(child(rig.ns, "store").kv_get.remote("cursor.imessage.home"), timeout=10)
    assert saved and b"ts" in saved  # the cursor the replacement started from


def test_discord_messages_sent_while_the_channel_is_down_are_answered_once(rig: Rig) -> None:
    path = "channels/discord:main"
    connected = lambda: ray.get(child(rig.ns, path).figures.remote(), timeout=10)["link"]["state"]  # noqa: E731
    # a new account reads nothing sent before its first connection (it has no cursor yet)
    wait_for(lambda: connected() == "connected", 60, "the gateway connection")
    rig.discord("dm before")
    rig.discord("guild before", guild=True)
    for text in ("dm before", "guild before"):
        wait_for(lambda t=text: rig.discord_replies()[ECHO + t] == 1, 60, f"answer to {text}")
    settled(rig.ns, "discord", "main")
    restarts = host_node(rig.root, "discord")["restarts"]

    killed(child(rig.ns, "channels/discord"))  # the process its accounts share
    later = ["dm while down 0", "dm while down 1"]
    for text in later:  # Discord keeps them in the channels' history; nothing redelivers them
        rig.discord(text)
    rig.discord("guild while down", guild=True)
    wait_for(
        lambda: (
            host_node(rig.root, "discord")["restarts"] > restarts
            and channel_node(rig.root, "discord:main")["state"] == "running"
        ),
        120,
        "the restart",
    )
    texts = [*later, "guild while down"]
    wait_for(lambda: all(rig.discord_replies()[ECHO + t] >= 1 for t in texts), 60, "caught up")
    time.sleep(1.5)
    replies = rig.discord_replies()
    every = [*texts, "dm before", "guild before"]
    assert {t: replies[ECHO + t] for t in every} == dict.fromkeys(every, 1)
