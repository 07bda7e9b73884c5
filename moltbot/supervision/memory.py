"""A child's memory ceiling: OTP's ``max_heap_size``, for a whole process tree.

An actor that keeps growing (a leak in a plugin, a cache without a bound) is restarted by its
supervisor like any other abnormal exit: audited, counted against the supervisor's intensity,
and its messages kept (they are journaled). The child measures itself when pinged (its own
process and everything it started: a plugin's sandboxed host, a tool's command), cheaply: the
resident size first, the unshared size (USS, what a restart gives back) only when the resident
size is over the ceiling. The decision is pure.
"""

from __future__ import annotations

import contextlib
import os

import psutil

from moltbot.supervision.spec import Exit, ExitKind

MB = 1024 * 1024


def memory_exit(max_memory_mb: int, used_mb: float) -> Exit | None:
    """The exit of a child using ``used_mb`` under a ceiling of ``max_memory_mb`` (0: none)."""
    if max_memory_mb <= 0 or used_mb <= max_memory_mb:
        return None
    shown = max(round(used_mb), max_memory_mb + 1)  # 320.4 over 320 never reads "320 over 320"
    return Exit(
        kind=ExitKind.ABNORMAL,
        reason=f"memory {shown} MB over its ceiling of {max_memory_mb} MB (max_memory_mb)",
    )


def _children(pid: int) -> list[int] | None:
    """``pid``'s child processes from ``/proc/<pid>/task/<tid>/children`` (Linux): a few
    small reads, where ``psutil.Process.children`` reads the stat file of every process on
    the machine (a Ray node has hundreds) at each ping of each child. None: not available."""
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return None
    found: list[int] = []
    for tid in tids:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                found += [int(c) for c in f.read().split()]
        except FileNotFoundError:
            if os.path.isdir(f"/proc/{pid}/task/{tid}"):
                return None  # the thread is there, its file is not: no CONFIG_PROC_CHILDREN
        except OSError:  # the thread ended meanwhile
            continue
    return found


def _descendant_pids(pid: int) -> list[int] | None:
    out, todo = [], [pid]
    while todo:
        kids = _children(todo.pop())
        if kids is None:
            return None
        out += kids
        todo += kids
    return out


def _tree(pid: int) -> list[psutil.Process]:
    try:
        top = psutil.Process(pid)
        pids = _descendant_pids(pid)
        if pids is None:
            return [top, *top.children(recursive=True)]
    except psutil.Error:
        return []
    procs = [top]
    for child in pids:
        with contextlib.suppress(psutil.Error):
            procs.append(psutil.Process(child))
    return procs


def _sum(procs: list[psutil.Process], uss: bool) -> int:
    total = 0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            total += int(p.memory_full_info().uss if uss else p.memory_info().rss)
    return total


def measure_mb(pid: int, ceiling_mb: int) -> float:
    """Memory of the process ``pid`` and its descendants, in MB: the resident size while it is
    under ``ceiling_mb`` (reading it costs microseconds), else the unshared size (USS, which
    reads every mapping: only paid when the ceiling may be crossed). Shared libraries count in
    the resident size, so a tree under its ceiling by RSS is under it by USS too."""
    procs = _tree(pid)
    rss = _sum(procs, uss=False) / MB
    if ceiling_mb <= 0 or rss <= ceiling_mb:
        return rss
    return _sum(procs, uss=True) / MB
