"""The scheduler service on a fake clock, over the real inbound journal and kv store (the store
actor's own classes, in a temp folder): each fire journaled once across crashes at every step,
the catch-up policy after downtime, the heartbeat from the config, and what a bad target says."""

from __future__ import annotations

import asyncio
import datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from moltbot.clock import FakeClock
from moltbot.config.loader import load_config_text
from moltbot.config.schema import Config
from moltbot.errors import BadRequest, ConfigError, NotFound, Unavailable
from moltbot.messages import InboundMessage
from moltbot.schedule.fires import HEARTBEAT_OK, quiet
from moltbot.schedule.service import BROKEN_KEY, KV_KEY, JobRequest, SchedulePorts, SchedulerService
from moltbot.store.journal import InboundJournal
from moltbot.store.kv import KeyValueStore

OWNER = "42"


def at(text: str) -> float:
    return datetime.datetime.fromisoformat(text).replace(tzinfo=datetime.UTC).timestamp()


START = at("2026-12-04T08:00:00")


def config(**schedule: Any) -> Config:
    return msgspec.convert(
        {
            "channels": {"telegram": [{"account": "main", "token": "env:T", "owners": [OWNER]}]},
            "schedule": {"deliver_to": f"telegram:main:{OWNER}", **schedule},
        },
        Config,
    )


