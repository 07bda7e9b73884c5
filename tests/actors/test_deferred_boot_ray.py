"""The tree's actor processes start under ``actors/boot`` (issue 21): in a real Ray worker, the
libraries ``ray`` imports but the tree never uses are bound and unrun, an actor that actor
creates (as a supervisor creates its children) inherits that, and a deferred library still
works when used. On the head ``moltbot up`` starts, the boot is in the environment of ``ray
start`` (the session's Ray here has it the same way), so an actor needs no runtime_env; on a
cluster started otherwise, the root's runtime_env carries it.
"""

from __future__ import annotations

from os import SCHED_OTHER
from typing import Any

import pytest
import ray

from actors.ray_lean import boot_env
from moltbot.deferred_imports import DEFERRED, SWITCH_ENV

pytestmark = pytest.mark.usefixtures("ray_cluster")


@ray.remote(num_cpus=0, max_restarts=0)
class _Probe:
    def deferred(self) -> list[str]:
        from moltbot.deferred_imports import still_deferred

        return still_deferred()

    def child_deferred(self) -> list[str]:
        child = _Probe.remote()  # type: ignore[attr-defined]  # no runtime_env of its own
        try:
            return list(ray.get(child.deferred.remote(), timeout=60))
        finally:
            ray.kill(child)

    def argv(self) -> list[str]:
        import sys

        return list(sys.argv)

    def boot(self) -> dict[str, Any]:
        import os
        import threading

        from moltbot import quiet_imports

        me = threading.get_native_id()
        return {
            "quiet": quiet_imports.last,
            "pid": os.getpid(),
            "me": me,
            "my_nice": os.getpriority(os.PRIO_PROCESS, me),
            "main_nice": os.getpriority(os.PRIO_PROCESS, os.getpid()),
            "main_policy": os.sched_getscheduler(os.getpid()),
            "my_policy": os.sched_getscheduler(0),
        }

    def use_yaml(self) -> Any:
        import yaml

        return yaml.safe_load("reply: [1, 2]")


def test_an_actor_started_by_the_raylet_alone_defers_and_its_children_inherit_it() -> None:
    probe = _Probe.remote()  # type: ignore[attr-defined]  # no runtime_env: as the tree's
    try:
        assert ray.get(probe.deferred.remote(), timeout=120) == sorted(DEFERRED)
        assert ray.get(probe.child_deferred.remote(), timeout=120) == sorted(DEFERRED)
        assert ray.get(probe.use_yaml.remote(), timeout=60) == {"reply": [1, 2]}
        assert "yaml" not in ray.get(probe.deferred.remote(), timeout=60)  # ran on use
    finally:
        ray.kill(probe)


def test_a_workers_boot_imports_ray_on_a_lowest_priority_thread_and_serves_at_its_own() -> None:
    """What every actor imports first (``ray``, the actor base) is imported at nice 19 (5
    when every core is busy) on a thread that then ends; the process's main thread and the
    one serving calls keep the worker's priority (0: ``RAY_worker_niceness``), so a restart's
    boot yields the CPU to the siblings at work and the restarted actor does not serve at a
    low priority."""
    probe = _Probe.remote()  # type: ignore[attr-defined]
    try:
        got = ray.get(probe.boot.remote(), timeout=120)
    finally:
        ray.kill(probe)
    quiet = got["quiet"]
    assert quiet is not None, "the boot did not run"
    assert "ray" in quiet.modules and "actors.base" in quiet.modules
    # and what Ray's serialization context imports at the first call (pydantic): not on the
    # serving thread, at its priority
    assert "ray._common.pydantic_compat" in quiet.modules
    assert quiet.nice in (19, 5)  # 5 only if every core was busy then (test_quiet_imports)
    assert quiet.idle is (quiet.nice == 19)  # the idle policy at the bottom only
    assert quiet.thread_id not in (got["pid"], got["me"])  # not the main thread, not this one
    assert got["main_nice"] == 0
    assert got["my_nice"] == 0
    assert got["main_policy"] == got["my_policy"] == SCHED_OTHER


def test_a_runtime_env_boot_defers_too_at_the_price_of_the_setup_worker() -> None:
    """A cluster ``up`` did not start (``cluster.address``): the root's runtime_env carries the
    boot, and Ray then starts the worker through ``setup_worker.py``, whose runtime env hash
    stays on the worker's command line (what ``test_tree_env_ray`` checks is absent)."""
    probe = _Probe.options(runtime_env={"env_vars": boot_env()}).remote()  # type: ignore[attr-defined]
    try:
        assert ray.get(probe.deferred.remote(), timeout=120) == sorted(DEFERRED)
        assert ray.get(probe.child_deferred.remote(), timeout=120) == sorted(DEFERRED)
        argv = ray.get(probe.argv.remote(), timeout=60)
        flag = "--runtime-env-hash="
        hashes = [a.removeprefix(flag) for a in argv if a.startswith(flag)]
        assert [h for h in hashes if h != "0"], argv
    finally:
        ray.kill(probe)


def test_the_switch_turns_it_off() -> None:
    env = {"env_vars": {SWITCH_ENV: "0"}}
    probe = _Probe.options(runtime_env=env).remote()  # type: ignore[attr-defined]
    try:
        assert ray.get(probe.deferred.remote(), timeout=120) == []
    finally:
        ray.kill(probe)
