"""Scheduled jobs, purely: next fires, the catch-up policy after downtime, stable fire ids,
and bad input refused with what to do."""

from __future__ import annotations

import datetime

import pytest

from moltbot.errors import BadRequest
from moltbot.schedule.jobs import Fire, Schedule, make_job, next_after


def ts(text: str) -> float:
    return datetime.datetime.fromisoformat(text).replace(tzinfo=datetime.UTC).timestamp()


NOW = ts("2026-12-04T08:00:00")


def test_cron_once_and_heartbeat_fire_when_due_and_move_on() -> None:
    s = Schedule()
    s.add(make_job("cron", "0 9 * * *", "morning briefing", now=NOW, job_id="brief"))
    s.add(make_job("once", "2026-12-04T09:30", "call the dentist", now=NOW, job_id="dentist"))
    s.add(make_job("heartbeat", "30", "anything to tell the owner?", now=NOW, job_id="beat"))
    assert [j.id for j in s.listed()] == ["beat", "brief", "dentist"]
    assert s.next_at() == NOW + 1800
    assert s.due(NOW + 60) == []
    assert s.due(NOW + 1800) == [Fire(job="beat", at=NOW + 1800)]
    assert s.due(ts("2026-12-04T09:00:30")) == [
        Fire(job="beat", at=NOW + 3600),
        Fire(job="brief", at=ts("2026-12-04T09:00:00")),
    ]
    assert s.jobs["brief"].next_at == ts("2026-12-05T09:00:00")
    [dentist] = [f for f in s.due(ts("2026-12-04T09:30:10")) if f.job == "dentist"]
    assert dentist.id == f"cron:dentist:{int(ts('2026-12-04T09:30:00'))}"  # stable: journaled
    assert "dentist" not in s.jobs  # a one-shot is done once fired


def test_after_downtime_skip_owes_nothing_and_once_owes_one_fire() -> None:
    s = Schedule()
    s.add(make_job("cron", "0 * * * *", "hourly", now=NOW, job_id="skipper"))
    s.add(make_job("cron", "0 * * * *", "hourly", now=NOW, job_id="catcher", catch_up="once"))
    later = NOW + 5 * 3600 + 600  # down for five hours
    fires = s.due(later)
    assert [f.job for f in fires] == ["catcher"]  # one fire for all that was missed
    assert s.jobs["skipper"].next_at == s.jobs["catcher"].next_at == ts("2026-12-04T14:00:00")


def test_a_schedule_survives_encoding() -> None:
    s = Schedule()
    s.add(
        make_job(
            "cron",
            "15 7 * * 1-5",
            "weekday",
            now=NOW,
            job_id="wk",
            tz="Europe/Berlin",
            deliver_to="telegram:main:42",
        )
    )
    back = Schedule.decode(s.encode())
    assert back.listed() == s.listed() and Schedule.decode(None).listed() == []
    job = back.jobs["wk"]
    # Friday 08:00 UTC: the next weekday 07:15 in Berlin is Monday, 06:15 UTC
    assert next_after(job, NOW) == ts("2026-12-07T06:15:00")


@pytest.mark.parametrize(
    ("kind", "spec", "hint"),
    [
        ("cron", "every day", "cron expression"),
        ("once", "tomorrow-ish", "not a time"),
        ("once", "2020-01-01T00:00", "in the past"),
        ("heartbeat", "0", "1 to 10080 minutes"),
    ],
)
def test_bad_jobs_are_refused_saying_what_is_wrong(kind: str, spec: str, hint: str) -> None:
    with pytest.raises(BadRequest) as bad:
        make_job(kind, spec, "x", now=NOW)  # type: ignore[arg-type]
    assert hint in bad.value.user_message
    s = Schedule()
    s.add(make_job("heartbeat", "5", "x", now=NOW, job_id="a"))
    with pytest.raises(BadRequest):
        s.add(make_job("heartbeat", "5", "x", now=NOW, job_id="a"))
