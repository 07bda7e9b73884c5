"""Channel actors on a real local Ray with the real store and agent actors (offline provider),
against the fake Telegram, Slack and Signal servers running in this test process on 127.0.0.1.

One tree serves every scenario: store, agents → agent-0, channels → telegram:main (dm_policy
open), slack:work (dm_policy pairing, user U42 allowlisted). Tokens reach the actors as
``env:VAR`` references through the root's runtime_env, like a deployment's environment would,
except Slack's bot token: a ``secret:`` reference to the vault of the tree's ``MOLTBOT_HOME``.
(A Telegram actor takes several seconds of CPU to start: importing aiogram builds its models.)
"""

from __future__ import annotations

import io
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import ray
from PIL import Image

from actors.channel import ChannelActor
from moltbot.config.schema import Config
from moltbot.errors import NotFound
from moltbot.security.audit import tail, verify
from moltbot.security.vault import Vault
from moltbot.tools import scope
from tests.actors.helpers import child, pid_of, wait_for
from tests.actors.rig import (
    ECHO,
    RAY_ENV,
    channel_node,
    fast_config,
    host_node,
    running_tree,
    serving,
    telegram_main,
)
from tests.fakes.signal_api import NUMBER, FakeSignal
from tests.fakes.slack_api import APP_TOKEN, BOT_TOKEN, FakeSlack
from tests.fakes.telegram_api import DEFAULT_TOKEN, FakeTelegram

pytestmark = [pytest.mark.usefixtures("ray_cluster"), pytest.mark.timeout(300)]


class Rig(msgspec.Struct, kw_only=True):
    loop: Any
    tg: Any
    slack: Any
    signal: Any
    root: Any
    ns: str
    home: Path

    def tg_replies(self) -> Counter[str]:
        return Counter(s["plain"] for s in list(self.tg.sent))

    def slack_replies(self, channel: str = "D42") -> Counter[str]:
        return Counter(s["text"] for s in list(self.slack.sent) if s["channel"] == channel)

    def signal_replies(self, to: str = "+15557654321") -> Counter[str]:
        return Counter(s["message"] for s in list(self.signal.sent) if to in s["recipients"])

    def signal_dm(self, text: str, source: str = "+15557654321") -> None:
        self.loop.call(self.signal.inject_message, source=source, text=text)

    def tg_dm(self, text: str, user: int = 42) -> None:
        self.loop.call(self.tg.inject_message, chat_id=user, user_id=user, text=text)

    def slack_dm(self, text: str, user: str = "U42") -> None:
        self.loop.call(self.slack.inject_message, channel="D" + user[1:], user=user, text=text)

    def store(self, method: str, *args: Any) -> Any:
        return ray.get(getattr(child(self.ns, "store"), method).remote(*args), timeout=30)


def config(tg: FakeTelegram, slack: FakeSlack, signal: FakeSignal | None = None) -> Config:
    return fast_config(
        {
            "channels": {
                "telegram": [telegram_main(tg, stuck_after_s=30)],
                "slack": [
                    {
                        "account": "work",
                        "bot_token": "secret:slack_bot_token",
                        "app_token": "env:MB_TEST_SLACK_APP",
                        "api_base": slack.api_base,
                        "dm_policy": "pairing",
                        "allow_from": ["U42"],
                    },
                ],
                "signal": [
                    {
                        "account": "phone",
                        "number": NUMBER,
                        "dm_policy": "open",
                        "api_base": signal.api_base if signal else "http://127.0.0.1:9",
                    },
                ]
                if signal
                else [],
            },
        }
    )


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    tg, slack, signal = FakeTelegram(), FakeSlack(), FakeSignal()
    home = tmp_path_factory.mktemp("home")
    Vault.create(home).set("slack_bot_token", BOT_TOKEN)
    env = {"MB_TEST_TG": DEFAULT_TOKEN, "MB_TEST_SLACK_APP": APP_TOKEN}
    with serving(tg, slack, signal) as loop:
        cfg = config(tg, slack, signal)
        with running_tree(cfg, ("store", "agents", "channels"), home, env) as (root, ns):
            yield Rig(loop=loop, tg=tg, slack=slack, signal=signal, root=root, ns=ns, home=home)


