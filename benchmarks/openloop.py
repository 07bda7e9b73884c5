"""8. Realistic load (issue 21 item 4): ``CONVERSATIONS`` conversations over Telegram, Slack and
Signal, each sending a message every ``MEAN_GAP_S`` seconds on average (open loop: Poisson
arrivals, exponential gaps from a seeded generator, the same schedule on both sides, whether
or not the previous reply came), the model answering after ``FIRST_TOKEN_S`` to its first
token. Latency = inbound platform message → reply sent, as in the routing benchmark.

The model: the fake Anthropic API (``tests/fakes/anthropic_api``) on the fakes' loop, each
request held ``FIRST_TOKEN_S`` before it is answered (then the echo streams at once); both
systems use the ``anthropic`` provider against it. Ray: the full tree on the shared fakes;
baseline: ``benchmarks.pipeline`` on the same fakes. Target: added p99 (Ray p99 - baseline
p99) under 10 ms. ``DURATION_S`` of arrivals per side (``QUICK_S`` with ``--quick``), then up
to ``DRAIN_S`` for the last replies; a message with no reply by then is lost.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Sequence
from typing import Any

from aiohttp import web

from benchmarks import harness as h
from tests.fakes.anthropic_api import FakeAnthropicAPI

NAME = "openloop"
CONVERSATIONS = 100
MEAN_GAP_S = 10.0
FIRST_TOKEN_S = 1.0
DURATION_S = 75.0
QUICK_S = 20.0
DRAIN_S = 30.0
SEED = 21
TARGET_ADDED_P99_MS = 10.0
ALONE_S = 2 * FIRST_TOKEN_S + 1.0
START = 600_000  # user ids of these conversations (apart from the other benchmarks')


class SlowAnthropic(FakeAnthropicAPI):
    """The fake API, each request held ``first_token_s`` before its answer starts."""

    first_token_s: float = FIRST_TOKEN_S

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        await asyncio.sleep(self.first_token_s)
        return await super()._handle(request)


def schedule(
    conversations: int, duration_s: float, mean_gap_s: float, seed: int = SEED
) -> list[tuple[float, int]]:
    """(offset s, conversation index) of every message, in time order: per conversation a
    Poisson process of rate 1/``mean_gap_s`` over ``duration_s``."""
    rng = random.Random(seed)
    out = []
    for c in range(conversations):
        t = rng.expovariate(1.0 / mean_gap_s)
        while t < duration_s:
            out.append((t, c))
            t += rng.expovariate(1.0 / mean_gap_s)
    return sorted(out)


async def drive(
    p: h.Platforms, convs: Sequence[h.Conv], events: Sequence[tuple[float, int]]
) -> dict[str, Any]:
    """Inject each message at its time, then wait up to DRAIN_S for the replies."""
    loop = asyncio.get_running_loop()
    ids: list[int] = []
    late: list[float] = []
    t0 = loop.time()
    for offset, c in events:
        delay = t0 + offset - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        late.append(max(0.0, -delay))
        ids.append(p.inject(convs[c]))
    await p.answered(ids, DRAIN_S)
    return {"ids": ids, "inject_late_max_ms": round(max(late, default=0.0) * 1000, 2)}


def measure(ctx: h.Ctx, system: str) -> dict[str, Any]:
    p = ctx.platforms
    h.log(f"{system}: warm-up")
    p.run(p.closed_loop(h.convs(6, start=START + 90_000), 1), timeout=180)
    duration = QUICK_S if ctx.quick else DURATION_S
    events = schedule(CONVERSATIONS, duration, MEAN_GAP_S)
    convs = h.convs(CONVERSATIONS, start=START)
    h.log(f"{system}: {len(events)} messages over {duration:.0f} s, {CONVERSATIONS} conversations")
    dup0 = p.rec.duplicates
    cpu0 = h.cpu_snapshot()
    got = p.run(drive(p, convs, events), timeout=duration + DRAIN_S + 120)
    ids = got["ids"]
    lats = p.rec.latencies(ids)
    s = h.lat_summary(lats)
    # messages whose conversation had sent nothing in the ALONE_S before (by the schedule):
    # no turn of theirs still running, so no queueing behind it
    last: dict[int, float] = {}
    alone = []
    for mid, (offset, c) in zip(ids, events, strict=True):
        if offset - last.get(c, -ALONE_S) >= ALONE_S:
            alone.append(mid)
        last[c] = offset
    s["alone"] = h.lat_summary(p.rec.latencies(alone))
    # each message's latency in schedule order (None: lost), to pair the two sides
    ctx.bucket(NAME)[f"{system}_in_order"] = [p.rec.latency(m) for m in ids]
    s["min_ms"] = h._r(min(lats) * 1000 if lats else float("nan"))
    s["cpu_ms_per_msg"] = h.cpu_per_message(cpu0, h.cpu_snapshot(), len(lats))
    s.update(
        sent=len(ids),
        lost=len(p.rec.lost(ids)),
        duplicates=p.rec.duplicates - dup0,
        duration_s=duration,
        inject_late_max_ms=got["inject_late_max_ms"],
    )
    if lats and min(lats) < FIRST_TOKEN_S:
        raise RuntimeError(f"{system}: a reply came before the model's {FIRST_TOKEN_S} s")
    h.log(
        f"{system}: sent={s['sent']} lost={s['lost']} p50={s['p50_ms']} ms "
        f"p99={s['p99_ms']} ms min={s['min_ms']} ms"
    )
    return s


def _start_api(ctx: h.Ctx) -> SlowAnthropic:
    api = SlowAnthropic(api_key=h.ANTHROPIC_KEY)
    ctx.platforms.run(api.start())
    return api


def baseline(ctx: h.Ctx) -> None:
    ctx.stop_pipeline()  # its own: provider anthropic against the slow fake
    api = _start_api(ctx)
    try:
        cfg = h.bench_config(ctx.platforms, anthropic_url=api.base_url)
        with h.Pipeline(cfg, ctx.home("open-base")):
            ctx.bucket(NAME)["baseline"] = measure(ctx, "baseline")
    finally:
        ctx.platforms.run(api.stop())


def ray(ctx: h.Ctx) -> None:
    ctx.stop_tree()  # its own full tree: provider anthropic against the slow fake
    h.ray_init()
    api = _start_api(ctx)
    try:
        cfg = h.bench_config(ctx.platforms, anthropic_url=api.base_url)
        with h.RayTree(cfg, ctx.home("open-ray")) as tree:
            h.log(f"open-loop tree ready in {tree.ready_s:.1f}s")
            ctx.bucket(NAME)["ray"] = measure(ctx, "ray")
    finally:
        ctx.platforms.run(api.stop())


def report(ctx: h.Ctx) -> dict[str, Any]:
    d = ctx.bucket(NAME)
    base, ray_ = d.get("baseline", {}), d.get("ray", {})

    def diff(key: str) -> float | None:
        a, b = ray_.get(key), base.get(key)
        return None if a is None or b is None else round(a - b, 2)

    added = {q: diff(f"{q}_ms") for q in ("p50", "p90", "p99")}
    b_alone, r_alone = base.get("alone", {}), ray_.get("alone", {})
    added_alone = {
        q: None
        if r_alone.get(f"{q}_ms") is None or b_alone.get(f"{q}_ms") is None
        else round(r_alone[f"{q}_ms"] - b_alone[f"{q}_ms"], 2)
        for q in ("p50", "p90", "p99")
    }
    rows = [
        [
            side,
            x.get("sent"),
            x.get("n"),
            x.get("lost"),
            x.get("duplicates"),
            x.get("min_ms"),
            x.get("p50_ms"),
            x.get("p99_ms"),
            x.get("max_ms"),
            x.get("cpu_ms_per_msg", {}).get("total"),
        ]
        for side, x in (("baseline", base), ("ray", ray_))
        if x
    ]
    h.print_table(
        f"open loop: {CONVERSATIONS} conversations, a message every {MEAN_GAP_S:g} s each "
        f"(Poisson), model {FIRST_TOKEN_S:g} s to first token (ms)",
        ["system", "sent", "answered", "lost", "dup", "min", "p50", "p99", "max", "cpu/msg"],
        rows,
    )
    pairs = [
        (r - b) * 1000
        for r, b in zip(d.get("ray_in_order", []), d.get("baseline_in_order", []), strict=False)
        if r is not None and b is not None
    ]
    paired = {
        "n": len(pairs),
        **{f"{q}_ms": h._r(h.percentile(pairs, q)) for q in (50, 90, 99)},
    }
    h.print_table(
        "added by Ray (ms): p(ray) - p(baseline); 'alone': only messages whose conversation "
        f"sent nothing in the {ALONE_S:g} s before (no queueing behind its own previous "
        "turn); 'paired': percentiles of each message's ray - baseline (same schedule)",
        ["messages", "n base/ray", "p50", "p90", "p99"],
        [
            ["all", f"{base.get('n')}/{ray_.get('n')}", *added.values()],
            ["alone", f"{b_alone.get('n')}/{r_alone.get('n')}", *added_alone.values()],
            ["paired", paired["n"], paired["50_ms"], paired["90_ms"], paired["99_ms"]],
        ],
    )
    lost = None if not ray_ else ray_.get("lost", 0) + ray_.get("duplicates", 0)
    targets = [
        h.target("open loop: added p99 (ms)", added["p99"], "<", TARGET_ADDED_P99_MS, " ms"),
        h.target("open loop: Ray messages lost or answered twice", lost, "==", 0),
    ]
    h.print_targets(targets)
    path = h.write_result(
        NAME,
        quick=ctx.quick,
        figures={
            "ray": ray_,
            "added_ms": added,
            "added_alone_ms": added_alone,
            "paired_added_ms": paired,
        },
        baseline=base,
        ratios={q: h.ratio(ray_.get(f"{q}_ms"), base.get(f"{q}_ms")) for q in ("p50", "p99")},
        targets=targets,
        out_dir=ctx.out_dir,
        notes=[
            f"{CONVERSATIONS} conversations round-robin over telegram/slack/signal; each a "
            f"Poisson process of mean gap {MEAN_GAP_S:g} s (seed {SEED}, the same schedule "
            f"on both sides) for duration_s; replies awaited up to {DRAIN_S:g} s more",
            f"model: the fake Anthropic API holding each request {FIRST_TOKEN_S:g} s, "
            "provider anthropic on both sides; a reply faster than that fails the run",
            "latency: inbound platform message → reply sent at the fake platform; "
            "inject_late_max_ms: how late the load generator injected its worst message",
        ],
    )
    return {"path": str(path), "targets": targets}


def run(
    quick: bool = False, *, systems: Sequence[str] = ("baseline", "ray"), out_dir: Any = None
) -> dict[str, Any]:
    """Standalone (the smoke test uses ``systems=("baseline",)``: no Ray is started)."""
    ctx = h.Ctx(quick, out_dir)
    try:
        if "baseline" in systems:
            baseline(ctx)
        if "ray" in systems:
            ray(ctx)
        return report(ctx)
    finally:
        ctx.close()
