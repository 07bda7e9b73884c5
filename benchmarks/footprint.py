"""Memory and CPU of the processes measured (USS per kind, CPU per message)."""

from __future__ import annotations

import contextlib
import os
from collections import Counter
from collections.abc import Callable

import psutil

import actors  # noqa: F401  - Ray's environment before any ray import


# --- memory ----------------------------------------------------------------------------------
def uss(proc: psutil.Process) -> int:
    try:
        return int(proc.memory_full_info().uss)
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return 0


def descendants(exclude: Callable[[psutil.Process], bool] | None = None) -> list[psutil.Process]:
    """Every process under this driver (the local Ray: gcs, raylet, workers, ...)."""
    out = []
    for p in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if exclude is not None and exclude(p):
                continue
            out.append(p)
    return out


def is_browser_or_pipeline(p: psutil.Process) -> bool:
    try:
        cmd = " ".join(p.cmdline())
    except psutil.Error:
        return True
    return "benchmarks.pipeline" in cmd or "chrom" in p.name().lower() or "playwright" in cmd


def kind_of(p: psutil.Process) -> str:
    """``actor ChannelActor``, ``idle worker``, ``raylet``, ``gcs_server`` ..."""
    try:
        return _kind(p)
    except psutil.Error:
        return "?"


def tree_uss(skip: Callable[[psutil.Process], bool] | None = None) -> tuple[int, Counter[str]]:
    """Total USS of the Ray processes under this driver (but ``skip``'s), and USS by kind."""
    by_kind: Counter[str] = Counter()
    total = 0
    for p in descendants(is_browser_or_pipeline):
        if skip is not None and skip(p):
            continue
        u = uss(p)
        total += u
        by_kind[kind_of(p)] += u
    return total, by_kind


def _kind(p: psutil.Process) -> str:
    name = p.name()
    if name.startswith("ray::"):
        return "actor " + name.removeprefix("ray::").split(".")[0]
    cmd = " ".join(p.cmdline())
    if "benchmarks.pipeline" in cmd:
        return "baseline pipeline"
    if name == "raylet" or name.startswith("gcs_server"):  # their command lines name the
        return name  # worker script (default_worker.py) too: not an idle worker
    if "default_worker" in cmd:
        return "idle worker"
    return name


def cpu_snapshot() -> dict[int, tuple[str, float]]:
    """CPU seconds (user + system) so far of this driver (the fakes run in it) and every
    process under it (Ray's processes or the baseline pipeline), by pid, with its kind."""
    out: dict[int, tuple[str, float]] = {}
    me = psutil.Process()
    for p in [me, *descendants(lambda q: "chrom" in q.name().lower())]:
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            kind = "driver + fakes" if p.pid == me.pid else _kind(p)
            out[p.pid] = (kind, t.user + t.system)
    return out


def cpu_at_nice_0(pid: int) -> float:
    """CPU seconds so far of the live threads of ``pid`` at nice 0 or below: a restart's work
    at the priority of the siblings answering messages (a thread that has ended, as the quiet
    import threads of ``moltbot.quiet_imports`` do, counts only in the process's total). 0.0
    where it cannot be read."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError, ValueError, IndexError):
                with open(f"/proc/{pid}/task/{tid}/stat") as f:
                    raw = f.read()
                fields = raw[raw.rindex(")") + 2 :].split()  # after the name, which may hold spaces
                if int(fields[16]) <= 0:  # nice
                    total += (int(fields[11]) + int(fields[12])) / tick  # utime + stime
    return total


def cpu_per_message(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]], messages: int
) -> dict[str, float]:
    """CPU ms per message by process kind between two snapshots, and the ``total``."""
    by_kind: Counter[str] = Counter()
    for pid, (kind, secs) in after.items():
        by_kind[kind] += secs - before.get(pid, (kind, 0.0))[1]
    n = max(messages, 1)
    out = {k: round(v * 1000 / n, 2) for k, v in by_kind.most_common() if v * 1000 / n >= 0.05}
    out["total"] = round(sum(by_kind.values()) * 1000 / n, 2)
    return out


def mb(n: float) -> float:
    return round(n / 2**20, 1)
