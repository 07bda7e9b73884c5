"""The scheduler on a real local Ray tree (store, agent, telegram channel, scheduler; offline
provider) against the fake Telegram: a reminder answered exactly once when the scheduler actor
is killed just before its fire and just after it was journaled; the heartbeat reaching the
owner; jobs that outlive the scheduler; ``moltbot cron add/list/rm`` (its functions, with the
installed tree control, the way the command reaches the tree); and the schedule tools refused
to anyone but the owner, in a DM and in a group."""

from __future__ import annotations

import argparse
import asyncio
import datetime
import json
import time
import uuid
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
import ray

from actors.gateway import RayBackend
from moltbot.cli import cron_cmd
from moltbot.cluster.control import tree_control
from moltbot.config.schema import Config
from moltbot.schedule.fires import fire_message
from moltbot.schedule.jobs import Fire, Schedule, make_job
from moltbot.schedule.service import KV_KEY
from moltbot.schedule.tools import NOT_OWNER
from tests.actors.helpers import child, kill, node, tree, wait_for
from tests.actors.rig import fast_config, running_tree, serving, telegram_main
from tests.fakes.telegram_api import DEFAULT_TOKEN, FakeTelegram

pytestmark = [pytest.mark.usefixtures("ray_cluster"), pytest.mark.timeout(300)]

OWNER = 42
STRANGER = 77
GROUP = -100500


class Rig(msgspec.Struct, kw_only=True):
    loop: Any
    tg: Any
    ns: str
    root: Any
    cfg: Config

    def to(self, chat: int) -> list[str]:
        return [str(s["plain"]) for s in list(self.tg.sent) if int(s["chat_id"]) == chat]

    def count(self, chat: int, needle: str) -> int:
        return sum(1 for text in self.to(chat) if needle in text)

    def dm(self, user: int, text: str) -> None:
        self.loop.call(self.tg.inject_message, chat_id=user, user_id=user, text=text)

    def scheduler(self, method: str, *args: Any) -> Any:
        return ray.get(getattr(child(self.ns, "scheduler"), method).remote(*args), timeout=30)

    def store(self, method: str, *args: Any) -> Any:
        return ray.get(getattr(child(self.ns, "store"), method).remote(*args), timeout=30)

    def restarts(self) -> int:
        return int(node(tree(self.root), "scheduler")["restarts"])

    def kill_scheduler(self) -> None:
        """Kill the scheduler (inside the root's process: its run is cancelled, at whatever
        it awaits); wait until its supervisor has a new one up."""
        before = self.restarts()
        kill(self.ns, "scheduler")
        wait_for(
            lambda: (
                self.restarts() > before
                and node(tree(self.root), "scheduler")["state"] == "running"
            ),
            60,
            "the scheduler's restart",
        )


@pytest.fixture(scope="module")
def rig(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rig]:
    tg = FakeTelegram()
    home = tmp_path_factory.mktemp("sched-home")
    ids = ("store", "agents", "channels", "scheduler")
    with serving(tg) as loop:
        cfg = fast_config(
            {
                "channels": {
                    "telegram": [
                        telegram_main(tg, owners=[str(OWNER)], groups={"allow": [str(GROUP)]})
                    ]
                },
                "schedule": {"deliver_to": f"telegram:main:{OWNER}", "heartbeat_minutes": 60},
            }
        )
        with running_tree(cfg, ids, home, {"MB_TEST_TG": DEFAULT_TOKEN}) as (root, ns):
            yield Rig(loop=loop, tg=tg, ns=ns, root=root, cfg=cfg)


def iso_in(seconds: float) -> tuple[str, float]:
    when = datetime.datetime.now(datetime.UTC) + datetime.timedelta(seconds=seconds)
    when = when.replace(microsecond=0)
    return when.isoformat(), when.timestamp()


def cli_add(rig: Rig, text: str, *, at: str = "", cron: str = "", job_id: str = "") -> None:
    args = argparse.Namespace(
        at=at or None, cron=cron or None, text=text, id=job_id, to="", catch_up="skip", tz="UTC"
    )
    assert cron_cmd.add_job(tree_control(), rig.ns, args) == 0


def cli_list(rig: Rig, capsys: pytest.CaptureFixture[str]) -> list[dict[str, Any]]:
    capsys.readouterr()
    assert cron_cmd.list_jobs(tree_control(), rig.ns, as_json=True) == 0
    jobs: list[dict[str, Any]] = json.loads(capsys.readouterr().out)
    return jobs


def test_a_reminder_killed_just_before_its_fire_is_answered_once(rig: Rig) -> None:
    text = f"call the dentist {uuid.uuid4().hex[:6]}"
    at, due = iso_in(8)
    cli_add(rig, text, at=at, job_id="before")
    time.sleep(max(0.0, due - time.time() - 2.5))  # killed ~2 s before it is due
    rig.kill_scheduler()
    wait_for(lambda: rig.count(OWNER, text) >= 1, 60, "the reminder")
    time.sleep(3)  # a second fire or a second answer would show by now
    assert rig.count(OWNER, text) == 1
    [reply] = [t for t in rig.to(OWNER) if text in t]
    assert "Scheduled job 'before'" in reply and "not the owner writing now" in reply
    assert "before" not in [j["id"] for j in rig.scheduler("jobs_list")]


