"""``moltbot cron`` as a user runs it, without a tree (cheap): its usage, and a clear line with
the fix when nothing runs. The commands against a running tree are in
``tests/actors/test_scheduler_ray.py`` (the same functions, through the installed tree control)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.cli.test_up_e2e import ROOT

MOLTBOT = [sys.executable, "-m", "moltbot.cli.main"]


def run(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MOLTBOT_HOME": str(tmp_path / "home"), "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [*MOLTBOT, "cron", *args], env=env, capture_output=True, text=True, timeout=60, cwd=ROOT
    )


def test_cron_without_a_running_tree_says_how_to_start_it(tmp_path: Path) -> None:
    for args in (["list"], ["add", "--at", "2030-01-01T09:00", "hello"], ["rm", "x"]):
        out = run(tmp_path, *args)
        assert out.returncode == 1, out.stderr
        assert "moltbot is not running" in out.stderr and "moltbot up" in out.stderr
        assert "Traceback" not in out.stderr


def test_cron_add_needs_exactly_one_time(tmp_path: Path) -> None:
    neither = run(tmp_path, "add", "hello")
    assert neither.returncode == 2 and "one of the arguments --at --cron is required" in (
        neither.stderr
    )
    both = run(tmp_path, "add", "--at", "2030-01-01T09:00", "--cron", "0 9 * * *", "hello")
    assert both.returncode == 2 and "not allowed with argument" in both.stderr
    assert run(tmp_path).returncode == 2  # bare `moltbot cron`: the help
