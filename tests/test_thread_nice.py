"""Ray's own threads one step behind the Python threads that answer messages
(moltbot/thread_nice): which threads move, that nothing ever moves up, and the switch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from moltbot import thread_nice
from moltbot.thread_nice import ENV, RAY_THREADS_NICE, configured, lower, other_thread_ids

ROOT = Path(__file__).resolve().parents[1]

# A process with a thread Python does not know (made with pthread_create, as Ray's C++ makes
# its threads; it waits in pause()), a Python thread, then the call; each thread's nice value.
_SCRIPT = r"""
import ctypes, json, os, sys, threading
from moltbot import thread_nice

libc = ctypes.CDLL(None)
pause = ctypes.cast(libc.pause, ctypes.c_void_p)
handle = ctypes.c_ulong()
assert libc.pthread_create(ctypes.byref(handle), None, pause, None) == 0
gate = threading.Event()
py = threading.Thread(target=gate.wait, daemon=True)
py.start()
known = thread_nice.python_thread_ids()
deadline = __import__("time").monotonic() + 5
while len(os.listdir("/proc/self/task")) < len(known) + 1:
    assert __import__("time").monotonic() < deadline
foreign = [int(t) for t in os.listdir("/proc/self/task") if int(t) not in known]
moved = thread_nice.lower_ray_threads()
again = thread_nice.lower_ray_threads()
later = threading.Thread(target=gate.wait, daemon=True)
later.start()
nice = lambda tid: os.getpriority(os.PRIO_PROCESS, tid)
print(json.dumps({
    "moved": moved, "again": again, "foreign": [nice(t) for t in foreign],
    "main": nice(threading.main_thread().native_id), "python": nice(py.native_id),
    "later": nice(later.native_id),
}))
sys.stdout.flush()
os._exit(0)
"""


def _run(env: dict[str, str]) -> dict[str, object]:
    out = subprocess.run(
        [sys.executable, "-c", _SCRIPT],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return dict(json.loads(out.stdout))


def test_a_thread_python_does_not_know_moves_and_python_threads_stay() -> None:
    got = _run({ENV: ""})
    assert got["foreign"] == [RAY_THREADS_NICE]
    assert got["moved"] == 1
    assert got["again"] == 0  # nothing left to move: a second call is cheap and idempotent
    assert got["main"] == 0
    assert got["python"] == 0
    assert got["later"] == 0  # a Python thread started afterwards keeps its creator's value


def test_the_switch_picks_another_value_and_zero_leaves_them_alone() -> None:
    assert _run({ENV: "15"})["foreign"] == [15]
    off = _run({ENV: "0"})
    assert off["foreign"] == [0]
    assert off["moved"] == 0


def test_configured_reads_a_whole_number_from_0_to_19_else_the_default() -> None:
    assert configured({}) == RAY_THREADS_NICE
    assert configured({ENV: " 7 "}) == 7
    assert configured({ENV: "0"}) == 0
    assert configured({ENV: "19"}) == 19
    for bad in ("20", "-1", "ten", "3.5", ""):
        assert configured({ENV: bad}) == RAY_THREADS_NICE, bad


def test_other_thread_ids_skips_the_kept_and_anything_not_a_thread(tmp_path: Path) -> None:
    for name in ("10", "11", "12", "status"):
        (tmp_path / name).mkdir()
    assert other_thread_ids({11}, tasks=str(tmp_path)) == [10, 12]
    assert other_thread_ids({11}, tasks=str(tmp_path / "missing")) == []


def test_lower_never_moves_a_thread_up_and_skips_one_that_is_gone() -> None:
    """A thread already lower than asked stays where it is (raising it back would need a
    privilege, and would undo a lower value chosen elsewhere: the quiet imports' 19)."""
    gate = threading.Event()
    seen: dict[str, int] = {}

    def body() -> None:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, 15)
        seen["tid"] = tid
        ready.set()
        gate.wait()
        seen["after"] = os.getpriority(os.PRIO_PROCESS, tid)

    ready = threading.Event()
    t = threading.Thread(target=body)
    t.start()
    assert ready.wait(10)
    try:
        assert lower([seen["tid"], 2**22 + 12345], 10) == 0  # 15 > 10; the other is no thread
    finally:
        gate.set()
        t.join()
    assert seen["after"] == 15


def test_the_module_does_nothing_where_there_is_no_proc(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(thread_nice, "_TASKS", "/nonexistent/task")
    assert thread_nice.lower_ray_threads(10) == 0