def test_a_reminder_killed_just_after_its_fire_was_journaled_is_not_repeated(rig: Rig) -> None:
    text = f"water the plants {uuid.uuid4().hex[:6]}"
    at, due = iso_in(5)
    cli_add(rig, text, at=at, job_id="after")
    before_fire = rig.store("kv_get", KV_KEY)  # the schedule as saved before the fire
    assert b'"after"' in before_fire
    wait_for(lambda: rig.count(OWNER, text) == 1, 60, "the reminder")
    fire_id = f"cron:after:{int(due)}"
    # journaled, answered, then marked done (behind the reply)
    wait_for(lambda: fire_id not in [m.id for m in rig.store("pending")], 30, "marked done")
    # the scheduler dies right after the journal write, before its schedule is saved: on disk
    # the reminder is still due, so the replacement computes the same fire again
    rig.store("kv_put", KV_KEY, before_fire)
    rig.kill_scheduler()
    wait_for(
        lambda: "after" not in [j["id"] for j in rig.scheduler("jobs_list")],
        30,
        "the replacement to pass the reminder",
    )
    time.sleep(3)
    assert rig.count(OWNER, text) == 1
    figures = ray.get(child(rig.ns, "scheduler").figures.remote(), timeout=10)
    assert figures["duplicates"] == 1 and figures["fired"] == 0  # the journal refused it


def test_a_fire_journaled_but_never_handed_over_is_answered_after_a_restart(rig: Rig) -> None:
    # the scheduler journaled the fire and saved its schedule, then died before the channel
    # had it: the replacement offers the journal's pending fires to their channels
    text = f"renew the passport {uuid.uuid4().hex[:6]}"
    now = time.time()
    job = make_job("cron", "0 4 * * *", text, now=now - 86400, job_id="orphan")
    msg = fire_message(rig.cfg, job, Fire(job="orphan", at=job.next_at), now)
    assert rig.store("accept_many", [msg]) == [True]
    rig.kill_scheduler()
    wait_for(lambda: rig.count(OWNER, text) == 1, 60, "the orphaned fire's answer")
    wait_for(lambda: msg.id not in [m.id for m in rig.store("pending")], 30, "marked done")
    rig.kill_scheduler()  # done now: a second replacement offers nothing again
    time.sleep(3)
    assert rig.count(OWNER, text) == 1


def test_the_heartbeat_reaches_the_owner_and_jobs_outlive_the_scheduler(
    rig: Rig, capsys: pytest.CaptureFixture[str]
) -> None:
    cli_add(rig, "nightly backup report", cron="0 3 * * *", job_id="nightly")
    listed = {j["id"]: j for j in cli_list(rig, capsys)}
    assert listed["nightly"]["kind"] == "cron" and listed["heartbeat"]["spec"] == "60"
    # the saved heartbeat is due in 2 s (as if the last beat was 59 minutes ago); the
    # replacement scheduler reads the schedule back from the store and keeps that beat
    saved = Schedule.decode(rig.store("kv_get", KV_KEY))
    beat = saved.jobs["heartbeat"]
    saved.jobs["heartbeat"] = msgspec.structs.replace(beat, next_at=float(int(time.time()) + 2))
    rig.store("kv_put", KV_KEY, saved.encode())
    beats = rig.count(OWNER, "[Heartbeat:")
    rig.kill_scheduler()
    wait_for(lambda: rig.count(OWNER, "[Heartbeat:") == beats + 1, 60, "the heartbeat")
    again = {j["id"]: j for j in cli_list(rig, capsys)}
    assert again["nightly"] == listed["nightly"]  # durable across the restart
    page = asyncio.run(RayBackend(rig.cfg, rig.ns).cron_list())  # the web page's cron.list
    assert [j["id"] for j in page] == [j["id"] for j in cli_list(rig, capsys)]
    assert again["heartbeat"]["next_at"] > time.time() + 50 * 60  # the next beat, an hour on
    assert cron_cmd.remove_job(tree_control(), rig.ns, "nightly") == 0
    assert "removed nightly" in capsys.readouterr().out
    assert "nightly" not in [j["id"] for j in cli_list(rig, capsys)]
    assert cron_cmd.list_jobs(tree_control(), rig.ns) == 0
    assert "heartbeat  heartbeat '60'" in capsys.readouterr().out


def test_only_the_owner_can_see_or_set_jobs_through_the_agent(
    rig: Rig, capsys: pytest.CaptureFixture[str]
) -> None:
    at, _due = iso_in(1800)  # before the heartbeat (an hour on): first in the list
    add = json.dumps({"kind": "once", "spec": at, "text": "planted", "id": "planted"})
    rig.dm(STRANGER, f"!tool schedule_add {add}")
    rig.dm(STRANGER, "!tool schedule_list {}")
    rig.loop.call(
        rig.tg.inject_message,
        chat_id=GROUP,
        user_id=STRANGER,
        chat_type="group",
        text="@moltbot_test_bot !tool schedule_list {}",
    )
    wait_for(lambda: rig.count(STRANGER, NOT_OWNER[:40]) == 2, 60, "the stranger's refusals")
    wait_for(lambda: rig.count(GROUP, NOT_OWNER[:40]) == 1, 60, "the group member's refusal")
    assert "planted" not in [j["id"] for j in cli_list(rig, capsys)]
    assert not any("heartbeat" in t for t in rig.to(STRANGER) + rig.to(GROUP))

    mine = json.dumps({"kind": "once", "spec": at, "text": "owner's", "id": "mine"})
    rig.dm(OWNER, f"!tool schedule_add {mine}")
    wait_for(lambda: rig.count(OWNER, "returned: scheduled mine") == 1, 60, "the owner's add")
    rig.dm(OWNER, "!tool schedule_list {}")
    wait_for(lambda: rig.count(OWNER, '"id": "mine"') == 1, 60, "the owner's list")
    [job] = [j for j in cli_list(rig, capsys) if j["id"] == "mine"]
    assert job["deliver_to"] == f"telegram:main:{OWNER}"  # answers in the owner's DM
    assert job["kind"] == "once" and job["text"] == "owner's"
    rig.scheduler("jobs_remove", "mine")
