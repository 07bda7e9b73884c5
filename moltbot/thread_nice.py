"""Ray's own threads in an actor's process, one step behind the threads that answer messages.

A worker process of the tree runs two kinds of threads: Python's (the actor's event loops, which
serve the pipes a message travels through, and their executors) and Ray's C++ threads (its RPC
clients and servers, the core worker's io loop, the task event buffer). Messages never touch
Ray's threads: they cross the tree over the pipes (``actors.pipes``). Ray's threads work when
the tree changes: when any worker dies, every process hears of it and cleans up, and the dying
one tears itself down. Issue 21 measured that burst on a 2-core machine: in the 25 ms after
Telegram's process was killed, Ray's processes together used 40 ms of CPU against 6 ms at a
calm moment (the root's, about half of it in Ray's threads), while Slack's and Signal's
messages needed those cores. With Ray's threads lowered, a message sent in the first 50 ms
after a kill took 2.8 ms longer than at a calm moment, against 4.2 ms (``benchmarks/afterkill``).

Linux keeps a nice value per thread and a thread starts with its creator's. So Ray's threads go
to ``RAY_THREADS_NICE`` (CPU weight 110 against 1024: a thread at 0 that wakes runs first, and
on an idle machine nothing is slower), the Python threads stay where they are, and threads Ray
starts later from its own threads inherit the lower priority. Raising a nice value needs no
privilege; nothing here ever lowers one. A Ray thread that calls into Python (to complete a
future) holds the GIL for that moment at the lower priority; the event loops wait for it then.

Pure: no Ray here. Linux only; elsewhere nothing happens.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable

RAY_THREADS_NICE = 10
ENV = "MOLTBOT_RAY_THREADS_NICE"  # another value; 0 leaves Ray's threads alone
_TASKS = "/proc/self/task"


def configured(env: dict[str, str] | None = None) -> int:
    """The nice value for Ray's threads: ``MOLTBOT_RAY_THREADS_NICE`` if it is a whole number
    from 0 to 19, else ``RAY_THREADS_NICE``."""
    raw = (os.environ if env is None else env).get(ENV, "").strip()
    try:
        value = int(raw)
    except ValueError:
        return RAY_THREADS_NICE
    return value if 0 <= value <= 19 else RAY_THREADS_NICE


def python_thread_ids() -> set[int]:
    """The Linux thread ids of this process's Python threads (the main thread included)."""
    return {t.native_id for t in threading.enumerate() if t.native_id is not None}


def other_thread_ids(keep: Iterable[int], tasks: str = _TASKS) -> list[int]:
    """This process's threads that are not in ``keep``; none where ``/proc`` is missing."""
    kept = set(keep)
    try:
        names = os.listdir(tasks)
    except OSError:
        return []
    return sorted(int(n) for n in names if n.isdigit() and int(n) not in kept)


def lower(tids: Iterable[int], nice: int) -> int:
    """Raise each thread's nice value to at least ``nice`` (never lower it); how many moved.
    A thread that has ended meanwhile, or one this process may not change, is skipped."""
    moved = 0
    for tid in tids:
        try:
            if os.getpriority(os.PRIO_PROCESS, tid) < nice:
                os.setpriority(os.PRIO_PROCESS, tid, nice)
                moved += 1
        except OSError:
            continue
    return moved


def lower_ray_threads(nice: int | None = None) -> int:
    """Every thread of this process that is not a Python thread to at least ``nice`` (by
    default ``configured()``; see the module docstring); how many moved. Call again to catch
    threads started since."""
    nice = configured() if nice is None else nice
    if nice <= 0 or not hasattr(os, "setpriority") or not os.path.isdir(_TASKS):
        return 0
    return lower(other_thread_ids(python_thread_ids()), nice)
