"""A bare Ray actor round trip on the Ray of this run: an async actor awaits an empty async
method of another actor, one call at a time, as the tree's actors call each other. The yardstick
of issue 21 item 3 (at one conversation the tree may add at most one of these + 2 ms)."""

from __future__ import annotations

from typing import Any

from benchmarks.common import log
from benchmarks.stats import lat_summary


def round_trip(n: int = 300, warm: int = 30) -> dict[str, Any]:
    """p50/p99 (ms) of ``n`` awaited calls of an empty async method, caller and callee two
    actors (each its own worker process) with no CPU reserved, as the tree's."""
    import ray

    @ray.remote(num_cpus=0)
    class Callee:
        async def ping(self) -> None:
            return None

    @ray.remote(num_cpus=0)
    class Caller:
        async def run(self, callee: Any, n: int, warm: int) -> list[float]:
            import time

            for _ in range(warm):
                await callee.ping.remote()
            out = []
            for _ in range(n):
                t0 = time.perf_counter()
                await callee.ping.remote()
                out.append(time.perf_counter() - t0)
            return out

    callee = Callee.remote()  # type: ignore[attr-defined]
    caller = Caller.remote()  # type: ignore[attr-defined]
    try:
        lats = ray.get(caller.run.remote(callee, n, warm), timeout=300)
    finally:
        ray.kill(caller)
        ray.kill(callee)
    s = lat_summary(lats)
    log(f"bare Ray actor round trip: n={s['n']} p50={s['p50_ms']} ms p99={s['p99_ms']} ms")
    return s
