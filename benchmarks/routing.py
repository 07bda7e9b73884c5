"""1. Routing overhead: inbound platform message → reply sent, p50/p99, at 1, 10 and 100
concurrent conversations (closed loop: each conversation waits for its reply before sending
the next), spread over Telegram, Slack and Signal; offline provider.

Baseline: the same adapters and agent loop in one asyncio process without Ray
(``benchmarks.pipeline``). Overhead = ray - baseline. Target: p99 overhead < 10 ms at 100
conversations (on this machine's cores).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import harness as h

NAME = "routing"
LEVELS = (1, 10, 100)
TARGET_OVERHEAD_MS = 10.0


def per_conv(level: int, quick: bool) -> int:
    """Messages per conversation: bounded totals (1: 150, 10: 300, 100: 500; quick ~1/8)."""
    full = {1: 150, 10: 30, 100: 5}
    fast = {1: 20, 10: 4, 100: 1}
    return (fast if quick else full).get(level, 2 if quick else 5)


def measure(
    p: h.Platforms,
    system: str,
    levels: Sequence[int],
    quick: bool,
    counts: dict[int, int] | None = None,
) -> dict[str, Any]:
    """Warm up, then the closed-loop levels against whatever system is running now."""
    out: dict[str, Any] = {}
    h.log(f"{system}: warm-up")
    p.run(p.closed_loop(h.convs(3 if quick else 6, start=90_000), 1 if quick else 3), timeout=180)
    start = 0
    for level in levels:
        n = (counts or {}).get(level) or per_conv(level, quick)
        conversations = h.convs(level, start=start)
        start += level
        cpu0 = h.cpu_snapshot()
        lats, timeouts = p.run(p.closed_loop(conversations, n), timeout=600)
        cpu = h.cpu_per_message(cpu0, h.cpu_snapshot(), len(lats))
        s = h.lat_summary(lats)
        s["timeouts"] = timeouts
        s["conversations"] = level
        s["cpu_ms_per_msg"] = cpu
        out[str(level)] = s
        h.log(
            f"{system} @ {level} conversations: n={s['n']} p50={s['p50_ms']} ms "
            f"p99={s['p99_ms']} ms timeouts={timeouts} cpu/msg={cpu}"
        )
    return out


def baseline(
    ctx: h.Ctx, levels: Sequence[int] = LEVELS, counts: dict[int, int] | None = None
) -> None:
    ctx.pipeline()
    ctx.bucket(NAME)["baseline"] = measure(ctx.platforms, "baseline", levels, ctx.quick, counts)


def ray(ctx: h.Ctx, levels: Sequence[int] = LEVELS, counts: dict[int, int] | None = None) -> None:
    ctx.ray_tree()
    ctx.bucket(NAME)["ray"] = measure(ctx.platforms, "ray", levels, ctx.quick, counts)


def report(ctx: h.Ctx, levels: Sequence[int] = LEVELS) -> dict[str, Any]:
    data = ctx.bucket(NAME)
    base = data.get("baseline", {})
    ray_ = data.get("ray", {})
    ratios: dict[str, Any] = {}
    overhead: dict[str, Any] = {}
    rows = []
    for level in levels:
        b, r = base.get(str(level), {}), ray_.get(str(level), {})
        ratios[str(level)] = {
            "p50": h.ratio(r.get("p50_ms"), b.get("p50_ms")),
            "p99": h.ratio(r.get("p99_ms"), b.get("p99_ms")),
        }
        overhead[str(level)] = {
            "p50_ms": _diff(r.get("p50_ms"), b.get("p50_ms")),
            "p99_ms": _diff(r.get("p99_ms"), b.get("p99_ms")),
        }
        rows.append(
            [
                level,
                b.get("p50_ms"),
                b.get("p99_ms"),
                r.get("p50_ms"),
                r.get("p99_ms"),
                overhead[str(level)]["p50_ms"],
                overhead[str(level)]["p99_ms"],
                ratios[str(level)]["p99"],
            ]
        )
    top = str(max(levels))
    targets = [
        h.target(
            f"p99 overhead at {top} conversations (ms)",
            overhead[top]["p99_ms"],
            "<",
            TARGET_OVERHEAD_MS,
            " ms",
        )
    ]
    h.print_table(
        "routing: inbound message → reply sent (ms)",
        ["conv", "base p50", "base p99", "ray p50", "ray p99", "ovh p50", "ovh p99", "p99 ratio"],
        rows,
    )
    h.print_targets(targets)
    figures = {"ray": ray_, "overhead": overhead, "duplicates": ctx.platforms.rec.duplicates}
    path = h.write_result(
        NAME,
        quick=ctx.quick,
        figures=figures,
        baseline=base,
        ratios=ratios,
        targets=targets,
        out_dir=ctx.out_dir,
        notes=[
            "closed loop per conversation; conversations spread round-robin "
            "over telegram/slack/signal; offline provider",
            "ray: full tree (store, gateway, agents x2, tools, channels) on a "
            "local Ray; baseline: benchmarks.pipeline (one asyncio process)",
            f"state (journal, transcripts) on {h.state_medium()}, fsynced; a "
            "message costs about 6 fsyncs (see machine.disk_fsync_ms)",
        ],
    )
    if ray_ and base:
        xs = [float(x) for x in levels]
        h.plot(
            ctx.out_dir / "routing.png",
            "routing latency p99",
            "concurrent conversations",
            "p99 ms",
            {
                "ray": (xs, [ray_[str(x)]["p99_ms"] for x in levels]),
                "baseline (no Ray)": (xs, [base[str(x)]["p99_ms"] for x in levels]),
            },
            logy=True,
        )
    return {"path": str(path), "targets": targets}


def run(
    quick: bool = False,
    *,
    systems: Sequence[str] = ("baseline", "ray"),
    levels: Sequence[int] = LEVELS,
    counts: dict[int, int] | None = None,
    out_dir: Path | None = None,
) -> dict[str, Any]:
    """Standalone (the smoke test uses ``systems=("baseline",)``: no Ray is started)."""
    ctx = h.Ctx(quick, out_dir)
    try:
        if "baseline" in systems:
            baseline(ctx, levels, counts)
        if "ray" in systems:
            ray(ctx, levels, counts)
        return report(ctx, levels)
    finally:
        ctx.close()


def _diff(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(a - b, 2)
