"""6. Memory that cannot creep: a soak run with a leaking plugin and steady traffic.

One tree (the three fake channels, the offline agent) plus ``leaky``, a plugin that keeps
``LEAK_MB`` more every second in its sandboxed host, under a plugins ceiling of ``CEILING_MB``
(``supervision.plugins.max_memory_mb``). Open-loop traffic on all three channels the whole time.
Every ``SAMPLE_S`` the USS of every Ray process is read, split into the leaking child's process
tree and the rest. Reported: the leaking child's restarts (each a crossing of its ceiling), the
highest size it was seen at, messages lost and answered twice, and the slope of the rest of the
tree's USS (least squares over the samples after the first minute, MB/min; target < 1).

``make bench`` runs it scaled: ``SOAK_S`` seconds (``MB_SOAK_MINUTES`` sets another length, 30
for the issue's full soak), with the leak fast enough to cross the ceiling every ~40 s.
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import psutil

from benchmarks import harness as h
from benchmarks.common import ROOT_DIR
from benchmarks.footprint import uss

NAME = "soak"
CEILING_MB = 400
LEAK_MB = 8
LEAK_EVERY_S = 1.0
RATE = 3.0  # messages/s over the three channels
SAMPLE_S = 10.0
SOAK_S = 300.0
QUICK_S = 90.0
WARMUP_S = 60.0
LEAKY = "plugins/plugin:leaky"
MODULE = "tests.plugins.fixtures.leaks"


def config(ctx: h.Ctx) -> dict[str, Any]:
    from moltbot.plugins.manifest import source_digest

    cfg = h.bench_config(ctx.platforms)
    cfg["plugins"] = [
        {
            "name": "leaky",
            "module": MODULE,
            "capabilities": ["tools"],
            "sha256": source_digest(MODULE),
            "config": {"mb": LEAK_MB, "every_s": LEAK_EVERY_S},
        }
    ]
    cfg["supervision"] = {"plugins": {"max_memory_mb": CEILING_MB, "intensity": 10, "period": 5}}
    return cfg


def sample(tree: h.RayTree) -> dict[str, Any] | None:
    """USS of the leaking child's process tree and of every other Ray process (by kind), in
    MB; None while the child is being restarted (its processes cannot be told apart then)."""
    try:
        top = psutil.Process(tree.pid(LEAKY))
        leaky = {top.pid, *(c.pid for c in top.children(recursive=True))}
    except Exception:
        return None
    mine = sum(uss(psutil.Process(pid)) for pid in leaky if psutil.pid_exists(pid))
    rest, kinds = h.tree_uss(skip=lambda p: p.pid in leaky)
    return {
        "leaky_mb": h.mb(mine),
        "rest_mb": h.mb(rest),
        "kinds": {k: h.mb(v) for k, v in kinds.items()},
    }


def growth(first: dict[str, float], last: dict[str, float]) -> dict[str, float]:
    """MB gained by each process kind between two samples, largest first."""
    keys = set(first) | set(last)
    grown = {k: round(last.get(k, 0.0) - first.get(k, 0.0), 1) for k in keys}
    return dict(sorted(grown.items(), key=lambda kv: -abs(kv[1])))


def slope_per_min(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of (seconds, MB) points, in MB per minute."""
    if len(points) < 3:
        return None
    n = len(points)
    mx = sum(t for t, _ in points) / n
    my = sum(v for _, v in points) / n
    var = sum((t - mx) ** 2 for t, _ in points)
    if var == 0:
        return None
    return sum((t - mx) * (v - my) for t, v in points) / var * 60.0


RAY_OWN_ACTORS = ("actor DashboardAgent", "actor RuntimeEnvAgent")
LATE_S = 300.0  # the slope from here on too: what is left once the first minutes' growth is done


def is_ray_own(kind: str) -> bool:
    """Ray's own processes (GCS, raylet, dashboard, monitors), not the tree's actors."""
    return not kind.startswith("actor ") or kind in RAY_OWN_ACTORS


def window_slopes(samples: list[dict[str, Any]], width_s: float = LATE_S) -> list[float | None]:
    """The rest's slope (MB/min) in each ``width_s`` window of the run, the first from the end
    of the warm-up: does the growth slow down, or keep on?"""
    out: list[float | None] = []
    start = 0.0
    while any(s["t_s"] >= start for s in samples):
        lo = max(start, WARMUP_S)
        pts = [(s["t_s"], s["rest_mb"]) for s in samples if lo <= s["t_s"] < start + width_s]
        out.append(slope_per_min(pts))
        start += width_s
    return out


def split_slopes(samples: list[dict[str, Any]], since_s: float) -> dict[str, float | None]:
    """Slopes (MB/min) after ``since_s`` of the rest, and of its two parts: the tree's own
    processes and Ray's."""
    after = [s for s in samples if s["t_s"] >= since_s]

    def part(ray_own: bool) -> list[tuple[float, float]]:
        return [
            (s["t_s"], sum(v for k, v in s["kinds"].items() if is_ray_own(k) == ray_own))
            for s in after
        ]

    return {
        "rest": slope_per_min([(s["t_s"], s["rest_mb"]) for s in after]),
        "tree": slope_per_min(part(False)),
        "ray": slope_per_min(part(True)),
    }


