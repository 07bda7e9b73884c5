"""The crash benchmark's killer: a process of its own that kills one actor of the tree on a
schedule. The measuring process (the driver, whose fake platforms stamp every reply) then does
none of a kill's Ray work: looking the actor up (a GCS call, an alias read when it is down)
and ``ray.kill``. A real crash does not come from the platforms' servers either.

Run as ``python -m benchmarks.killer <gcs address> <namespace>``: it connects to that Ray,
prints ``ready``, then for each line ``<path> <every_s> <duration_s>`` on stdin kills ``path``
every ``every_s`` for ``duration_s`` and answers one JSON line: ``kill_at`` (``perf_counter``
just after each kill: CLOCK_MONOTONIC on Linux, the driver's clock too) and ``missed`` (the
actor was not there: still restarting). It ends when stdin closes.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from typing import IO, Any

import actors  # noqa: F401  - Ray's environment before any ray import
from benchmarks.common import ROOT_DIR


def storm(path: str, namespace: str, every: float, duration: float) -> dict[str, Any]:
    import ray

    from actors.registry import lookup

    kill_at: list[float] = []
    missed = 0
    t0 = time.monotonic()
    k = 1
    while k * every <= duration:
        time.sleep(max(0.0, t0 + k * every - time.monotonic()))
        try:
            handle = lookup(path, namespace)
        except ValueError:
            missed += 1  # not back yet from the previous crash
        else:
            ray.kill(handle, no_restart=True)
            kill_at.append(time.perf_counter())
        k += 1
    return {"kill_at": kill_at, "missed": missed}


def main(argv: list[str]) -> int:
    import ray

    address, namespace = argv
    ray.init(address=address, namespace=namespace, log_to_driver=False, configure_logging=False)
    print("ready", flush=True)
    for line in sys.stdin:
        path, every, duration = line.split()
        print(json.dumps(storm(path, namespace, float(every), float(duration))), flush=True)
    return 0


class Killer:
    """The driver's side: starts the killer on the driver's Ray and namespace."""

    def __init__(self, namespace: str) -> None:
        import ray

        gcs = ray.get_runtime_context().gcs_address
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.killer", gcs, namespace],
            cwd=ROOT_DIR,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        if self._line() != "ready":
            raise RuntimeError("the killer did not connect to Ray")

    def _line(self) -> str:
        out: IO[str] | None = self.proc.stdout
        assert out is not None
        line = out.readline()
        if not line:
            raise RuntimeError(f"the killer ended (exit {self.proc.wait()})")
        return line.strip()

    def storm(self, path: str, every: float, duration: float) -> dict[str, Any]:
        """Kills ``path`` every ``every`` s for ``duration`` s (blocks until done)."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{path} {every} {duration}\n")
        self.proc.stdin.flush()
        return dict(json.loads(self._line()))

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
