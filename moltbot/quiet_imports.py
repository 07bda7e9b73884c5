"""Imports done on a short-lived thread at a low CPU priority, while the caller waits.

A restarting actor's process imports seconds' worth of CPU (``ray`` itself, then its SDK). On a
small machine that CPU is taken from the siblings answering messages at that very moment: the
crash benchmark (issue 21) measured it, and in a diagnostic run where a restart's whole boot ran
at the lowest priority their p99 stayed where it was without crashes. Linux keeps a nice value
per thread and a new thread takes its creator's, and raising one's own needs no privilege, but
lowering it back does. So the imports go to a fresh thread that raises its own value and then
ends; the thread that asked keeps its priority, and so do the threads it starts later (Ray's
event loop, its RPC threads). On an idle machine nothing is slower.

At the bottom the thread also takes Linux's idle policy (``SCHED_IDLE``): the kernel stops such
a thread the moment a normal one wakes on its core, and counts a core that runs only idle-policy
threads as free when it places a waking one; nice 19 alone promises neither. No unprivileged
thread can leave the idle policy, so only a thread that then ends takes it. Measured with boots
running back to back beside the tree (``benchmarks/quietboot.py``, all settings in one run,
two runs): they added 0.4 and 0.6 ms to Slack's and Signal's median and 2.1 and 1.8 ms to their
p99 with the idle policy, 1.1 and 1.0 ms and 4.2 and 4.3 ms at nice 19 alone.
``MOLTBOT_QUIET_IDLE=0`` keeps nice 19 alone.

Pure: no Ray here. Used at a worker's start (``actors/boot/sitecustomize.py``) and before a
restarting child's setup (``actors.startup``).
"""

from __future__ import annotations

import importlib
import os
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

BOOT_NICE = 19  # CPU weight 15 against 1024: any thread at 0 that wakes runs first
BUSY_NICE = 5  # every core already busy: weight 335, a restart still ends in seconds
_PROC_STAT = "/proc/stat"
STARVED_SHARE = 0.5  # a quiet thread that got less of a core than this while it ran: no
# core was free for it (with one free it gets nearly all of one, whatever its nice value)
MEASURABLE_S = 0.02  # shorter runs say nothing about the machine
IDLE_ENV = "MOLTBOT_QUIET_IDLE"  # "0": the bottom is nice 19 alone, not the idle policy


class QuietRun(NamedTuple):
    """What the last quiet thread of this process did: its Linux thread id, the nice value it
    imported at, the modules it was given, the CPU and wall time its imports took, and whether
    it ran under the idle policy."""

    thread_id: int
    nice: int
    modules: tuple[str, ...]
    cpu_s: float
    wall_s: float
    idle: bool = False

    def starved(self) -> bool | None:
        """Whether it got less than ``STARVED_SHARE`` of a core (None: too short to tell)."""
        if self.wall_s < MEASURABLE_S:
            return None
        return self.cpu_s < STARVED_SHARE * self.wall_s


last: QuietRun | None = None  # this process's last quiet thread (shown to the tests)


def _runnable(stat: str) -> int | None:
    """The number of threads running or ready to run right now (``procs_running``)."""
    try:
        with open(stat, "rb") as f:
            for line in f:
                if line.startswith(b"procs_running "):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


