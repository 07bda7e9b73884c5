"""Imports on a short-lived low-priority thread while the caller waits (moltbot/quiet_imports)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from moltbot import quiet_imports
from moltbot.quiet_imports import (
    BOOT_NICE,
    BUSY_NICE,
    IDLE_ENV,
    QuietRun,
    idle_policy,
    idle_wanted,
    import_quietly,
    lower_thread_priority,
    no_core_free,
    not_imported,
    quiet_nice,
)

PROBE = "tests.actors.fixtures.import_probe"
BUSY = "tests.actors.fixtures.busy_import"


def _nice() -> int:
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def test_the_imports_run_on_another_thread_at_a_lower_priority_and_the_caller_keeps_its() -> None:
    sys.modules.pop(PROBE, None)
    before = _nice()
    assert import_quietly([PROBE, "json"], nice=BOOT_NICE) is None
    probe = sys.modules[PROBE]
    assert probe.TID != threading.get_native_id()
    assert probe.NICE == min(19, before + BOOT_NICE)
    assert probe.POLICY == os.SCHED_IDLE  # at the bottom: gives way to any thread that wakes
    assert _nice() == before
    assert os.sched_getscheduler(0) == os.SCHED_OTHER and not idle_policy()
    assert quiet_imports.last is not None
    assert quiet_imports.last.thread_id == probe.TID
    assert quiet_imports.last.nice == probe.NICE
    assert quiet_imports.last.modules == (PROBE,)  # json was imported already
    assert quiet_imports.last.idle is True


def test_the_idle_policy_only_at_the_bottom_and_the_switch_keeps_nice_19_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(IDLE_ENV, raising=False)
    assert idle_wanted(BOOT_NICE) is True
    assert idle_wanted(BUSY_NICE) is False  # every core busy: the idle policy would starve it
    monkeypatch.setenv(IDLE_ENV, "0")
    assert idle_wanted(BOOT_NICE) is False
    sys.modules.pop(PROBE, None)
    before = _nice()
    assert import_quietly([PROBE], nice=BOOT_NICE) is None
    probe = sys.modules[PROBE]
    assert probe.NICE == min(19, before + BOOT_NICE)
    assert probe.POLICY == os.SCHED_OTHER
    assert quiet_imports.last is not None and quiet_imports.last.idle is False
    monkeypatch.setenv(IDLE_ENV, "1")
    sys.modules.pop(PROBE, None)
    assert import_quietly([PROBE], nice=BUSY_NICE) is None
    assert sys.modules[PROBE].POLICY == os.SCHED_OTHER


def test_a_refused_idle_policy_leaves_the_thread_at_its_nice_value(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A sandbox that filters ``sched_setscheduler`` must not cost the nice value: the quiet
    thread then imports at 19 with the normal policy."""

    def refused(*_a: object) -> None:
        raise PermissionError("filtered")

    monkeypatch.setattr(os, "sched_setscheduler", refused)
    seen: dict[str, object] = {}
    before = _nice()

    def work() -> None:
        seen["ok"] = lower_thread_priority(BOOT_NICE, idle=True)
        seen["nice"] = _nice()
        seen["idle"] = idle_policy()

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert seen == {"ok": True, "nice": min(19, before + BOOT_NICE), "idle": False}


def test_nothing_to_import_starts_no_thread() -> None:
    import json  # noqa: F401

    quiet_imports.last = None
    assert import_quietly(["json"]) is None
    assert quiet_imports.last is None


def test_a_run_that_imports_nothing_keeps_the_last_run() -> None:
    """A function naming only imported modules still runs on a thread (it is asked there),
    but that run says nothing of the machine: the last real one stays for quiet_nice."""
    import json  # noqa: F401

    kept = QuietRun(thread_id=1, nice=BUSY_NICE, modules=("x",), cpu_s=0.01, wall_s=0.5)
    before, quiet_imports.last = quiet_imports.last, kept
    finished = threading.Event()
    asked: list[int] = []

    def names() -> list[str]:
        asked.append(threading.get_native_id())
        return ["json", "sys"]

    try:
        quiet_imports.on_quiet_thread(names, BOOT_NICE, lambda _e: finished.set())
        assert finished.wait(10)
        assert asked and asked[0] != threading.get_native_id()
        assert quiet_imports.last is kept
    finally:  # a made-up starved run must not steer the later tests' quiet_nice
        quiet_imports.last = before
    assert not_imported(["json", PROBE + "_absent", "sys"]) == [PROBE + "_absent"]