def test_a_dm_on_each_channel_gets_its_offline_answer(rig: Rig) -> None:
    rig.tg_dm("hello telegram")
    rig.slack_dm("hello slack")
    rig.signal_dm("hello signal")
    wait_for(lambda: rig.tg_replies()[ECHO + "hello telegram"] == 1, 20, "telegram answer")
    wait_for(lambda: rig.slack_replies()[ECHO + "hello slack"] == 1, 20, "slack answer")
    wait_for(lambda: rig.signal_replies()[ECHO + "hello signal"] == 1, 20, "signal answer")
    status = ray.get(child(rig.ns, "channels/telegram:main").status.remote(), timeout=10)
    assert (status["channel"], status["account"], status["connected"]) == ("telegram", "main", True)
    assert status["in"] >= 1 and status["out"] >= 1 and status["last_activity_s"] < 5
    assert rig.store("pending", "telegram", "main") == []
    ping = ray.get(child(rig.ns, "channels/slack:work").ping.remote(), timeout=10)
    assert ping == {"ok": True, "problem": ""}


def test_server_errors_on_send_delay_the_reply_but_it_arrives(rig: Rig) -> None:
    before = rig.tg.calls["sendMessage"]
    rig.loop.call(rig.tg.fail, "sendMessage", 3, 500)
    rig.tg_dm("through the storm")
    wait_for(lambda: rig.tg_replies()[ECHO + "through the storm"] == 1, 30, "reply after 500s")
    assert rig.tg.calls["sendMessage"] - before == 4
    time.sleep(0.5)
    assert rig.tg_replies()[ECHO + "through the storm"] == 1


def test_pairing_code_then_approval_through_the_actor_then_answered(rig: Rig) -> None:
    path = "channels/slack:work"
    actor = child(rig.ns, path)
    rig.slack_dm("let me in", user="U77")
    wait_for(lambda: len(rig.slack_replies("D77")) == 1, 20, "pairing code sent")
    [pending] = ray.get(actor.pairing_list.remote(), timeout=10)["pending"]
    assert pending["sender_id"] == "U77"
    assert pending["code"] in next(iter(rig.slack_replies("D77")))
    assert ECHO + "let me in" not in rig.slack_replies("D77")  # no turn for a stranger
    with pytest.raises(NotFound):
        ray.get(actor.pairing_approve.remote("WRONG234"), timeout=10)
    assert ray.get(actor.pairing_approve.remote(pending["code"]), timeout=10) == "U77"
    assert b'"sender_id":"U77"' in rig.store("kv_get", "pairing.slack.work")
    # the approval is durable: the account in a new process still knows the sender
    pid = pid_of(rig.ns, path)
    ray.kill(child(rig.ns, "channels/slack"), no_restart=True)  # Slack's process
    wait_for(lambda: pid_of(rig.ns, path) != pid, 60, "slack restarted")
    rig.slack_dm("now may I?", user="U77")
    wait_for(lambda: rig.slack_replies("D77")[ECHO + "now may I?"] == 1, 20, "paired answer")
    assert len(rig.slack_replies("D77")) == 2
    assert ray.get(child(rig.ns, path).pairing_list.remote(), timeout=10)["pending"] == []