def no_core_free(samples: int = 3, gap_s: float = 0.004, stat: str = _PROC_STAT) -> bool:
    """Whether every core this process may use stays busy with another thread in ``samples``
    reads ``gap_s`` apart (the caller counts as one of those running). Unknown counts as
    free."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    seen: list[int] = []
    for i in range(samples):
        n = _runnable(stat)
        if n is None:
            return False
        seen.append(n)
        if i + 1 < samples:
            time.sleep(gap_s)
    return min(seen) > (cores or 1)


def quiet_nice(previous: QuietRun | None = None) -> int:
    """How far to lower a quiet thread: to the bottom (19, and the idle policy) when a core is
    free for it, which then runs it at once while any sibling that wakes takes the CPU first;
    by ``BUSY_NICE`` when other programs keep every core busy, where the bottom would get 1.5%
    of a core (the idle policy less) and a restart would take minutes (measured at nice 19:
    124-141 s with two busy loops on this 2-core machine). The process's ``previous`` quiet
    run answers best (did it get a core?); without one, the threads ready to run now do
    (:func:`no_core_free`)."""
    starved = previous.starved() if previous is not None else None
    if starved is None:
        starved = no_core_free()
    return BUSY_NICE if starved else BOOT_NICE


def idle_wanted(nice: int) -> bool:
    """Whether a quiet thread lowered by ``nice`` also takes the idle policy: at the bottom
    (``BOOT_NICE``), where Linux has the policy, unless ``MOLTBOT_QUIET_IDLE=0``."""
    return (
        nice >= BOOT_NICE
        and hasattr(os, "SCHED_IDLE")
        and os.environ.get(IDLE_ENV, "1").strip() != "0"
    )


def lower_thread_priority(by: int, idle: bool = False) -> bool:
    """Raise the calling thread's nice value by ``by`` (at most to 19) and, when ``idle``, put
    it under the idle policy for good (a thread about to end); False where the nice value
    cannot be changed (not Linux, or refused): the work then runs at the priority it had. A
    refused idle policy (a sandbox that filters the call) leaves the thread at its nice value."""
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + by))
    except (OSError, AttributeError):
        return False
    if idle:
        try:  # on Linux 0 is the calling thread, not the process
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        except (OSError, AttributeError):
            pass
    return True


def idle_policy() -> bool:
    """Whether the calling thread runs under the idle policy."""
    try:
        return os.sched_getscheduler(0) == os.SCHED_IDLE
    except (OSError, AttributeError):
        return False


Modules = Sequence[str] | Callable[[], Sequence[str]]


def not_imported(names: Sequence[str]) -> list[str]:
    """Those of ``names`` this process has not imported yet, in order."""
    return [name for name in names if name not in sys.modules]


def on_quiet_thread(
    modules: Modules, nice: int | None, done: Callable[[BaseException | None], None]
) -> None:
    """Start a thread that lowers its priority by ``nice`` (None: :func:`quiet_nice`'s choice,
    made on that thread; at the bottom the idle policy too, :func:`idle_wanted`), imports
    those of ``modules`` not imported yet, in order, and calls ``done`` with the first import
    error (or None); returns at once. ``modules`` may be a function that names them: it is
    called on that thread, so what it imports to find out is imported at the low priority too
    (a host asks its children's classes, which it imports, for their modules). A run that
    imported nothing leaves ``last`` as it was."""

    def work() -> None:
        global last
        error: BaseException | None = None
        try:  # ``done`` is called whatever happens here: the caller is waiting for it
            by = quiet_nice(last) if nice is None else nice
            lower_thread_priority(by, idle=idle_wanted(by))
            tid = threading.get_native_id()
            at, cpu_at = time.monotonic(), time.thread_time()
            names: Sequence[str] = ()
            try:
                names = not_imported(modules() if callable(modules) else modules)
                for name in names:
                    importlib.import_module(name)
            except BaseException as exc:  # handed to the caller
                error = exc
            cpu, wall = time.thread_time() - cpu_at, time.monotonic() - at
            nice_now = os.getpriority(os.PRIO_PROCESS, tid)
            if names:  # a run that imported nothing says nothing of the machine: keep the last
                last = QuietRun(tid, nice_now, tuple(names), cpu, wall, idle_policy())
        except BaseException as exc:  # the bookkeeping itself failed (not Linux)
            error = error or exc
        finally:
            done(error)

    threading.Thread(target=work, name="moltbot-import", daemon=True).start()


def import_quietly(modules: Sequence[str], nice: int | None = None) -> BaseException | None:
    """Import ``modules`` (those not imported yet) on a low-priority thread (by ``nice``, or
    :func:`quiet_nice`'s choice) and wait for it.
    Returns the import error instead of raising: at a process's start a failed import here
    must not stop it (its own import of the module raises the same error where it belongs)."""
    missing = not_imported(modules)
    if not missing:
        return None
    result: list[BaseException | None] = []
    finished = threading.Event()

    def done(error: BaseException | None) -> None:
        result.append(error)
        finished.set()

    on_quiet_thread(missing, nice, done)
    finished.wait()
    return result[0]
