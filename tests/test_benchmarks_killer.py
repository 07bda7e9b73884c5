"""The crash benchmark's killer: a process of its own that kills an actor on a schedule, on
the driver's Ray and clock (a real local Ray: the session's cluster)."""

from __future__ import annotations

import os
import time
import uuid

import pytest


def test_killer_kills_the_actor_from_its_own_process_and_counts_misses(ray_cluster: None) -> None:
    import ray

    from actors.registry import actor_name
    from benchmarks.killer import Killer

    @ray.remote(max_restarts=0, num_cpus=0)
    class Victim:
        def pid(self) -> int:
            return os.getpid()

    ns = f"killer-{uuid.uuid4().hex[:8]}"
    victim = Victim.options(name=actor_name("channels/victim"), namespace=ns).remote()  # type: ignore[attr-defined]
    assert ray.get(victim.pid.remote(), timeout=60) != os.getpid()
    killer = Killer(ns)
    assert killer.proc.pid != os.getpid()
    try:
        t0 = time.perf_counter()
        got = killer.storm("channels/victim", 0.5, 1.2)  # ticks at 0.5 s and 1.0 s
        t1 = time.perf_counter()
    finally:
        killer.close()
    assert len(got["kill_at"]) == 1 and got["missed"] == 1  # killed, then not there any more
    assert t0 + 0.45 < got["kill_at"][0] < t1  # stamped on the driver's clock
    with pytest.raises(ray.exceptions.RayActorError):
        ray.get(victim.pid.remote(), timeout=30)
    assert killer.proc.returncode == 0  # ended when its stdin closed