def test_secret_reads_and_pairing_reach_the_audit_log(rig: Rig) -> None:
    audit = rig.home / "audit" / "audit.jsonl"

    def fields(kind: str) -> list[dict[str, Any]]:
        return [r["fields"] for r in tail(audit, 1000) if r["kind"] == kind]

    reader = {"secret_name": "slack_bot_token", "reader": "channels/slack:work"}
    wait_for(lambda: reader in fields("secret_read"), 20, "the vault read recorded")
    # only Slack reads the vault: the other tokens are env: references
    assert all(f["reader"] == "channels/slack:work" for f in fields("secret_read"))
    actor = child(rig.ns, "channels/slack:work")
    rig.slack_dm("hello there", user="U88")
    wait_for(lambda: len(rig.slack_replies("D88")) == 1, 20, "pairing code sent")
    [code] = [
        p["code"]
        for p in ray.get(actor.pairing_list.remote(), timeout=10)["pending"]
        if p["sender_id"] == "U88"
    ]
    assert ray.get(actor.pairing_approve.remote(code, "cli"), timeout=10) == "U88"
    where = {"channel": "slack", "account": "work", "sender_id": "U88", "code_prefix": code[:2]}
    approved = {**where, "action": "approved", "by": "cli"}
    wait_for(lambda: approved in fields("pairing"), 20, "the approval recorded")
    assert {**where, "action": "requested"} in fields("pairing")
    text = audit.read_text()
    assert BOT_TOKEN not in text and code not in text
    assert verify(audit).ok


@pytest.mark.parametrize("how", ["raise", "exit", "ray_kill"])
def test_crash_while_messages_arrive_every_message_answered_exactly_once(
    rig: Rig, how: str
) -> None:
    """``raise`` and ``exit`` end the account inside Telegram's process (it restarts there);
    ``ray_kill`` kills that process, and the account comes back in a new one."""
    path = "channels/telegram:main"
    pid = pid_of(rig.ns, path)

    def restarts() -> int:  # the account's inside its process, or that process's
        if how == "ray_kill":
            return int(host_node(rig.root, "telegram")["restarts"])
        return int(channel_node(rig.root, "telegram:main")["restarts"])

    before = restarts()
    # replies cannot go out, so messages sit journaled but unanswered when the crash comes
    rig.loop.call(rig.tg.fail, "sendMessage", 100_000, 500)
    journaled = [f"{how} journaled {i}" for i in range(3)]
    for text in journaled:
        rig.tg_dm(text)
    wait_for(
        lambda: {m.text for m in rig.store("pending", "telegram", "main")} >= set(journaled),
        20,
        "messages journaled",
    )
    racing = [f"{how} racing {i}" for i in range(2)]
    for text in racing:  # in any state when the crash hits: unread, unjournaled, journaled
        rig.tg_dm(text)
    if how == "ray_kill":
        ray.kill(child(rig.ns, "channels/telegram"), no_restart=True)
    else:
        child(rig.ns, path).crash.remote(how)
    later = [f"{how} while down {i}" for i in range(2)]
    for text in later:
        rig.tg_dm(text)
    slack_pid = pid_of(rig.ns, "channels/slack:work")
    signal_pid = pid_of(rig.ns, "channels/signal:phone")
    rig.slack_dm(f"slack during {how}")  # the other channels are not disturbed
    rig.signal_dm(f"signal during {how}")
    wait_for(lambda: rig.slack_replies()[ECHO + f"slack during {how}"] == 1, 20, "slack answer")
    wait_for(lambda: rig.signal_replies()[ECHO + f"signal during {how}"] == 1, 20, "signal")
    wait_for(
        lambda: (
            restarts() > before and channel_node(rig.root, "telegram:main")["state"] == "running"
        ),
        120,
        "restart",
    )
    assert (pid_of(rig.ns, path) == pid) == (how != "ray_kill")
    rig.loop.call(rig.tg._failures._plan.clear)  # the platform is back
    texts = journaled + racing + later
    wait_for(lambda: all(rig.tg_replies()[ECHO + t] >= 1 for t in texts), 60, "all answered")
    wait_for(lambda: rig.store("pending", "telegram", "main") == [], 10, "journal drained")
    time.sleep(1.0)  # anything answered twice would show up by now
    replies = rig.tg_replies()
    assert {t: replies[ECHO + t] for t in texts} == dict.fromkeys(texts, 1)
    status = ray.get(child(rig.ns, path).status.remote(), timeout=10)
    assert status["counts"]["replayed"] >= len(journaled)  # answered from the journal
    assert pid_of(rig.ns, "channels/slack:work") == slack_pid
    assert pid_of(rig.ns, "channels/signal:phone") == signal_pid


