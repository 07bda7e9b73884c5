"""The benchmark harness end to end on its cheapest path: the no-Ray baseline of the routing
benchmark (fake Telegram/Slack/Signal in this process, ``benchmarks.pipeline`` in a
subprocess), a handful of messages, JSON written with the expected keys. Ray is not started."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from benchmarks import harness, openloop, routing

pytestmark = pytest.mark.timeout(90)


def test_routing_baseline_quick_writes_json(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_ray() -> None:
        raise AssertionError("the baseline path must not start Ray")

    monkeypatch.setattr(harness, "ray_init", no_ray)
    out = routing.run(
        quick=True, systems=("baseline",), levels=(1, 3), counts={1: 4, 3: 2}, out_dir=tmp_path
    )
    data = json.loads(Path(out["path"]).read_text())
    assert {
        "benchmark",
        "machine",
        "timestamp",
        "figures",
        "baseline",
        "ratios",
        "targets",
        "quick",
    } <= data.keys()
    assert data["benchmark"] == "routing" and data["quick"] is True
    assert {"cpu_count", "python", "ray"} <= data["machine"].keys()
    for level, n in (("1", 4), ("3", 6)):
        base = data["baseline"][level]
        assert base["n"] == n and base["timeouts"] == 0
        assert 0 < base["p50_ms"] <= base["p99_ms"]
    target = data["targets"][0]
    assert {"name", "value", "target", "met"} <= target.keys()
    assert target["value"] is None  # no Ray run: no overhead figure, not a fake pass


def test_openloop_schedule_is_seeded_poisson() -> None:
    events = openloop.schedule(100, 600.0, 10.0)
    assert events == openloop.schedule(100, 600.0, 10.0)  # the same on both sides
    assert events != openloop.schedule(100, 600.0, 10.0, seed=openloop.SEED + 1)
    assert [t for t, _ in events] == sorted(t for t, _ in events)
    assert all(0 <= t < 600.0 for t, _ in events)
    assert {c for _, c in events} == set(range(100))
    # rate 100 conversations / 10 s = 10 msg/s: 6000 expected, Poisson sd ~77
    assert 5700 < len(events) < 6300
    gaps = sorted(
        b - a for c in range(100) for a, b in itertools.pairwise([t for t, k in events if k == c])
    )
    mean = sum(gaps) / len(gaps)
    assert 9.0 < mean < 11.0
    # exponential: the median gap is ln 2 of the mean, not about the mean as for even spacing
    assert 0.6 < gaps[len(gaps) // 2] / mean < 0.8


def test_openloop_baseline_waits_for_the_slow_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_ray() -> None:
        raise AssertionError("the baseline path must not start Ray")

    monkeypatch.setattr(harness, "ray_init", no_ray)
    monkeypatch.setattr(openloop, "CONVERSATIONS", 12)
    monkeypatch.setattr(openloop, "MEAN_GAP_S", 2.0)
    monkeypatch.setattr(openloop, "QUICK_S", 4.0)
    out = openloop.run(quick=True, systems=("baseline",), out_dir=tmp_path)
    data = json.loads(Path(out["path"]).read_text())
    base = data["baseline"]
    assert base["sent"] == len(openloop.schedule(12, 4.0, 2.0)) > 5
    assert base["lost"] == 0 and base["duplicates"] == 0 and base["n"] == base["sent"]
    # every reply waited for the model's first token, and not much longer at this load
    assert openloop.FIRST_TOKEN_S * 1000 <= base["min_ms"] <= base["p50_ms"] < 1500
    assert data["targets"][0]["value"] is None  # no Ray run: no added p99, not a fake pass


def test_crash_worst_names_the_slowest_and_what_was_around_them() -> None:
    from benchmarks.crash import worst
    from benchmarks.platforms import Recorder

    rec = Recorder()
    # (id, channel, sent, replied): slack 1 slow right after a kill, slack 2 fast, signal 3
    # slow while two telegram replies went out, telegram 4/5 those replies, 6 one before
    rows = [
        (1, "slack", 10.000, 10.030),
        (2, "slack", 11.000, 11.004),
        (3, "signal", 12.000, 12.050),
        (4, "telegram", 11.500, 12.010),
        (5, "telegram", 11.600, 12.040),
        (6, "telegram", 9.000, 11.900),
    ]
    for mid, ch, sent, replied in rows:
        rec.sent_at[mid], rec.channel_of[mid], rec.replied_at[mid] = sent, ch, replied
    # the fakes' loop late: 12 ms inside message 1's flight; for message 3, 9 ms on a wake
    # before it was sent (not counted), 4 ms inside; 40 ms after both
    stalls = [(10.010, 0.012), (11.985, 0.009), (12.020, 0.004), (13.0, 0.040)]
    out = worst(rec, [1, 2, 3, 4, 5, 6], kill_at=[9.995, 11.9], stalls=stalls, n=1)
    assert out["slack"] == [
        {"ms": 30.0, "since_kill_ms": 5, "telegram_replies_in_flight": 0, "fakes_stalled_ms": 12.0}
    ]
    assert out["signal"] == [
        {"ms": 50.0, "since_kill_ms": 100, "telegram_replies_in_flight": 2, "fakes_stalled_ms": 4.0}
    ]
    calm = worst(rec, [1, 2], kill_at=[], n=2)
    assert [r["ms"] for r in calm["slack"]] == [30.0, 4.0]
    assert calm["slack"][0]["since_kill_ms"] is None and calm["signal"] == []
    assert calm["slack"][0]["fakes_stalled_ms"] == 0.0  # no stalls given


def test_ratio_interval_brackets_the_true_ratio_and_narrows_with_data() -> None:
    import random

    from benchmarks.stats import ratio_interval

    rng = random.Random(7)
    calm = [rng.expovariate(1.0) for _ in range(2000)]
    same = [rng.expovariate(1.0) for _ in range(2000)]
    slower = [1.5 * rng.expovariate(1.0) for _ in range(2000)]
    lo, hi = ratio_interval(same, calm, q=99, seed=1) or (0.0, 0.0)
    assert lo < 1.0 < hi  # one distribution: the interval holds 1
    lo2, hi2 = ratio_interval(slower, calm, q=99, seed=1) or (0.0, 0.0)
    assert lo2 < 1.5 < hi2 and lo2 > 1.0  # 1.5x slower: holds 1.5 and excludes 1
    few = ratio_interval(same[:200], calm[:200], q=99, seed=1) or (0.0, 0.0)
    assert few[1] - few[0] > hi - lo  # ten times fewer messages: a wider interval
    assert ratio_interval([], calm) is None and ratio_interval(same, [0.0, 0.0]) is None
    assert ratio_interval(same, calm, seed=1) == ratio_interval(same, calm, seed=1)  # seeded


def test_crash_blocks_alternate_abba_and_pair_calm_with_storm() -> None:
    from benchmarks.crash import order

    blocks = order(4)
    assert [crash for _pair, crash in blocks] == [False, True, True, False] * 2
    # each pair has one calm and one storm block, next to each other
    for pair in range(4):
        assert sorted(c for p, c in blocks if p == pair) == [False, True]
        assert [i for i, (p, _c) in enumerate(blocks) if p == pair] == [2 * pair, 2 * pair + 1]
    assert order(1) == [(0, False), (0, True)]


def test_crash_since_kill_buckets_messages_by_their_blocks_own_kills() -> None:
    from benchmarks.crash import Blocks, since_kill
    from benchmarks.platforms import Recorder

    rec = Recorder()
    # block A: kills at 10.0 and 20.0; block B: none of its own (a calm-looking start)
    rows = [
        (1, "slack", 5.0, 0.004),  # before A's first kill
        (2, "slack", 10.05, 0.020),  # 50 ms after a kill: slow
        (3, "signal", 10.5, 0.003),  # 0.5 s after
        (4, "signal", 14.0, 0.030),  # 4 s after: slow
        (5, "slack", 33.0, 0.009),  # 13 s after the kill at 20.0: slow
        (6, "telegram", 10.06, 5.0),  # telegram's own: not counted
        (7, "slack", 40.0, 0.050),  # block B, which had no kill: before its first
    ]
    for mid, ch, sent, lat in rows:
        rec.sent_at[mid], rec.channel_of[mid], rec.replied_at[mid] = sent, ch, sent + lat
    storm = Blocks()
    storm.per_block = [[1, 2, 3, 4, 5, 6], [7]]
    storm.kills_per_block = [[10.0, 20.0], []]
    got = {
        r["since_kill"]: (r["n"], r["over_calm_p99"])
        for r in since_kill(rec, storm, {"slack": 8.0, "signal": 8.0})
    }
    assert got == {
        "before first kill": (2, 1),
        "0-0.1 s": (1, 1),
        "0.1-1 s": (1, 0),
        "1-3 s": (0, 0),
        "3-6 s": (1, 1),
        "6-12 s": (0, 0),
        ">= 12 s": (1, 1),
    }


def test_recovery_counts_a_restarts_cpu_in_new_processes_and_the_others() -> None:
    from benchmarks.recovery import _restart_cpu

    before = {1: ("raylet", 10.0), 2: ("gcs_server", 5.0), 3: ("actor ProcessHost", 1.0)}
    # 3 is the victim: gone after; 7 and 8 started meanwhile
    after = {
        1: ("raylet", 10.5),
        2: ("gcs_server", 5.25),
        7: ("actor ProcessHost", 1.4),
        8: ("idle worker", 0.1),
    }
    at_nice_0 = {7: 0.25, 8: 0.1}.__getitem__  # of the new processes' threads still there
    assert _restart_cpu(before, after, at_nice_0) == {
        "new_processes": 1.5,
        "new_at_nice_0": 0.35,
        "the_others": 0.75,
    }


def test_recovery_probes_wait_until_the_killed_process_is_gone() -> None:
    import subprocess
    import sys
    import threading
    import time

    from benchmarks.recovery import _wait_gone

    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    threading.Timer(0.3, proc.kill).start()
    t0 = time.monotonic()
    _wait_gone(proc.pid)
    waited = time.monotonic() - t0
    proc.wait(5)
    assert 0.25 < waited < 10