class Store:
    """The store's journal and kv in a folder; ``fail`` makes the next call of a port raise
    (the store away, or the scheduler dying at that point)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.journal = InboundJournal(folder / "state")
        self.kv = KeyValueStore(folder / "state" / "kv")
        self.submitted: list[InboundMessage] = []
        self.fail: set[str] = set()

    def reopen(self) -> None:  # a restart: everything read back from disk
        self.journal = InboundJournal(self.folder / "state")
        self.kv = KeyValueStore(self.folder / "state" / "kv")

    def _check(self, port: str) -> None:
        if port in self.fail:
            self.fail.discard(port)
            raise Unavailable(f"{port} is away")

    def ports(self) -> SchedulePorts:
        async def kv_get(key: str) -> bytes | None:
            return self.kv.get(key)

        async def kv_put(key: str, value: bytes) -> None:
            self._check("kv_put")
            self.kv.put(key, value)

        async def journal(msgs: list[InboundMessage]) -> list[bool]:
            self._check("journal")
            return self.journal.accept_many(msgs)

        async def pending() -> list[InboundMessage]:
            return self.journal.pending()

        async def submit(msg: InboundMessage) -> None:
            self._check("submit")
            self.submitted.append(msg)

        return SchedulePorts(
            kv_get=kv_get, kv_put=kv_put, journal=journal, pending=pending, submit=submit
        )


def service(store: Store, clock: FakeClock, cfg: Config | None = None) -> SchedulerService:
    svc = SchedulerService(cfg or config(), store.ports(), clock=clock)
    asyncio.run(svc.load())
    return svc


def clock_at(ts: float) -> FakeClock:
    return FakeClock(start=0.0, wall=ts)


def reminder(svc: SchedulerService, when: str, job_id: str = "dentist", **kw: Any) -> None:
    req = JobRequest(kind="once", spec=when, text="call the dentist", id=job_id, **kw)
    asyncio.run(svc.add(req))


def test_a_reminder_fires_once_as_the_owner_in_the_configured_chat(tmp_path: Path) -> None:
    store, clock = Store(tmp_path), clock_at(START)
    svc = service(store, clock)
    reminder(svc, "2026-12-04T09:00")
    assert asyncio.run(svc.tick()) == []  # not yet
    clock.advance(3600 + 5)
    [msg] = asyncio.run(svc.tick())
    assert msg.id == f"cron:dentist:{int(at('2026-12-04T09:00:00'))}"
    assert (msg.channel, msg.account, msg.chat_id, msg.sender_id) == (
        "telegram",
        "main",
        OWNER,
        OWNER,
    )
    assert "not the owner writing now" in msg.text and msg.text.endswith("call the dentist")
    assert [m.id for m in store.journal.pending()] == [msg.id]
    assert store.submitted == [msg]
    assert svc.jobs() == [] and asyncio.run(svc.tick()) == []
    store.reopen()  # a restart: the saved schedule has no reminder left
    assert service(store, clock).jobs() == []


def test_killed_before_the_fire_is_journaled_it_fires_after_the_restart(tmp_path: Path) -> None:
    store, clock = Store(tmp_path), clock_at(START)
    svc = service(store, clock)
    reminder(svc, "2026-12-04T08:01")
    clock.advance(61)
    store.fail.add("journal")  # dies at the journal write: nothing journaled, nothing saved
    with pytest.raises(Unavailable):
        asyncio.run(svc.tick())
    assert store.journal.pending() == [] and [j.id for j in svc.jobs()] == ["dentist"]
    clock.advance(20)  # back 20 s later: within the grace, so on time, not missed
    store.reopen()
    again = service(store, clock)
    [msg] = asyncio.run(again.tick())
    assert [m.id for m in store.journal.pending()] == [msg.id]
    assert [m.id for m in store.submitted] == [msg.id]


def test_killed_after_the_journal_write_the_fire_is_not_repeated(tmp_path: Path) -> None:
    store, clock = Store(tmp_path), clock_at(START)
    svc = service(store, clock)
    reminder(svc, "2026-12-04T08:01")
    clock.advance(61)
    store.fail |= {"kv_put", "submit"}  # journaled; then the save and the hand-over are lost
    [msg] = asyncio.run(svc.tick())
    assert store.submitted == []
    store.reopen()  # the saved schedule still holds the reminder, due
    again = service(store, clock)
    assert asyncio.run(again.resubmit()) == 1  # the pending fire is offered to its channel
    assert [m.id for m in store.submitted] == [msg.id]
    refired = asyncio.run(again.tick())  # the same fire again: the journal refuses it
    assert [m.id for m in refired] == [msg.id] and again.counts["duplicates"] == 1
    assert again.counts["fired"] == 0 and len(store.journal.pending()) == 1
    store.journal.mark_done(msg.id)  # answered: a later restart offers nothing
    store.reopen()
    assert asyncio.run(service(store, clock).resubmit()) == 0


@pytest.mark.parametrize(("policy", "fires"), [("skip", 0), ("once", 1)])
def test_missed_fires_follow_the_catch_up_policy(tmp_path: Path, policy: str, fires: int) -> None:
    store, clock = Store(tmp_path), clock_at(START)
    svc = service(store, clock)
    asyncio.run(
        svc.add(JobRequest(kind="cron", spec="0 * * * *", text="hourly", id="h", catch_up=policy))
    )  # type: ignore[arg-type]
    clock.advance(5 * 3600 + 600)  # down for five hours
    store.reopen()
    assert len(asyncio.run(service(store, clock).tick())) == fires
    assert len(store.journal.pending()) == fires


def test_the_heartbeat_follows_the_config_and_keeps_its_beat(tmp_path: Path) -> None:
    store, clock = Store(tmp_path), clock_at(START)
    svc = service(store, clock, config(heartbeat_minutes=30))
    [beat] = svc.jobs()
    assert (beat.id, beat.kind, beat.next_at) == ("heartbeat", "heartbeat", START + 1800)
    clock.advance(600)
    store.reopen()  # same config: the next beat is kept, not pushed back
    assert service(store, clock, config(heartbeat_minutes=30)).jobs()[0].next_at == START + 1800
    clock.advance(1200)
    [msg] = asyncio.run(service(store, clock, config(heartbeat_minutes=30)).tick())
    assert msg.id.startswith("cron:heartbeat:") and HEARTBEAT_OK in msg.text
    assert "not a message from the owner" in msg.text
    assert quiet(msg.id, f" {HEARTBEAT_OK}. ") and not quiet(msg.id, "Your flight is at 6.")
    assert not quiet("telegram:main:42:7", HEARTBEAT_OK)  # only a heartbeat's reply is dropped
    assert service(store, clock, config(heartbeat_minutes=0)).jobs() == []
    with pytest.raises(BadRequest, match="config"):
        asyncio.run(svc.add(JobRequest(kind="heartbeat", spec="5", text="x")))


def test_a_job_with_nowhere_to_go_is_refused_naming_the_key(tmp_path: Path) -> None:
    store, clock = Store(tmp_path), clock_at(START)
    bare = msgspec.structs.replace(config(), schedule=config().schedule.__class__())
    svc = service(store, clock, bare)
    with pytest.raises(ConfigError) as err:
        reminder(svc, "2026-12-04T09:00")
    assert err.value.path == "$.schedule.deliver_to"
    with pytest.raises(BadRequest, match="no enabled telegram account 'other'"):
        reminder(svc, "2026-12-04T09:00", deliver_to="telegram:other:1")
    with pytest.raises(BadRequest, match="never fires"):  # not croniter's ValueError (Ray
        asyncio.run(svc.add(JobRequest(spec="0 9 31 2 *", text="x")))  # would retry that)
    reminder(svc, "2026-12-04T09:00", deliver_to="telegram:main:42")  # named: fine
    with pytest.raises(NotFound):
        asyncio.run(svc.remove("nope"))
    assert asyncio.run(svc.remove("dentist")).id == "dentist" and svc.jobs() == []
    assert store.kv.get(KV_KEY) == b"[]"


def test_the_config_refuses_a_heartbeat_without_a_chat_or_owner() -> None:
    with pytest.raises(ConfigError) as err:
        load_config_text('{"schedule": {"heartbeat_minutes": 30}}')
    assert err.value.path == "$.schedule.deliver_to"
    no_owner = (
        '{"channels": {"telegram": [{"account": "main", "token": "env:T"}]},'
        ' "schedule": {"deliver_to": "telegram:main:42"}}'
    )
    with pytest.raises(ConfigError) as err:
        load_config_text(no_owner)
    assert err.value.path == "$.channels.telegram[0].owners"
    with pytest.raises(ConfigError, match=r"schedule\.deliver_to"):
        load_config_text('{"schedule": {"deliver_to": "telegram:nope:1"}}')


def test_an_unreadable_schedule_is_kept_aside_and_the_scheduler_starts(tmp_path: Path) -> None:
    store = Store(tmp_path)
    store.kv.put(KV_KEY, b'[{"id": "torn"')
    svc = service(store, clock_at(START), config(heartbeat_minutes=30))
    assert [j.id for j in svc.jobs()] == ["heartbeat"]
    assert store.kv.get(BROKEN_KEY) == b'[{"id": "torn"'
