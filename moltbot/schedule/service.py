"""The scheduler as a pure service with ports (the ``scheduler`` actor wraps it).

The schedule lives in the store's kv (``schedule.jobs``). A tick::

    due(now) ─▶ fires as inbound messages ─▶ ports.journal (the store's inbound journal,
    dedup by fire id) ─▶ the schedule saved ─▶ ports.submit (the channel answers it)

Exactly once: a fire is journaled before the schedule that moved past it is saved. A crash
before the journal write fires it again after the restart (same id; late fires follow the
job's catch-up policy); a crash between the two computes the same fire again and the journal
refuses the duplicate; a crash after the save leaves it journaled and unanswered, and the
restarted scheduler offers the pending fires to their channels again (``resubmit``), which
answer a message only while it is pending and not already in hand. A channel that is down
answers it from its own replay when it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

import msgspec

from moltbot.clock import SYSTEM_CLOCK, Clock
from moltbot.config.schema import Config
from moltbot.errors import BadRequest, MoltbotError, NotFound
from moltbot.messages import InboundMessage
from moltbot.schedule.fires import HEARTBEAT_ID, fire_message, is_fire, target_of
from moltbot.schedule.jobs import CatchUp, Job, Kind, Schedule, make_job

log = logging.getLogger("moltbot.schedule")

KV_KEY = "schedule.jobs"
BROKEN_KEY = "schedule.jobs.unreadable"
RETRY_S = 2.0
MAX_NAP_S = 30.0  # look again at least this often (a clock that jumped, a suspended laptop)


@dataclass(frozen=True, slots=True)
class SchedulePorts:
    kv_get: Callable[[str], Awaitable[bytes | None]]
    kv_put: Callable[[str, bytes], Awaitable[object]]
    journal: Callable[[list[InboundMessage]], Awaitable[Sequence[bool]]]  # accept_many
    pending: Callable[[], Awaitable[list[InboundMessage]]]  # unfinished inbound messages
    submit: Callable[[InboundMessage], Awaitable[object]]  # hand to its channel (may raise)


class JobRequest(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A job as the tools, the CLI and the gateway ask for it."""

    kind: Kind = "cron"
    spec: str
    text: str
    id: str = ""
    deliver_to: str = ""
    catch_up: CatchUp = "skip"
    tz: str = "UTC"


def job_view(job: Job) -> dict[str, object]:
    data: dict[str, object] = msgspec.to_builtins(job)
    return data


