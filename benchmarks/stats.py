"""Statistics, targets, result files, tables and plots of the benchmarks."""

from __future__ import annotations

import importlib.metadata
import json
import math
import os
import platform
import random
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil

import actors  # noqa: F401  - Ray's environment before any ray import
from benchmarks.common import RESULTS, log
from benchmarks.trees import fsync_ms, state_medium


# --- statistics and results ------------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100); NaN for no values."""
    if not values:
        return math.nan
    xs = sorted(values)
    k = (len(xs) - 1) * q / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def ratio_interval(
    a: Sequence[float],
    b: Sequence[float],
    q: float = 99,
    level: float = 0.9,
    resamples: int = 2000,
    seed: int = 0,
) -> list[float] | None:
    """A bootstrap interval (``level``, percentile method) for percentile ``q`` of ``a`` over
    that of ``b``: each side resampled with replacement, its own size. How far the ratio could
    move on luck alone; None when a side is empty or its resampled percentile is 0."""
    if not a or not b:
        return None
    rng = random.Random(seed)
    ratios = []
    for _ in range(resamples):
        den = percentile(rng.choices(b, k=len(b)), q)
        if den <= 0:
            return None
        ratios.append(percentile(rng.choices(a, k=len(a)), q) / den)
    tail = (1.0 - level) / 2 * 100
    return [round(percentile(ratios, tail), 3), round(percentile(ratios, 100 - tail), 3)]


def lat_summary(latencies_s: Sequence[float]) -> dict[str, Any]:
    ms = [x * 1000.0 for x in latencies_s]
    return {
        "n": len(ms),
        "p50_ms": _r(percentile(ms, 50)),
        "p90_ms": _r(percentile(ms, 90)),
        "p99_ms": _r(percentile(ms, 99)),
        "max_ms": _r(max(ms) if ms else math.nan),
        "mean_ms": _r(sum(ms) / len(ms) if ms else math.nan),
    }


def _r(x: float, nd: int = 2) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(x, nd)


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 3)


def target(name: str, value: float | None, op: str, limit: float, unit: str = "") -> dict[str, Any]:
    met = (
        None
        if value is None
        else {
            "<": value < limit,
            "<=": value <= limit,
            ">=": value >= limit,
            "==": value == limit,
        }[op]
    )
    return {"name": name, "value": value, "target": f"{op} {limit}{unit}", "met": met}


def machine_info() -> dict[str, Any]:
    try:
        ray_version = importlib.metadata.version("ray")
    except importlib.metadata.PackageNotFoundError:
        ray_version = None
    return {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "ray": ray_version,
        "platform": platform.platform(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "load_avg_1_5_15": [round(x, 2) for x in os.getloadavg()],  # other work on the box
        "state_dir": state_medium(),
        "disk_fsync_ms": fsync_ms(),
    }


def write_result(
    name: str,
    *,
    quick: bool,
    figures: dict[str, Any],
    baseline: dict[str, Any],
    ratios: dict[str, Any],
    targets: list[dict[str, Any]],
    notes: list[str] | None = None,
    out_dir: Path | None = None,
) -> Path:
    out = out_dir or RESULTS
    out.mkdir(parents=True, exist_ok=True)
    data = {
        "benchmark": name,
        "quick": quick,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine_info(),
        "figures": figures,
        "baseline": baseline,
        "ratios": ratios,
        "targets": targets,
        "notes": notes or [],
    }
    path = out / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[_fmt(c) for c in row] for row in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)
    ]
    print(f"\n{title}")
    print("  " + "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    print("  " + "  ".join("-" * w for w in widths))
    for row in cells:
        print("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    print(flush=True)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1 else f"{v:.1f}"
    return str(v)


def print_targets(targets: list[dict[str, Any]]) -> None:
    print_table(
        "targets",
        ["target", "value", "wanted", "met"],
        [[t["name"], t["value"], t["target"], t["met"]] for t in targets],
    )


def plot(
    path: Path,
    title: str,
    xlabel: str,
    ylabel: str,
    series: dict[str, tuple[list[float], list[float]]],
    *,
    logy: bool = False,
) -> Path | None:
    """A line plot, if matplotlib is installed (``pip install -e '.[bench]'``)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib not installed: no plot (pip install -e '.[bench]')")
        return None
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, (xs, ys) in series.items():
        ax.plot(xs, ys, marker="o", label=label)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
