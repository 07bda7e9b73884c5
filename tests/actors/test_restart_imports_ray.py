"""A restarted child names and imports its heavy modules on a low-priority thread, never on
the event loop thread that serves its calls (actors/base.py, actors/startup.py). A channel
host names them by importing its children's classes (0.2 s of CPU on this machine): that
too must not run at the loop's priority while the siblings are answering messages."""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

import pytest
import ray

from actors.base import CHILD_OPTIONS, ChildBase

pytestmark = [pytest.mark.usefixtures("ray_cluster"), pytest.mark.timeout(180)]

PROBE = "tests.actors.fixtures.import_probe"


def _thread() -> tuple[int, int, int]:
    tid = threading.get_native_id()
    return tid, os.getpriority(os.PRIO_PROCESS, tid), os.sched_getscheduler(0)


class _Child(ChildBase):
    asked: tuple[int, int] | None = None

    def preload_modules(self) -> list[str]:
        self.asked = _thread()
        return [PROBE]

    async def where(self) -> dict[str, Any]:
        probe = sys.modules.get(PROBE)
        return {
            "asked": self.asked,
            "serving": _thread(),
            "probe": None if probe is None else (probe.TID, probe.NICE, probe.POLICY),
        }


Child = ray.remote(num_cpus=0, max_restarts=0, **CHILD_OPTIONS)(_Child)


def _started(incarnation: int) -> dict[str, Any]:
    actor = Child.remote(path="test/restart-imports", incarnation=incarnation)
    try:
        actor.run.remote()
        ray.get(actor.ready.remote(), timeout=120)
        return dict(ray.get(actor.where.remote(), timeout=60))
    finally:
        ray.kill(actor)


def test_a_restart_names_and_imports_its_modules_off_the_serving_thread() -> None:
    got = _started(incarnation=2)
    serving_tid, serving_nice, serving_policy = got["serving"]
    assert got["asked"] is not None, "a restart did not preload"
    asked_tid, asked_nice, asked_policy = got["asked"]
    assert asked_tid != serving_tid
    assert asked_nice in (19, 5)  # 5 only if every core was busy (test_quiet_imports)
    # at the bottom under the idle policy too; the serving thread as Ray made it
    assert asked_policy == (os.SCHED_IDLE if asked_nice == 19 else os.SCHED_OTHER)
    assert (serving_nice, serving_policy) == (0, os.SCHED_OTHER)
    assert got["probe"] == got["asked"]  # the import ran on that thread


def test_a_first_start_imports_in_setup_at_full_priority() -> None:
    got = _started(incarnation=1)
    assert got["asked"] is None  # no preload: the tree's own start is not held back
    assert got["probe"] is None  # nothing imported it on the child's behalf


class _Threads(ChildBase):
    async def threads(self) -> dict[str, Any]:
        from moltbot.thread_nice import python_thread_ids

        python = python_thread_ids()
        rows = []
        for tid in os.listdir("/proc/self/task"):
            try:
                comm = open(f"/proc/self/task/{tid}/comm").read().strip()
                rows.append((int(tid), comm, os.getpriority(os.PRIO_PROCESS, int(tid))))
            except OSError:
                continue
        return {"python": sorted(python), "rows": rows, "serving": _thread()}


Threads = ray.remote(num_cpus=0, max_restarts=0, **CHILD_OPTIONS)(_Threads)


def test_a_running_childs_ray_threads_wait_behind_its_python_threads() -> None:
    """Ray's C++ threads (its RPC threads, the core worker's io loop) go to nice 10 once the
    child runs; every Python thread (the event loops that serve the pipes) stays at 0
    (moltbot/thread_nice.py)."""
    actor = Threads.remote(path="test/ray-threads")
    try:
        actor.run.remote()
        ray.get(actor.ready.remote(), timeout=120)
        got = ray.get(actor.threads.remote(), timeout=60)
    finally:
        ray.kill(actor)
    python = set(got["python"])
    nice = {tid: n for tid, _, n in got["rows"]}
    ray_rows = [(comm, n) for tid, comm, n in got["rows"] if tid not in python]
    assert got["serving"][1] == 0
    assert {nice[t] for t in python if t in nice} == {0}
    assert ("worker.io", 10) in ray_rows, ray_rows  # the core worker's io loop
    # (a thread Ray starts later from a Python thread starts at 0: the next minute's pass)
    assert sum(n == 10 for _, n in ray_rows) >= 5, ray_rows