def post(ctx: h.Ctx) -> None:
    minutes = os.environ.get("MB_SOAK_MINUTES")
    duration = float(minutes) * 60 if minutes else (QUICK_S if ctx.quick else SOAK_S)
    d = ctx.bucket(NAME)
    p = ctx.platforms
    env = {"PYTHONPATH": str(ROOT_DIR)}  # the plugin's module (a test fixture)
    with h.RayTree(config(ctx), ctx.home("soak"), env=env) as tree:
        p.run(p.closed_loop(h.convs(6, start=900_000), 1), timeout=180)  # warm
        dup0 = p.rec.duplicates
        fut = asyncio.run_coroutine_threadsafe(
            p.open_loop(RATE, duration, h.convs(30, start=910_000), drain_s=30.0), p.lt.loop
        )
        t0 = time.monotonic()
        samples: list[dict[str, Any]] = []
        while time.monotonic() - t0 < duration:
            time.sleep(SAMPLE_S)
            got = sample(tree)
            if got is not None:
                samples.append({"t_s": round(time.monotonic() - t0, 1), **got})
        res = fut.result(duration + 180)
        status = tree.status()
    h.ray_shutdown()  # the next phase (recovery) runs moltbot up: its own Ray head
    from actors.registry import actor_name
    from moltbot.cli.render import flatten

    leaky = flatten(status).get(actor_name(LEAKY), {})
    after = [s for s in samples if s["t_s"] >= WARMUP_S]
    late = [(s["t_s"], s["rest_mb"]) for s in after]
    d.update(
        {
            "duration_s": duration,
            "sent": res["sent"],
            "answered": res["answered"],
            "lost": len(p.rec.lost(res["ids"])),
            "duplicate_replies": p.rec.duplicates - dup0,
            "leaky_restarts": leaky.get("restarts"),
            "leaky_last_exit": leaky.get("last_exit"),
            "leaky_max_mb": max((s["leaky_mb"] for s in samples), default=None),
            "rest_slope_mb_per_min": slope_per_min(late),
            "rest_first_mb": late[0][1] if late else None,
            "rest_last_mb": late[-1][1] if late else None,
            "slopes_after_warmup_mb_per_min": split_slopes(samples, WARMUP_S),
            "slopes_after_5min_mb_per_min": split_slopes(samples, LATE_S),
            "rest_slope_by_5min_window": window_slopes(samples),
            "rest_growth_by_kind_mb": growth(after[0]["kinds"], after[-1]["kinds"])
            if len(after) > 1
            else {},
            "samples": samples,  # each with its USS by process kind
        }
    )
    h.log(
        f"soak: restarts={d['leaky_restarts']} lost={d['lost']} "
        f"slope={d['rest_slope_mb_per_min']} MB/min"
    )


def report(ctx: h.Ctx) -> dict[str, Any]:
    d = ctx.bucket(NAME)
    duration = d.get("duration_s") or 0.0
    # the leak crosses the ceiling about every (ceiling - a fresh child) / rate seconds
    expected = int(duration / (CEILING_MB / (LEAK_MB / LEAK_EVERY_S))) if duration else 0
    slope = d.get("rest_slope_mb_per_min")
    h.print_table(
        f"soak: leaking plugin ({LEAK_MB} MB/{LEAK_EVERY_S:g}s, ceiling {CEILING_MB} MB), "
        f"{RATE:g} msg/s for {duration:.0f}s",
        [
            "sent",
            "lost",
            "dup",
            "leaky restarts",
            "leaky max MB",
            "rest MB",
            "rest MB/min",
            "tree's / Ray's",
            "from 5 min",
        ],
        [
            [
                d.get("sent"),
                d.get("lost"),
                d.get("duplicate_replies"),
                d.get("leaky_restarts"),
                d.get("leaky_max_mb"),
                f"{d.get('rest_first_mb')} -> {d.get('rest_last_mb')}",
                None if slope is None else round(slope, 2),
                _pair(d.get("slopes_after_warmup_mb_per_min")),
                _pair(d.get("slopes_after_5min_mb_per_min"), "rest"),
            ]
        ],
    )
    targets = [
        h.target("messages lost", d.get("lost"), "==", 0),
        h.target("replies sent twice", d.get("duplicate_replies"), "==", 0),
        h.target("leaky restarts (each crossing)", d.get("leaky_restarts"), ">=", max(1, expected)),
        h.target("rest of the tree's USS slope", slope, "<", 1.0, "MB/min"),
    ]
    windows = d.get("rest_slope_by_5min_window") or []
    shown = " ".join("-" if w is None else f"{w:+.2f}" for w in windows)
    h.log(f"soak: the rest's slope by 5-minute window (MB/min): {shown or '-'}")
    h.print_targets(targets)
    path = h.write_result(
        NAME,
        quick=ctx.quick,
        figures=d,  # the samples too (``samples``), each with its USS by process kind
        baseline={},
        ratios={},
        targets=targets,
        out_dir=ctx.out_dir,
        notes=[
            "leaky = tests/plugins/fixtures/leaks.py: keeps memory in its sandboxed host",
            f"figures.samples: one every {SAMPLE_S:g}s (t_s, leaky_mb, rest_mb, kinds)",
            f"slope over the samples after {WARMUP_S:g}s",
            f"growth of the rest by process kind over that span: {d.get('rest_growth_by_kind_mb')}",
            "tree's = the tree's actors; Ray's = the GCS, raylet, dashboard and its agents, "
            "monitors (kinds in samples)",
        ],
    )
    return {"path": str(path), "targets": targets}


def _pair(slopes: dict[str, float | None] | None, first: str = "tree") -> str:
    """``a / b`` of two of ``split_slopes``' figures (``rest`` then ``tree`` / ``ray``)."""
    if not slopes:
        return "-"
    keys = ("rest", "tree", "ray") if first == "rest" else ("tree", "ray")
    return " / ".join("-" if slopes.get(k) is None else f"{slopes[k]:.2f}" for k in keys)
