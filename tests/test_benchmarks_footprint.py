"""The recovery benchmark's split of a restart's CPU by priority (benchmarks/footprint.py):
a thread at nice 19 does not count as normal-priority CPU, one at nice 0 does."""

from __future__ import annotations

import os
import threading
import time

from benchmarks.footprint import cpu_at_nice_0

BURN_S = 0.3


def _burn(seconds: float) -> None:
    end = time.thread_time() + seconds
    while time.thread_time() < end:
        pass


def test_only_threads_at_nice_0_count() -> None:
    me = os.getpid()
    burnt, release = threading.Event(), threading.Event()

    def quiet() -> None:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, 19)
        _burn(BURN_S)
        burnt.set()
        release.wait(30)  # alive while measured: its CPU is still its own

    worker = threading.Thread(target=quiet)
    before = cpu_at_nice_0(me)
    worker.start()
    try:
        assert burnt.wait(30)
        during = cpu_at_nice_0(me)
        _burn(BURN_S)  # this thread, at nice 0
        after = cpu_at_nice_0(me)
    finally:
        release.set()
        worker.join()
    assert during - before < BURN_S / 2  # the quiet thread's burn is not in it
    assert after - during >= BURN_S - 0.05  # this thread's is (10 ms ticks)


def test_a_process_that_is_gone_counts_nothing() -> None:
    assert cpu_at_nice_0(2**22 + 12345) == 0.0  # above pid_max's default: no such process
