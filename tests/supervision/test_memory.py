"""The memory ceiling's decision (pure) and the measure of a process tree (a real child)."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from moltbot.supervision.memory import measure_mb, memory_exit
from moltbot.supervision.spec import ExitKind


def test_no_ceiling_or_under_it_is_no_exit() -> None:
    assert memory_exit(0, 10_000.0) is None
    assert memory_exit(512, 511.9) is None
    assert memory_exit(512, 512.0) is None


def test_over_the_ceiling_is_an_abnormal_exit_naming_the_figures_and_the_key() -> None:
    exit = memory_exit(512, 600.4)
    assert exit is not None and exit.kind == ExitKind.ABNORMAL
    assert exit.reason == "memory 600 MB over its ceiling of 512 MB (max_memory_mb)"
    just_over = memory_exit(320, 320.4)  # rounded, it would read as the ceiling itself
    assert just_over is not None and just_over.reason.startswith("memory 321 MB over its ceiling")


def test_a_childs_memory_counts_in_its_parents_tree() -> None:
    alone = measure_mb(os.getpid(), 0)
    hog = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys,time; b=b'x'*(120*2**20); print(1,flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
    )
    try:
        assert hog.stdout is not None and hog.stdout.readline().strip() == b"1"
        with_hog = measure_mb(os.getpid(), 0)  # resident sizes
        assert with_hog - alone > 110
        # over a low ceiling the unshared size is read instead: the hog's 120 MB are its own
        uss = measure_mb(os.getpid(), 1)
        assert uss > 120 and uss <= with_hog + 1
        assert measure_mb(hog.pid, 1) > 118
    finally:
        hog.kill()
        hog.wait()
    time.sleep(0.05)
    assert measure_mb(os.getpid(), 0) < with_hog - 100


def test_a_process_that_is_gone_measures_nothing() -> None:
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    assert measure_mb(gone.pid, 1) == 0.0


def test_the_process_tree_is_read_from_proc_children_the_same_as_psutil_finds_it() -> None:
    """Grandchildren too, read from /proc/<pid>/task/*/children (not every process's stat)."""
    import psutil

    from moltbot.supervision.memory import _descendant_pids, _tree

    shell = subprocess.Popen(["bash", "-c", "sleep 30 & (sleep 30 & wait) & wait"])
    try:
        deadline = time.monotonic() + 5
        want: list[int] = []
        while time.monotonic() < deadline and len(want) < 3:  # sleep, subshell, its sleep
            want = sorted(c.pid for c in psutil.Process(shell.pid).children(recursive=True))
            time.sleep(0.05)
        assert len(want) == 3
        assert sorted(_descendant_pids(shell.pid) or []) == want
        assert sorted(p.pid for p in _tree(shell.pid)) == sorted([shell.pid, *want])
    finally:
        for p in psutil.Process(shell.pid).children(recursive=True):
            p.kill()
        shell.kill()
        shell.wait()
