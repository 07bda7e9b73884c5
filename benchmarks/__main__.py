"""``python -m benchmarks [NAME ...] [--quick] [--disk]`` (``make bench`` runs them all).

Phases: every selected benchmark's no-Ray baseline first (nothing of Ray running), then the
Ray measurements on one shared tree, then ``moltbot up`` (its own Ray head), then the
reports: a table each on stdout, ``benchmarks/results/<name>.json`` (+ PNGs) and
``benchmarks/results/summary.json``.
"""

from __future__ import annotations

import argparse
import json
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks import (
    afterkill,
    crash,
    memory,
    openloop,
    quietboot,
    recovery,
    routing,
    soak,
    startstop,
    streaming,
    throughput,
    trees,
)
from benchmarks import harness as h

MODULES = {
    m.NAME: m
    for m in (
        routing,
        throughput,
        crash,
        quietboot,
        recovery,
        afterkill,
        memory,
        streaming,
        openloop,
        soak,
        startstop,
    )
}
BASELINE_ORDER = ("routing", "throughput", "streaming", "openloop")
# recovery ends the shared tree and starts one with warm standbys; afterkill and openloop run
# their own trees
RAY_ORDER = (
    "routing",
    "throughput",
    "memory",
    "crash",
    "quietboot",
    "streaming",
    "recovery",
    "afterkill",
    "openloop",
)
POST_ORDER = ("soak", "recovery", "startstop")  # each runs its own Ray


def _phase(
    ctx: h.Ctx, errors: dict[str, str], name: str, what: str, fn: Callable[[h.Ctx], Any]
) -> None:
    if name in errors:
        return
    print(f"\n== {name}: {what}", flush=True)
    t0 = time.monotonic()
    try:
        fn(ctx)
    except Exception as exc:
        traceback.print_exc()
        errors[name] = f"{what}: {type(exc).__name__}: {exc}"
    h.log(f"{name} {what} took {time.monotonic() - t0:.0f}s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__)
    parser.add_argument("names", nargs="*", help=f"any of {', '.join(MODULES)} (default all)")
    parser.add_argument("--quick", action="store_true", help="short smoke run (~3 min)")
    parser.add_argument(
        "--disk",
        action="store_true",
        help="keep MOLTBOT_HOME on the temp dir's disk instead of tmpfs",
    )
    parser.add_argument("--out", type=Path, default=h.RESULTS)
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in MODULES]
    if unknown:
        parser.error(f"unknown benchmark(s) {unknown}; known: {', '.join(MODULES)}")
    names = args.names or list(MODULES)
    if args.disk:
        trees.STATE_ROOT = None  # temp_home reads it there
    started = time.monotonic()
    ctx = h.Ctx(args.quick, args.out)
    errors: dict[str, str] = {}
    results: dict[str, Any] = {}
    try:
        for name in BASELINE_ORDER:
            if name in names and hasattr(MODULES[name], "baseline"):
                if name == "streaming":
                    ctx.stop_pipeline()
                _phase(ctx, errors, name, "baseline (no Ray)", MODULES[name].baseline)
        ctx.stop_pipeline()
        for name in RAY_ORDER:
            if name in names:
                _phase(ctx, errors, name, "on Ray", MODULES[name].ray)
        ctx.stop_tree()
        h.ray_shutdown()
        for name in POST_ORDER:
            if name in names:
                _phase(ctx, errors, name, "moltbot up", MODULES[name].post)
        print("\n================ results ================", flush=True)
        for name in names:
            try:
                results[name] = MODULES[name].report(ctx)
            except Exception as exc:
                traceback.print_exc()
                errors.setdefault(name, f"report: {type(exc).__name__}: {exc}")
    finally:
        ctx.close()
    elapsed = time.monotonic() - started
    summary = {
        "quick": args.quick,
        "elapsed_s": round(elapsed, 1),
        "machine": h.machine_info(),
        "results": results,
        "errors": errors,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    rows = [
        [name, t["name"], t["value"], t["target"], t["met"]]
        for name, r in results.items()
        for t in r.get("targets", [])
    ]
    h.print_table("all targets", ["benchmark", "target", "value", "wanted", "met"], rows)
    for name, err in errors.items():
        print(f"ERROR {name}: {err}")
    print(f"done in {elapsed:.0f}s; results in {args.out}", flush=True)
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
