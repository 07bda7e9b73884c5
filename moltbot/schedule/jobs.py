"""Scheduled jobs, purely: cron jobs, one-shot reminders and the heartbeat, when each fires
next, and what a start after downtime owes (a job's catch-up policy). No clock is read here and
nothing is stored: the scheduler actor passes ``now`` in and keeps ``Schedule.encode()`` in the
store; each fire has a stable id (``cron:<job>:<scheduled time>``) so journaling it like an
inbound message makes it exactly once across crashes and restarts."""

from __future__ import annotations

import datetime
import re
import secrets
from typing import Literal

import msgspec
from croniter import croniter

from moltbot.errors import BadRequest

Kind = Literal["cron", "once", "heartbeat"]
CatchUp = Literal["skip", "once"]
JOB_ID = re.compile(r"[a-z0-9][a-z0-9_-]{0,31}")
MAX_JOBS = 200
GRACE_S = 120.0  # a fire this late is still on time, not missed (a restart, a slow loop)


class Job(msgspec.Struct, frozen=True, kw_only=True):
    id: str
    kind: Kind
    spec: str  # cron: the expression; once: an ISO time; heartbeat: minutes between beats
    text: str  # the prompt the agent gets when it fires
    deliver_to: str = ""  # "channel:account:chat"; "" = the owner's default channel
    catch_up: CatchUp = "skip"
    tz: str = "UTC"
    next_at: float = 0.0  # epoch seconds of the next fire (0: none left)


class Fire(msgspec.Struct, frozen=True, kw_only=True):
    job: str
    at: float  # the time it was scheduled for

    @property
    def id(self) -> str:
        return f"cron:{self.job}:{int(self.at)}"


def _zone(tz: str) -> datetime.tzinfo:
    if tz.upper() == "UTC":
        return datetime.UTC
    try:
        from zoneinfo import ZoneInfo

        return ZoneInfo(tz)
    except Exception:
        raise BadRequest(f"unknown time zone {tz!r}", hint="e.g. UTC or Europe/Berlin") from None


def next_after(job: Job, t: float) -> float:
    """The first fire of ``job`` strictly after ``t`` (0.0: it will not fire again)."""
    if job.kind == "cron":
        start = datetime.datetime.fromtimestamp(t, _zone(job.tz))
        return float(croniter(job.spec, start).get_next(float))
    if job.kind == "heartbeat":
        return t + float(job.spec) * 60.0
    at = parse_time(job.spec, job.tz)
    return at if at > t else 0.0


def parse_time(text: str, tz: str = "UTC") -> float:
    try:
        when = datetime.datetime.fromisoformat(text)
    except ValueError:
        raise BadRequest(f"{text!r} is not a time", hint="ISO format: 2026-12-05T09:00") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=_zone(tz))
    return when.timestamp()


def make_job(
    kind: Kind,
    spec: str,
    text: str,
    *,
    now: float,
    job_id: str = "",
    deliver_to: str = "",
    catch_up: CatchUp = "skip",
    tz: str = "UTC",
) -> Job:
    """A checked new job with its first fire after ``now`` (``BadRequest`` says what is wrong)."""
    job_id = job_id or f"{kind}-{secrets.token_hex(3)}"
    if not JOB_ID.fullmatch(job_id):
        raise BadRequest(f"job id {job_id!r} is not allowed", hint="1-32 of a-z 0-9 _ -")
    if not text.strip():
        raise BadRequest("a job needs the text the assistant gets when it fires")
    if kind == "cron" and not croniter.is_valid(spec):
        raise BadRequest(f"{spec!r} is not a cron expression", hint="e.g. '0 9 * * 1-5'")
    if kind == "heartbeat":
        try:
            minutes = float(spec)
        except ValueError:
            minutes = 0.0
        if not 1 <= minutes <= 7 * 24 * 60:
            raise BadRequest("a heartbeat is every 1 to 10080 minutes", hint="e.g. 30")
    job = Job(
        id=job_id, kind=kind, spec=spec, text=text, deliver_to=deliver_to, catch_up=catch_up, tz=tz
    )
    first = next_after(job, now)
    if first == 0.0:
        raise BadRequest(f"{spec} is in the past", hint="give a time still to come")
    return msgspec.structs.replace(job, next_at=first)


class Schedule:
    """The jobs, and what is due: ``due(now)`` gives the fires owed (the catch-up policy
    applied) and moves each job past ``now``."""

    def __init__(self, jobs: list[Job] | None = None) -> None:
        self.jobs: dict[str, Job] = {j.id: j for j in jobs or []}

    def add(self, job: Job) -> None:
        if job.id in self.jobs:
            raise BadRequest(f"there is already a job {job.id!r}", hint="remove it first")
        if len(self.jobs) >= MAX_JOBS:
            raise BadRequest(f"at most {MAX_JOBS} jobs", hint="remove some first")
        self.jobs[job.id] = job

    def remove(self, job_id: str) -> bool:
        return self.jobs.pop(job_id, None) is not None

    def listed(self) -> list[Job]:
        return sorted(self.jobs.values(), key=lambda j: (j.next_at or float("inf"), j.id))

    def next_at(self) -> float:
        """When the scheduler must look next (0.0: nothing scheduled)."""
        times = [j.next_at for j in self.jobs.values() if j.next_at]
        return min(times) if times else 0.0

    def due(self, now: float) -> list[Fire]:
        fires: list[Fire] = []
        for job in list(self.jobs.values()):
            if not job.next_at or job.next_at > now:
                continue
            missed = job.next_at < now - GRACE_S  # it should have fired while we were down
            if not missed or job.catch_up == "once":
                fires.append(Fire(job=job.id, at=job.next_at))
            following = next_after(job, now)
            if job.kind == "once" or not following:
                del self.jobs[job.id]
            else:
                self.jobs[job.id] = msgspec.structs.replace(job, next_at=following)
        return sorted(fires, key=lambda f: (f.at, f.job))

    def encode(self) -> bytes:
        return msgspec.json.encode(self.listed())

    @classmethod
    def decode(cls, data: bytes | None) -> Schedule:
        if not data:
            return cls()
        return cls(msgspec.json.decode(data, type=list[Job]))
