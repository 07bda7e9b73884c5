"""The benchmark harness end to end on its cheapest path: the no-Ray baseline of the routing
benchmark (fake Telegram/Slack/Signal in this process, ``benchmarks.pipeline`` in a
subprocess), a handful of messages, JSON written with the expected keys. Ray is not started."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks import harness, routing

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
