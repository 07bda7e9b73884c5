"""5. Memory: total unshared memory (USS, psutil) of every process of the local Ray this run
started (GCS, raylet, idle workers, every actor), with Ray idle before the tree (the
baseline), with the tree idle, and under load (max during the throughput ramp, or a short
load here when run alone); per extra channel: the USS of each channel actor's process.
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks import harness as h
from benchmarks.throughput import UssSampler

NAME = "memory"
TREE_OVER_RAY_MB = 300.0  # issue 21: the idle tree within Ray's idle USS + 300 MB
PER_CHANNEL_MB = 40.0  # ... and each extra channel account under 40 MB


def ray(ctx: h.Ctx) -> None:
    tree = ctx.ray_tree()
    if "under_load" not in ctx.memory:
        p = ctx.platforms
        with UssSampler(every_s=2.0) as sampler:
            p.run(p.open_loop(20, 4 if ctx.quick else 8, h.convs(30, start=500_000)), timeout=120)
        ctx.memory["under_load"] = {
            "uss_mb": h.mb(sampler.max_total),
            "by_kind_mb": sampler.by_kind,
            "how": "max of samples every 2 s during 20 msg/s",
        }
    per: dict[str, float] = {}
    import psutil

    for ch, acct in (("telegram", "tg0"), ("slack", "sl0"), ("signal", "sg0")):
        try:
            per[ch] = h.mb(h.uss(psutil.Process(tree.pid(f"channels/{ch}:{acct}"))))
        except Exception as exc:
            h.log(f"memory: {ch}: {type(exc).__name__}")
    ctx.memory["per_channel_mb"] = per
    time.sleep(0.5)


def report(ctx: h.Ctx) -> dict[str, Any]:
    m = ctx.memory
    idle_ray = m.get("ray_idle", {}).get("uss_mb")
    idle_tree = m.get("tree_idle", {}).get("uss_mb")
    load = m.get("under_load", {}).get("uss_mb")
    per = m.get("per_channel_mb", {})
    per_mean = round(sum(per.values()) / len(per), 1) if per else None
    figures = {
        "tree_idle_mb": idle_tree,
        "tree_under_load_mb": load,
        "tree_only_idle_mb": None
        if idle_tree is None or idle_ray is None
        else round(idle_tree - idle_ray, 1),
        "per_channel_actor_mb": per,
        "per_extra_channel_mb": per_mean,
        "tree_idle_by_kind_mb": m.get("tree_idle", {}).get("by_kind_mb"),
        "under_load_by_kind_mb": m.get("under_load", {}).get("by_kind_mb"),
    }
    baseline = {"ray_idle_mb": idle_ray, "by_kind_mb": m.get("ray_idle", {}).get("by_kind_mb")}
    ratios = {
        "tree_idle_vs_ray_idle": h.ratio(idle_tree, idle_ray),
        "tree_load_vs_ray_idle": h.ratio(load, idle_ray),
    }
    h.print_table(
        "memory: USS of the whole local Ray (MB)",
        ["state", "USS MB", "x Ray idle"],
        [
            ["Ray idle (baseline)", idle_ray, 1.0 if idle_ray else None],
            ["tree idle", idle_tree, ratios["tree_idle_vs_ray_idle"]],
            ["tree under load", load, ratios["tree_load_vs_ray_idle"]],
            ["per extra channel (mean channel actor)", per_mean, None],
        ],
    )
    kinds = m.get("tree_idle", {}).get("by_kind_mb") or {}
    if kinds:
        h.print_table(
            "tree idle by process kind (MB)",
            ["kind", "USS MB"],
            sorted(([k, v] for k, v in kinds.items()), key=lambda r: -r[1]),
        )
    over = figures["tree_only_idle_mb"]
    targets = [
        h.target(
            f"tree idle over Ray idle ({idle_ray} MB), 3 channels (MB)",
            over,
            "<=",
            TREE_OVER_RAY_MB,
            " MB",
        ),
        h.target("each extra channel account (MB)", per_mean, "<", PER_CHANNEL_MB, " MB"),
    ]
    h.print_targets(targets)
    path = h.write_result(
        NAME,
        quick=ctx.quick,
        figures=figures,
        baseline=baseline,
        ratios=ratios,
        targets=targets,
        out_dir=ctx.out_dir,
        notes=[
            "targets (issue 21): the idle tree with three channels within Ray's idle USS "
            "+ 300 MB; each extra channel account under 40 MB",
            "USS = memory_full_info().uss summed over every descendant of "
            "the benchmark driver that belongs to Ray (browser and baseline "
            "process excluded); the driver itself is not counted",
            "per extra channel = USS of one channel actor process (its "
            "supervisor's bookkeeping is negligible)",
        ],
    )
    return {"path": str(path), "targets": targets}
