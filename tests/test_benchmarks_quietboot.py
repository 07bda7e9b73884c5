"""The quietboot benchmark's parts that need no Ray: its order, its boots (real processes), its
ratios (benchmarks/quietboot.py)."""

from __future__ import annotations

import time

import pytest

from benchmarks import harness as h
from benchmarks import quietboot
from moltbot.quiet_imports import IDLE_ENV

pytestmark = pytest.mark.timeout(120)


def test_the_order_goes_there_and_back_so_each_setting_meets_the_drift_alike() -> None:
    assert quietboot.order(1) == ["none", "nice", "idle", "idle", "nice", "none"]
    two = quietboot.order(2)
    assert len(two) == 12
    assert {s: two.count(s) for s in quietboot.SETTINGS} == {"none": 4, "nice": 4, "idle": 4}
    # the mean position of each setting is the same: a linear drift favours none of them
    means = {s: sum(i for i, x in enumerate(two) if x == s) / 4 for s in quietboot.SETTINGS}
    assert len(set(means.values())) == 1, means


def test_the_settings_are_the_switch_of_the_quiet_threads() -> None:
    assert quietboot.SETTINGS["none"] is None
    assert quietboot.SETTINGS["nice"] == {IDLE_ENV: "0"}
    assert quietboot.SETTINGS["idle"] == {IDLE_ENV: "1"}


def test_a_boot_imports_what_a_restarted_telegram_process_does() -> None:
    modules = quietboot.boot_modules()
    assert modules[0] == "actors" and "ray" in modules and "actors.base" in modules
    assert "moltbot.channels.telegram" in modules
    assert modules.index("ray") < modules.index("moltbot.channels.telegram")


def test_a_boot_is_a_fresh_process_whose_cpu_and_wall_time_are_measured() -> None:
    cpu, wall = quietboot.boot_once(["tests.actors.fixtures.busy_import"], {IDLE_ENV: "1"})
    assert cpu >= 0.01  # the fixture's 10 ms of CPU, and Python's own start on top
    assert wall >= cpu * 0.5
    with pytest.raises(RuntimeError, match="a boot failed"):
        quietboot.boot_once(["tests.actors.fixtures.broken_import"], {})


def test_boots_run_back_to_back_until_stopped() -> None:
    booting = quietboot.Booting(["json"], {})
    done = []
    for _ in range(200):
        done = list(booting.done)
        if done:
            break
        time.sleep(0.05)
    got = booting.stop()
    assert done and len(got) >= len(done)
    assert all(cpu > 0 and wall > 0 for cpu, wall in got)


def test_a_failed_boot_is_raised_when_stopped() -> None:
    booting = quietboot.Booting(["tests.actors.fixtures.broken_import"], {})
    with pytest.raises(RuntimeError, match="a boot failed"):
        for _ in range(100):
            if booting.error is not None:
                break
            time.sleep(0.05)
        booting.stop()


def test_ratios_round_and_say_none_without_a_base() -> None:
    """The shared ``benchmarks.stats.ratio`` the p99 ratios use."""
    assert h.ratio(12.0, 10.0) == 1.2
    assert h.ratio(None, 10.0) is None
    assert h.ratio(5.0, None) is None
    assert h.ratio(5.0, 0.0) is None


def test_what_boots_added_is_each_figure_less_the_same_without() -> None:
    lat = {"p50_ms": 4.5, "p90_ms": 7.0, "p99_ms": 12.25, "mean_ms": 5.0, "n": 9}
    base = {"p50_ms": 4.0, "p90_ms": 6.0, "p99_ms": 10.0, "mean_ms": None}
    assert quietboot.added(lat, base) == {
        "p50_ms": 0.5,
        "p90_ms": 1.0,
        "p99_ms": 2.25,
        "mean_ms": None,
    }