class SchedulerService:
    def __init__(
        self,
        cfg: Config,
        ports: SchedulePorts,
        *,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.cfg, self.ports, self.clock = cfg, ports, clock
        self.schedule = Schedule()
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self.counts = {"fired": 0, "duplicates": 0, "undeliverable": 0}

    # --- life ----------------------------------------------------------------------------------
    async def load(self) -> None:
        """The saved schedule, with the heartbeat as the config says now."""
        async with self._lock:
            raw = await self.ports.kv_get(KV_KEY)
            try:
                self.schedule = Schedule.decode(raw)
            except (msgspec.DecodeError, msgspec.ValidationError):  # kept aside, not lost
                log.error("scheduler: the saved schedule is unreadable; kept as %s", BROKEN_KEY)
                await self.ports.kv_put(BROKEN_KEY, raw or b"")
                self.schedule = Schedule()
            self._sync_heartbeat(self.clock.time())
            await self._save()

    def _sync_heartbeat(self, now: float) -> None:
        minutes = self.cfg.schedule.heartbeat_minutes if self.cfg.schedule.enabled else 0
        old = self.schedule.jobs.get(HEARTBEAT_ID)
        if old is not None and old.kind == "heartbeat" and old.spec == str(minutes):
            return  # keeps its next beat across restarts
        self.schedule.remove(HEARTBEAT_ID)
        if minutes:
            beat = make_job("heartbeat", str(minutes), "heartbeat", now=now, job_id=HEARTBEAT_ID)
            self.schedule.add(beat)

    async def run(self) -> None:
        """After ``load``: offer what an earlier run journaled and nobody answered, then fire
        until cancelled."""
        await self.resubmit()
        while True:
            try:
                await self.tick()
            except MoltbotError as exc:  # the store is away: the fires wait, nothing is lost
                log.warning("scheduler: tick failed (%s); trying again", exc.code)
                await asyncio.sleep(RETRY_S)
                continue
            await self._nap()

    async def _nap(self) -> None:
        due = self.schedule.next_at()
        wait = MAX_NAP_S if not due else min(MAX_NAP_S, max(0.0, due - self.clock.time()))
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), wait)

    # --- firing --------------------------------------------------------------------------------
    async def tick(self) -> list[InboundMessage]:
        """Journal what is due, save the schedule, hand the fires to their channels."""
        async with self._lock:
            now = self.clock.time()
            msgs: list[InboundMessage] = []
            before = dict(self.schedule.jobs)  # ``due`` drops a one-shot once it fires
            fires = self.schedule.due(now)
            if self.schedule.jobs == before:
                return []  # nothing due: nothing to write
            for fire in fires:
                job = before[fire.job]
                try:
                    msgs.append(fire_message(self.cfg, job, fire, now))
                except MoltbotError as exc:  # nowhere to go: said in the log, not retried
                    self.counts["undeliverable"] += 1
                    log.error("job %s cannot fire: %s (%s)", job.id, exc.user_message, exc.hint)
            if msgs:
                try:
                    fresh = await self.ports.journal(msgs)
                except BaseException:
                    self.schedule.jobs = before  # not journaled: still due, fired next time
                    raise
                self.counts["fired"] += sum(1 for f in fresh if f)
                self.counts["duplicates"] += sum(1 for f in fresh if not f)
            try:
                await self._save()
            except MoltbotError as exc:  # journaled already: a refire would be a duplicate
                log.warning("scheduler: the schedule was not saved (%s); next tick", exc.code)
        for msg in msgs:
            await self._submit(msg)
        return msgs

    async def resubmit(self) -> int:
        """Offer journaled, unfinished fires to their channels again (after a restart)."""
        waiting = [m for m in await self.ports.pending() if is_fire(m.id)]
        for msg in waiting:
            await self._submit(msg)
        return len(waiting)

    async def _submit(self, msg: InboundMessage) -> None:
        try:
            await self.ports.submit(msg)
        except MoltbotError as exc:  # journaled: its channel answers it when it is back
            log.warning("fire %s waits for %s:%s (%s)", msg.id, msg.channel, msg.account, exc.code)

    async def _save(self) -> None:
        await self.ports.kv_put(KV_KEY, self.schedule.encode())

    # --- the jobs, for the tools, the CLI and the gateway --------------------------------------
    async def add(self, req: JobRequest) -> Job:
        if req.kind == "heartbeat" or req.id == HEARTBEAT_ID:
            raise BadRequest(
                "the heartbeat is set in the config, not as a job",
                hint="schedule.heartbeat_minutes",
            )
        try:
            job = make_job(
                req.kind,
                req.spec,
                req.text,
                now=self.clock.time(),
                job_id=req.id,
                deliver_to=req.deliver_to,
                catch_up=req.catch_up,
                tz=req.tz,
            )
        except ValueError:  # croniter's own errors (a date that never comes: 31 February)
            raise BadRequest(f"{req.spec!r} never fires", hint="check the day and month") from None
        target_of(self.cfg, job)  # somewhere to go, or the error saying what to set
        async with self._lock:
            self.schedule.add(job)
            await self._save()
        self._wake.set()
        return job

    async def remove(self, job_id: str) -> Job:
        if job_id == HEARTBEAT_ID:
            raise BadRequest(
                "the heartbeat is set in the config", hint="schedule.heartbeat_minutes"
            )
        async with self._lock:
            job = self.schedule.jobs.get(job_id)
            if job is None:
                raise NotFound(f"no job {job_id!r}", hint="list them with `moltbot cron list`")
            self.schedule.remove(job_id)
            await self._save()
        self._wake.set()
        return job

    def jobs(self) -> list[Job]:
        return self.schedule.listed()
