"""The accounts of one channel type share that type's process (a ``host`` supervisor, a Ray
worker of its own); each account is a supervised child inside it. On a real local Ray, against
two fake Telegram bots and a fake Signal server: both Telegram accounts answer from one
process, an account that raises restarts alone inside it, and a killed process brings both
its accounts back in a new one while Signal's process is not touched.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import ray

from tests.actors.helpers import child, incarnation_of, killed, pid_of, wait_for
from tests.actors.rig import (
    ECHO,
    channel_node,
    fast_config,
    host_node,
    running_tree,
    serving,
    telegram_main,
)
from tests.fakes.signal_api import NUMBER, FakeSignal
from tests.fakes.telegram_api import DEFAULT_TOKEN, FakeTelegram

pytestmark = [pytest.mark.usefixtures("ray_cluster"), pytest.mark.timeout(300)]

OTHER_TOKEN = "654321:OTHER-fake-token"
A, B, SIGNAL = "channels/telegram:main", "channels/telegram:second", "channels/signal:phone"


class Rig(msgspec.Struct, kw_only=True):
    loop: Any
    a: Any
    b: Any
    signal: Any
    root: Any
    ns: str

    def dm(self, tg: Any, text: str) -> None:
        self.loop.call(tg.inject_message, chat_id=42, user_id=42, text=text)

    def answered(self, tg: Any, text: str) -> int:
        return Counter(s["plain"] for s in list(tg.sent))[ECHO + text]

    def signal_answered(self, text: str) -> int:
        return Counter(s["message"] for s in list(self.signal.sent))[ECHO + text]

    def host_node(self, kind: str) -> dict[str, Any]:
        return host_node(self.root, kind)


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    a, b, signal = FakeTelegram(), FakeTelegram(token=OTHER_TOKEN), FakeSignal()
    home: Path = tmp_path_factory.mktemp("home")
    env = {"MB_TEST_TG": DEFAULT_TOKEN, "MB_TEST_TG_B": OTHER_TOKEN}
    with serving(a, b, signal) as loop:
        second = telegram_main(b, account="second", token="env:MB_TEST_TG_B")
        phone = {"account": "phone", "number": NUMBER, "dm_policy": "open"}
        cfg = fast_config(
            {
                "channels": {
                    "telegram": [telegram_main(a), second],
                    "signal": [{**phone, "api_base": signal.api_base}],
                }
            }
        )
        with running_tree(cfg, ("store", "agents", "channels"), home, env) as (root, ns):
            yield Rig(loop=loop, a=a, b=b, signal=signal, root=root, ns=ns)


def test_two_accounts_of_a_type_answer_from_one_process(rig: Rig) -> None:
    host = rig.host_node("telegram")
    assert host["kind"] == "host"
    assert [c["id"] for c in host["children"]] == ["telegram:main", "telegram:second"]
    assert pid_of(rig.ns, A) == pid_of(rig.ns, B) == pid_of(rig.ns, "channels/telegram")
    assert pid_of(rig.ns, SIGNAL) != pid_of(rig.ns, A)  # another type: a process of its own
    # the pool's memory ceiling is the process's, measured at its pings; not each account's
    wait_for(lambda: "memory" in rig.host_node("telegram"), 30, "the process measured")
    assert rig.host_node("telegram")["memory"]["max_mb"] == 1024
    assert all("memory" not in c for c in rig.host_node("telegram")["children"])
    rig.dm(rig.a, "to the first bot")
    rig.dm(rig.b, "to the second bot")
    wait_for(lambda: rig.answered(rig.a, "to the first bot") == 1, 30, "first bot's answer")
    wait_for(lambda: rig.answered(rig.b, "to the second bot") == 1, 30, "second bot's answer")
    assert rig.answered(rig.a, "to the second bot") == 0  # each bot answers its own chats
    # a host is left out of its children's paths: they are addressed as before
    names = [c["name"] for c in host["children"]]
    assert names == ["moltbot.channels.telegram:main", "moltbot.channels.telegram:second"]
    assert ray.get(child(rig.ns, B).status.remote(), timeout=10)["account"] == "second"


def test_an_account_that_raises_restarts_alone_inside_its_process(rig: Rig) -> None:
    pid, signal_pid = pid_of(rig.ns, A), pid_of(rig.ns, SIGNAL)
    main_inc, second_inc = incarnation_of(rig.ns, A), incarnation_of(rig.ns, B)
    host_restarts = rig.host_node("telegram")["restarts"]
    child(rig.ns, B).crash.remote("raise")
    rig.dm(rig.a, "while the other account restarts")
    wait_for(lambda: incarnation_of(rig.ns, B) > second_inc, 60, "the second account back")
    wait_for(lambda: rig.answered(rig.a, "while the other account restarts") == 1, 30, "the first")
    rig.dm(rig.b, "after its restart")
    wait_for(lambda: rig.answered(rig.b, "after its restart") == 1, 30, "the second's answer")
    assert incarnation_of(rig.ns, A) == main_inc  # its sibling was not restarted
    assert channel_node(rig.root, "telegram:second")["restarts"] >= 1
    assert pid_of(rig.ns, A) == pid_of(rig.ns, B) == pid  # nor was the process
    assert rig.host_node("telegram")["restarts"] == host_restarts
    assert pid_of(rig.ns, SIGNAL) == signal_pid


def test_a_killed_process_brings_its_accounts_back_and_leaves_other_types_alone(
    rig: Rig,
) -> None:
    pid, signal_pid = pid_of(rig.ns, A), pid_of(rig.ns, SIGNAL)
    signal_restarts = rig.host_node("signal")["restarts"]
    host_restarts = rig.host_node("telegram")["restarts"]
    killed(child(rig.ns, "channels/telegram"))  # gone before the next messages are sent
    rig.dm(rig.a, "sent while its process was down")
    rig.dm(rig.b, "sent to the second while down")
    rig.loop.call(rig.signal.inject_message, source="+15557654321", text="signal meanwhile")
    wait_for(lambda: rig.signal_answered("signal meanwhile") == 1, 30, "signal's answer")
    wait_for(lambda: rig.host_node("telegram")["restarts"] > host_restarts, 60, "a restart")
    wait_for(lambda: pid_of(rig.ns, A) != pid, 60, "the first account in a new process")
    assert pid_of(rig.ns, B) == pid_of(rig.ns, A)  # both back, in the same new process
    wait_for(lambda: rig.answered(rig.a, "sent while its process was down") == 1, 60, "first")
    wait_for(lambda: rig.answered(rig.b, "sent to the second while down") == 1, 60, "second")
    assert pid_of(rig.ns, SIGNAL) == signal_pid
    assert rig.host_node("signal")["restarts"] == signal_restarts