def test_a_refused_token_parks_the_account_until_the_secret_is_fixed(rig: Rig) -> None:
    """A bad token does not fail the start (it would hold up the whole tree): the account comes
    up parked, says why and how to fix it (never the token), and once the secret is replaced in
    the vault it connects by itself, with no restart."""
    vault = Vault.open(rig.home)
    vault.set("slack_bad_token", "xoxb-WRONG-secret-value")
    cfg = msgspec.structs.replace(
        config(rig.tg, rig.slack),
        channels=msgspec.convert(
            {
                "slack": [
                    {
                        "account": "bad",
                        "bot_token": "secret:slack_bad_token",
                        "app_token": "env:MB_TEST_APP",
                        "api_base": rig.slack.api_base,
                    }
                ]
            },
            type=type(Config().channels),
        ),
    )
    env = {**RAY_ENV, "MOLTBOT_HOME": str(rig.home), "MB_TEST_APP": APP_TOKEN}
    actor = ChannelActor.options(  # type: ignore[attr-defined]
        namespace=rig.ns, num_cpus=0, max_restarts=0, runtime_env={"env_vars": env}
    ).remote(
        path="channels/slack:bad", config=cfg, channel="slack", account="bad", namespace=rig.ns
    )
    try:
        running = actor.run.remote()
        ray.get(actor.ready.remote(), timeout=60)  # started: nothing waits on this account
        link = ray.get(actor.figures.remote(), timeout=10)["link"]
        assert link["state"] == "rejected", link
        assert "token" in link["reason"] and "slack" in link["fix"], link
        assert "WRONG-secret-value" not in str(ray.get(actor.status.remote(), timeout=10))
        assert ray.get(actor.ping.remote(), timeout=10)["ok"]  # parked is not stuck

        def parked() -> list[dict[str, Any]]:
            return [
                r["fields"]
                for r in tail(rig.home / "audit" / "audit.jsonl", 500)
                if r["kind"] == "channel" and r["fields"].get("event") == "parked"
            ]

        wait_for(lambda: bool(parked()), 10, "the audit record")
        assert "token" in parked()[-1]["reason"]

        vault.set("slack_bad_token", BOT_TOKEN)  # the owner fixes it: `moltbot secrets set`
        wait_for(
            lambda: ray.get(actor.figures.remote(), timeout=10)["link"]["state"] == "connected",
            30,
            "the account connects",
        )
        ready, _ = ray.wait([running], timeout=0)
        assert ready == []  # still the same life: no restart was needed
    finally:
        ray.kill(actor)


def test_a_photo_is_kept_in_the_senders_inbox_and_send_file_goes_back_through_the_tree(
    rig: Rig,
) -> None:
    """Media through the actors: a Telegram photo is downloaded by the channel actor into the
    sender's inbox before the agent actor's turn; the agent's send_file (the offline provider's
    ``!tool`` syntax) reaches the channel actor by name and the fake Bot API gets the file."""
    folder = scope.sender_folder(rig.home / "workspace", "telegram:main:77")
    rig.loop.call(rig.tg.inject_file, chat_id=77, user_id=77, kind="photo", data=_png())
    wait_for(lambda: any("inbox/" in s["plain"] for s in list(rig.tg.sent)), 30, "photo answer")
    (kept,) = (folder / "inbox").iterdir()
    assert kept.suffix == ".jpg" and kept.stat().st_mode & 0o777 == 0o600
    (folder / "plan.pdf").write_bytes(b"%PDF-1.7\nthe plan\n%%EOF\n")
    rig.tg_dm('!tool send_file {"path": "plan.pdf", "caption": "here"}', user=77)
    wait_for(lambda: len(rig.tg.sent_files) == 1, 30, "the file sent")
    (sent,) = rig.tg.sent_files
    assert sent["method"] == "sendDocument" and sent["chat_id"] == "77"
    assert sent["data"] == b"%PDF-1.7\nthe plan\n%%EOF\n" and sent["caption"] == "here"


def _png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (20, 10), (0, 200, 0)).save(out, format="PNG")
    return out.getvalue()