def test_an_import_error_is_returned_not_raised_and_the_rest_is_not_lost() -> None:
    sys.modules.pop(PROBE, None)
    err = import_quietly([PROBE, "tests.actors.fixtures.broken_import"], nice=BOOT_NICE)
    assert isinstance(err, ImportError)
    assert "on purpose" in str(err)
    assert PROBE in sys.modules  # imported before the broken one


def test_lowering_a_thread_touches_that_thread_only() -> None:
    seen: dict[str, int] = {}
    before = _nice()

    def work() -> None:
        seen["ok"] = lower_thread_priority(3)
        seen["nice"] = _nice()

    t = threading.Thread(target=work)
    t.start()
    t.join()
    assert seen == {"ok": True, "nice": min(19, before + 3)}
    assert _nice() == before


def _stat(tmp_path: Path, running: int) -> str:
    path = tmp_path / f"stat-{running}"
    path.write_text(f"cpu  1 2 3 4\nctxt 9\nprocs_running {running}\nprocs_blocked 0\n")
    return str(path)


def test_a_core_is_free_unless_more_threads_run_than_this_process_has_cores(
    tmp_path: Path,
) -> None:
    cores = len(os.sched_getaffinity(0))
    assert no_core_free(stat=_stat(tmp_path, cores + 1)) is True  # the caller and one per core
    assert no_core_free(stat=_stat(tmp_path, cores)) is False  # the caller has one
    assert no_core_free(stat=_stat(tmp_path, 1)) is False
    assert no_core_free(stat=str(tmp_path / "absent")) is False  # unknown: free
    (tmp_path / "odd").write_text("cpu 1 2\n")
    assert no_core_free(stat=str(tmp_path / "odd")) is False


def test_a_run_that_got_a_core_keeps_the_next_at_the_bottom_and_a_starved_one_does_not() -> None:
    def run(cpu: float, wall: float) -> QuietRun:
        return QuietRun(1, 19, ("m",), cpu, wall)

    assert run(0.45, 0.5).starved() is False
    assert run(0.1, 0.5).starved() is True
    assert run(0.001, 0.01).starved() is None  # too short to tell
    assert quiet_nice(run(0.45, 0.5)) == BOOT_NICE
    assert quiet_nice(run(0.1, 0.5)) == BUSY_NICE


def test_with_every_core_busy_the_quiet_thread_takes_the_milder_step(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Busy loops on every core (and one more): a quiet thread at 19 gets 1.5% of a core
    there and a restart took minutes, so the thread lowers itself by BUSY_NICE only: at once
    when the ready threads say so, and next time when its last run was starved."""
    cores = len(os.sched_getaffinity(0))
    loops = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(cores + 1)]
    try:
        time.sleep(0.3)  # every loop running
        sys.modules.pop(PROBE, None)
        quiet_imports.last = None  # no run to go by: the ready threads decide
        before = _nice()
        assert import_quietly([PROBE]) is None
        assert sys.modules[PROBE].NICE == min(19, before + BUSY_NICE)
        sys.modules.pop(BUSY, None)
        # forced to the bottom (nice 19 alone: the idle policy would take seconds here): starved
        monkeypatch.setenv(IDLE_ENV, "0")
        assert import_quietly([BUSY], nice=BOOT_NICE) is None
        starved = quiet_imports.last
        assert starved is not None and starved.starved() is True, starved
        assert quiet_nice(starved) == BUSY_NICE
    finally:
        for p in loops:
            p.kill()
            p.wait()
