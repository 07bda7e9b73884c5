"""What every benchmark shares: the fake platforms with reply timing, load generators, the
tree on Ray and the same pipeline without Ray, statistics, results files.

Measuring points. A message's latency is from the moment the load generator hands it to the
fake platform (``inject``) to the moment the fake platform receives the bot's reply
(``sendMessage`` / ``chat.postMessage`` / ``/v2/send``): "inbound platform message → reply
sent". The fakes run in this (the driver) process on an event loop thread; each message text
carries a token ``bq<N>x`` that the offline provider echoes back, so replies are matched to
messages exactly (duplicates are counted).

Two systems are measured against the same fakes:

* **ray**: the real tree (root supervisor → store, gateway, agents, tools, channels) on a
  local Ray started here (``ray.init`` on 127.0.0.1, 200 MB object store, no dashboard);
* **baseline**: ``benchmarks.pipeline``, the same adapters, ``ChannelService``, journal,
  transcripts and agent turn code in ONE asyncio process without Ray (a subprocess, so the
  fakes' process is the same in both).
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any

import actors  # noqa: F401  - Ray's environment before any ray import
from benchmarks.common import (
    ANTHROPIC_KEY,
    CHANNELS,
    GATEWAY_TOKEN,
    RAY_ENV,
    RESULTS,
    SECRET_ENV,
    log,
)
from benchmarks.footprint import cpu_at_nice_0, cpu_per_message, cpu_snapshot, mb, tree_uss, uss
from benchmarks.platforms import Conv, Platforms, bench_config, convs
from benchmarks.stats import (
    _r,
    lat_summary,
    machine_info,
    percentile,
    plot,
    print_table,
    print_targets,
    ratio,
    ratio_interval,
    target,
    write_result,
)
from benchmarks.trees import Pipeline, RayTree, ray_init, ray_shutdown, state_medium, temp_home

__all__ = [  # what the benchmarks use as h.NAME
    "ANTHROPIC_KEY",
    "CHANNELS",
    "GATEWAY_TOKEN",
    "RAY_ENV",
    "RESULTS",
    "SECRET_ENV",
    "Conv",
    "Ctx",
    "Pipeline",
    "Platforms",
    "RayTree",
    "_r",
    "bench_config",
    "convs",
    "cpu_at_nice_0",
    "cpu_per_message",
    "cpu_snapshot",
    "lat_summary",
    "log",
    "machine_info",
    "mb",
    "percentile",
    "plot",
    "print_table",
    "print_targets",
    "ratio",
    "ratio_interval",
    "ray_init",
    "ray_shutdown",
    "state_medium",
    "target",
    "tree_uss",
    "uss",
    "write_result",
]


# --- one run: shared fakes, the baseline process, the Ray tree ---------------------------------
class Ctx:
    """What the benchmarks of one run share. Baseline phases all run first (with no Ray
    running), then the Ray phases on ONE full tree (starting it takes a while on 2 cores)."""

    def __init__(self, quick: bool, out_dir: Path | None = None) -> None:
        self.quick = quick
        self.out_dir = out_dir or RESULTS
        self.platforms = Platforms()
        self.data: dict[str, dict[str, Any]] = {}
        self.tree: RayTree | None = None
        self.memory: dict[str, Any] = {}
        self._homes: list[contextlib.ExitStack] = []
        self._pipeline: Pipeline | None = None
        self.baseline_ready_s: float | None = None

    def bucket(self, name: str) -> dict[str, Any]:
        return self.data.setdefault(name, {})

    def home(self, tag: str) -> Path:
        stack = contextlib.ExitStack()
        self._homes.append(stack)
        return stack.enter_context(temp_home(tag))

    def pipeline(self) -> Pipeline:
        """The baseline process on the shared fakes (no Ray may be running meanwhile)."""
        if self._pipeline is None:
            if self.tree is not None:
                raise RuntimeError("the baseline runs before the Ray tree")
            self._pipeline = Pipeline(bench_config(self.platforms), self.home("base")).start()
            self.baseline_ready_s = self._pipeline.ready_s
            log(f"baseline pipeline ready in {self._pipeline.ready_s:.1f}s")
        return self._pipeline

    def stop_pipeline(self) -> None:
        if self._pipeline is not None:
            self._pipeline.stop()
            self._pipeline = None

    def ray_idle(self) -> dict[str, Any]:
        """The local Ray (started if need be) once its own start has settled: USS in all and
        by process kind (MB), the baseline the trees' memory is read against."""
        ray_init()
        time.sleep(5 if self.quick else 10)  # let Ray's own start settle
        total, kinds = tree_uss()
        return {"uss_mb": mb(total), "by_kind_mb": {k: mb(v) for k, v in kinds.items()}}

    def ray_tree(self) -> RayTree:
        """The full tree on the shared fakes; Ray idle memory is sampled before it starts."""
        if self.tree is None:
            self.stop_pipeline()
            self.memory["ray_idle"] = idle = self.ray_idle()
            log(f"Ray idle: USS {idle['uss_mb']} MB")
            self.tree = RayTree(bench_config(self.platforms), self.home("ray"))
            self.tree.start()
            log(f"ray tree ready in {self.tree.ready_s:.1f}s")
            self.memory["tree_start_s"] = round(self.tree.ready_s, 2)
            self.platforms.run(
                self.platforms.closed_loop(convs(6, start=80_000), 2), timeout=180
            )  # warm: every channel and agent answered once
            time.sleep(3)
            total, kinds = tree_uss()
            self.memory["tree_idle"] = {
                "uss_mb": mb(total),
                "by_kind_mb": {k: mb(v) for k, v in kinds.items()},
            }
            log(f"tree idle: USS {mb(total)} MB")
        return self.tree

    def stop_tree(self) -> None:
        if self.tree is not None:
            self.tree.stop()
            self.tree = None

    def close(self) -> None:
        self.stop_pipeline()
        if self.tree is not None:
            self.tree.stop()
            self.tree = None
        ray_shutdown()
        self.platforms.close()
        for stack in self._homes:
            stack.close()
