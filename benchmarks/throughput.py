"""2. Throughput: messages per second sustained across Telegram, Slack and Signal until the
latency p99 doubles.

Open loop: messages are injected at a fixed offered rate (round-robin over fresh conversations
on the three channels) for a fixed time, then the replies are awaited. The rate doubles step
by step; the reference p99 is the one at the lowest rate. The sustained throughput is the
highest offered rate whose p99 stayed within 2x the reference with every message answered.
Baseline: the same ramp against the no-Ray pipeline. Memory under load is sampled here too.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from benchmarks import harness as h

NAME = "throughput"
RATES = (5, 10, 20, 40, 80, 160, 320)
QUICK_RATES = (5, 20, 80)
CONVS_PER_STEP = 60


def ramp(ctx: h.Ctx, system: str, sampler: Any = None) -> dict[str, Any]:
    p = ctx.platforms
    step_s = 2.5 if ctx.quick else 6.0
    steps: list[dict[str, Any]] = []
    ref_p99 = None
    sustained = 0.0
    sustained_achieved = 0.0
    for i, rate in enumerate(QUICK_RATES if ctx.quick else RATES):
        conversations = h.convs(CONVS_PER_STEP, start=200_000 + i * 1000)
        res = p.run(p.open_loop(rate, step_s, conversations, drain_s=15.0), timeout=300)
        s = h.lat_summary(res["latencies"])
        step = {
            "offered_rate": rate,
            "achieved_rate": round(res["achieved_rate"], 1),
            "sent": res["sent"],
            "answered": res["answered"],
            **s,
        }
        if ref_p99 is None:
            ref_p99 = s["p99_ms"]
        ok = (
            res["answered"] == res["sent"]
            and s["p99_ms"] is not None
            and ref_p99 is not None
            and s["p99_ms"] <= 2 * ref_p99
        )
        step["within_2x_p99"] = ok
        steps.append(step)
        h.log(
            f"{system} @ {rate}/s: achieved {step['achieved_rate']}/s "
            f"answered {res['answered']}/{res['sent']} p50={s['p50_ms']} p99={s['p99_ms']} ms"
        )
        if not ok:
            break
        sustained, sustained_achieved = float(rate), step["achieved_rate"]
    return {
        "steps": steps,
        "reference_p99_ms": ref_p99,
        "sustained_rate": sustained,
        "sustained_achieved_rate": sustained_achieved,
    }


def baseline(ctx: h.Ctx) -> None:
    ctx.pipeline()
    ctx.bucket(NAME)["baseline"] = ramp(ctx, "baseline")


class UssSampler:
    """Samples the tree's USS every few seconds in a thread; keeps the maximum."""

    def __init__(self, every_s: float = 3.0) -> None:
        self.every_s = every_s
        self.max_total = 0
        self.by_kind: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="uss")

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            total, kinds = h.tree_uss()
            if total > self.max_total:
                self.max_total = total
                self.by_kind = {k: h.mb(v) for k, v in kinds.items()}

    def __enter__(self) -> UssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(30)


def ray(ctx: h.Ctx) -> None:
    ctx.ray_tree()
    with UssSampler() as sampler:
        ctx.bucket(NAME)["ray"] = ramp(ctx, "ray")
    ctx.memory["under_load"] = {
        "uss_mb": h.mb(sampler.max_total),
        "by_kind_mb": sampler.by_kind,
        "how": "max of samples every 3 s during the throughput ramp",
    }
    time.sleep(1)


def report(ctx: h.Ctx) -> dict[str, Any]:
    data = ctx.bucket(NAME)
    base, ray_ = data.get("baseline", {}), data.get("ray", {})
    rows = []
    for system, d in (("baseline", base), ("ray", ray_)):
        for st in d.get("steps", []):
            rows.append(
                [
                    system,
                    st["offered_rate"],
                    st["achieved_rate"],
                    f"{st['answered']}/{st['sent']}",
                    st["p50_ms"],
                    st["p99_ms"],
                    st["within_2x_p99"],
                ]
            )
    h.print_table(
        "throughput: open-loop ramp over 3 channels",
        ["system", "offered/s", "achieved/s", "answered", "p50 ms", "p99 ms", "p99<=2x ref"],
        rows,
    )
    ratios = {"sustained_rate": h.ratio(ray_.get("sustained_rate"), base.get("sustained_rate"))}
    h.print_table(
        "sustained throughput (msg/s, p99 within 2x of the lowest-rate p99)",
        ["system", "msg/s", "ref p99 ms"],
        [
            ["baseline", base.get("sustained_rate"), base.get("reference_p99_ms")],
            ["ray", ray_.get("sustained_rate"), ray_.get("reference_p99_ms")],
            ["ratio ray/baseline", ratios["sustained_rate"], None],
        ],
    )
    path = h.write_result(
        NAME,
        quick=ctx.quick,
        figures=ray_,
        baseline=base,
        ratios=ratios,
        targets=[],
        out_dir=ctx.out_dir,
        notes=[
            "no numeric target in the issue: reported as figures and ratio",
            "offered rate doubles per step; the ramp stops at the first step "
            "whose p99 exceeds 2x the lowest-rate p99 or that loses replies",
            f"state on {h.state_medium()}",
        ],
    )
    series = {}
    for label, d in (("ray", ray_), ("baseline (no Ray)", base)):
        if d.get("steps"):
            series[label] = (
                [float(s["offered_rate"]) for s in d["steps"]],
                [s["p99_ms"] or 0.0 for s in d["steps"]],
            )
    if series:
        h.plot(
            ctx.out_dir / "throughput.png",
            "p99 latency vs offered load (3 channels)",
            "offered msg/s",
            "p99 ms",
            series,
            logy=True,
        )
    return {"path": str(path), "targets": []}
