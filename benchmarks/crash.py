"""3. Crash isolation: Slack and Signal p99 latency while Telegram's channel process (the one
its accounts share) is crashed (``ray.kill``: the process dies) every 2 s, as a ratio to their
p99 without crashes (target <= 1.2), and messages lost on all three channels (target 0).

Both conditions run the same open-loop load on the same tree (default supervision config:
channels one_for_one, intensity 3 in 5 s), in blocks that alternate calm, storm, storm, calm,
... (``order``): the machine's noise drifts over minutes (the calm p99 alone moved 1.4x between
two runs of the same code), and interleaving lets a drift weigh on both sides alike. Each pair
of blocks replays one seeded Poisson schedule, so both conditions see the same arrivals.
Arrivals at a fixed rate would meet a kill every 2 s at the same few offsets all block long,
and a run's p99 then told which offsets they happened to be, not what a crash does to a
message. Telegram messages are injected during the crashes too; a message is lost when no
reply came by the end of the run. Besides the ratio of the pooled p99s (the verdict), the
result gives a bootstrap interval for it (messages resampled within each condition): how far
the verdict could move on the same run's luck.
"""

from __future__ import annotations

import asyncio
import bisect
import gc
import itertools
import sys
import threading
import time
from typing import Any

from benchmarks import harness as h
from benchmarks import openloop
from benchmarks.killer import Killer
from benchmarks.platforms import Recorder

NAME = "crash"
RATE_PER_CHANNEL = 3.0
CRASH_EVERY_S = 2.0
TARGET_RATIO = 1.2
TELEGRAM = "channels/telegram"  # the process of the Telegram accounts
CONVERSATIONS = 30  # 10 per channel
PAIRS = 4  # calm/storm pairs of blocks: per condition 240 s, ~720 messages per channel
BLOCK_S = 60.0  # (the p99 set by ~7 of them, not 3-4 as in one 120 s phase)
QUICK_PAIRS = 1
QUICK_BLOCK_S = 8.0
SETTLE_QUIET_S = 6.0  # Telegram up this long before a block: past its period (5 s), so a
# storm block's crash loop starts from the first backoff step, as every other block's
SEED = 3
SWITCH_INTERVAL_S = 0.001


class Blocks:
    """What the blocks of one condition (calm or storm) gathered, summarised after the last."""

    def __init__(self) -> None:
        self.missed = 0
        self.duration_s = 0.0
        self.duplicates = 0
        self.per_block: list[list[int]] = []  # each block's ids, for its own p99
        self.kills_per_block: list[list[float]] = []  # each block's kills (perf_counter)
        self.stalls: list[tuple[float, float]] = []  # the driver's loops, late: (start, s)

    @property
    def ids(self) -> list[int]:
        return [m for ids in self.per_block for m in ids]

    @property
    def kill_at(self) -> list[float]:
        """Every kill, in time order (the blocks ran one after another): the fakes' clock."""
        return [t for kills in self.kills_per_block for t in kills]


def block(
    ctx: h.Ctx, n: int, pair: int, duration: float, killer: Killer | None, into: Blocks
) -> None:
    """One block: pair ``pair``'s seeded Poisson schedule on fresh conversations, Telegram
    killed every CRASH_EVERY_S by ``killer`` if given; waits for its replies (up to the drain
    time)."""
    p = ctx.platforms
    conversations = h.convs(CONVERSATIONS, start=300_000 + 1_000 * n)
    gap = CONVERSATIONS / (RATE_PER_CHANNEL * len(h.CHANNELS))  # each conversation's mean gap
    events = openloop.schedule(CONVERSATIONS, duration, gap, seed=SEED + pair)
    dup0 = p.rec.duplicates
    gc.collect()  # the driver's own pauses out of both conditions alike: what exists now is
    gc.freeze()  # never scanned again (the recorder's thousands of entries, Ray's objects)
    probing = threading.Event()
    # every loop that stamps a time: the driver's (sends) and each platform's (replies)
    probes = [
        asyncio.run_coroutine_threadsafe(_probe(into.stalls, probing), lt.loop)
        for lt in (p.lt, *p.loops.values())
    ]
    fut = asyncio.run_coroutine_threadsafe(openloop.drive(p, conversations, events), p.lt.loop)
    kill_at: list[float] = []
    try:
        if killer is not None:  # its own process: the kills' Ray work is not the driver's
            got = killer.storm(TELEGRAM, CRASH_EVERY_S, duration)
            kill_at = got["kill_at"]
            into.missed += got["missed"]
        ids = fut.result(duration + openloop.DRAIN_S + 120)["ids"]
    finally:
        probing.set()
        for probe in probes:
            probe.result(5)
    into.per_block.append(ids)
    into.kills_per_block.append(kill_at)
    into.duration_s += duration
    into.duplicates += p.rec.duplicates - dup0
    label = "calm" if killer is None else "storm"
    h.log(
        f"block {n} ({label}, pair {pair}): {len(ids)} sent, "
        + " ".join(
            f"{ch} p99={h.lat_summary(p.rec.latencies(ids, ch))['p99_ms']}" for ch in h.CHANNELS
        )
    )


SINCE_KILL_S = (0.0, 0.1, 1.0, 3.0, 6.0, 12.0)  # lower bounds: the death, the backoff and
# a first restart, later restarts' boots, the longest backoffs


def since_kill(rec: Recorder, storm: Blocks, calm_p99_ms: dict[str, float]) -> list[dict[str, Any]]:
    """Slack's and Signal's storm messages by the time since the last kill of their block
    before they were sent (``before first kill``: a block's first seconds): how many, and how
    many were slower than their channel's calm p99 (calm: 1% of them; each point above that
    here is a moment of the restart cycle that costs)."""
    labels = ["before first kill"] + [
        f"{lo:g}-{hi:g} s" for lo, hi in itertools.pairwise(SINCE_KILL_S)
    ]
    labels.append(f">= {SINCE_KILL_S[-1]:g} s")
    counts = {label: [0, 0] for label in labels}  # n, over the calm p99
    for ids, kills in zip(storm.per_block, storm.kills_per_block, strict=True):
        for m in ids:
            ch = rec.channel_of.get(m)
            lat = rec.latency(m)
            if ch not in calm_p99_ms or lat is None:
                continue
            k = bisect.bisect_right(kills, rec.sent_at[m])
            if k == 0:
                label = labels[0]
            else:
                since = rec.sent_at[m] - kills[k - 1]
                label = labels[bisect.bisect_right(SINCE_KILL_S, since)]
            counts[label][0] += 1
            counts[label][1] += lat * 1000 > calm_p99_ms[ch]
    return [
        {
            "since_kill": label,
            "n": n,
            "over_calm_p99": over,
            "share_over_pct": round(100 * over / n, 2) if n else None,
        }
        for label, (n, over) in counts.items()
    ]


def summary(ctx: h.Ctx, label: str, got: Blocks) -> dict[str, Any]:
    """A condition's figures over all its blocks (after the last block's drain: a Telegram
    message answered late in a later block's time is late, not lost)."""
    rec = ctx.platforms.rec
    ids = got.ids
    kill_at = got.kill_at
    stalls = sorted(got.stalls)
    lost = rec.lost(ids)
    out: dict[str, Any] = {
        "duration_s": got.duration_s,
        "blocks": len(got.per_block),
        "sent": len(ids),
        "answered": len(ids) - len(lost),
        "kills": len(kill_at),
        "kill_skipped_not_running": got.missed,
        "lost": len(lost),
        "duplicate_replies": got.duplicates,
    }
    for ch in h.CHANNELS:
        out[ch] = h.lat_summary(rec.latencies(ids, ch))
        out[ch]["lost"] = len([m for m in lost if rec.channel_of[m] == ch])
        out[ch]["p99_ms_per_block"] = [
            h.lat_summary(rec.latencies(b, ch))["p99_ms"] for b in got.per_block
        ]
    out["fakes_loop_stalls"] = _stall_summary(stalls)
    out["worst"] = worst(rec, ids, kill_at, stalls)
    for ch, rows in out["worst"].items():
        h.log(
            f"{label}: {ch} slowest "
            + ", ".join(
                f"{r['ms']}ms ({_since(r['since_kill_ms'])}, tg {r['telegram_replies_in_flight']}"
                f", fakes stalled {r['fakes_stalled_ms']}ms)"
                for r in rows
            )
        )
    h.log(f"{label}: the driver's and the fakes' loops stalled {out['fakes_loop_stalls']}")
    h.log(
        f"{label}: kills={len(kill_at)} lost={out['lost']} "
        + " ".join(f"{ch} p99={out[ch]['p99_ms']}" for ch in h.CHANNELS)
    )
    return out


STALL_PROBE_S = 0.005  # the probe's sleep; a wake later than STALL_MIN_S after it is a stall
STALL_MIN_S = 0.002


async def _probe(stalls: list[tuple[float, float]], stop: threading.Event) -> None:
    """Until ``stop``: note when this loop itself was late ((start, seconds late) of each wake
    more than STALL_MIN_S late). Run on each loop of the driver that stamps a send or a reply:
    a time stamped late because the measuring process was busy (a platform serving a
    restarted Telegram's burst), not because the tree was slow."""
    while not stop.is_set():
        t = time.perf_counter()
        await asyncio.sleep(STALL_PROBE_S)
        late = time.perf_counter() - t - STALL_PROBE_S
        if late > STALL_MIN_S:
            stalls.append((t, late))  # from several loop threads: list.append is atomic


def _stall_summary(stalls: list[tuple[float, float]]) -> dict[str, Any]:
    lates = [late for _t, late in stalls]
    return {
        "count_over_2ms": len(lates),
        "count_over_5ms": sum(1 for x in lates if x > 0.005),
        "max_ms": round(max(lates, default=0.0) * 1000, 2),
    }


def worst(
    rec: Recorder,
    ids: list[int],
    kill_at: list[float],
    stalls: list[tuple[float, float]] | None = None,
    n: int = 6,
) -> dict[str, Any]:
    """The ``n`` slowest Slack and Signal messages of a phase, each with what happened around
    it: ms since the last Telegram kill before it was sent, how many Telegram replies went
    out while it was in flight (the backlog a restarted Telegram answers at once), and the
    longest stall of a loop of the driver (its own, a platform's) that overlapped it.
    ``kill_at`` and ``stalls`` are in time order."""
    replied = list(rec.replied_at.items())  # a copy: a late reply may still come in
    tg = sorted(t for m, t in replied if rec.channel_of.get(m) == "telegram")
    out: dict[str, Any] = {}
    for ch in ("slack", "signal"):
        rows = []
        for m in ids:
            lat = rec.latency(m) if rec.channel_of.get(m) == ch else None
            if lat is not None:
                rows.append((lat, m))
        rows.sort(reverse=True)
        out[ch] = [_around(rec.sent_at[m], lat, kill_at, tg, stalls or []) for lat, m in rows[:n]]
    return out


def _since(ms: int | None) -> str:
    return "no kill before" if ms is None else f"kill+{ms}ms"


def _around(
    sent: float,
    lat: float,
    kill_at: list[float],
    tg: list[float],
    stalls: list[tuple[float, float]],
) -> dict[str, Any]:
    k = bisect.bisect_right(kill_at, sent)  # kills at or before the send
    stalled = 0.0  # the longest stall whose wake (start + sleep + late) fell after the send
    for t, late in stalls[bisect.bisect_left(stalls, (sent - 1.0, 0.0)) :]:
        if t >= sent + lat:
            break
        if t + STALL_PROBE_S + late > sent:
            stalled = max(stalled, late)
    return {
        "ms": round(lat * 1000, 2),
        "since_kill_ms": round((sent - kill_at[k - 1]) * 1000) if k else None,
        "telegram_replies_in_flight": bisect.bisect_right(tg, sent + lat)
        - bisect.bisect_left(tg, sent - 0.02),
        "fakes_stalled_ms": round(stalled * 1000, 2),
    }


def order(pairs: int) -> list[tuple[int, bool]]:
    """(pair, crash) of each block: calm, storm, storm, calm, calm, storm, ... (ABBA): a drift
    of the machine's speed over the run (other VMs on the host, a warming cache) weighs on
    both conditions alike, where calm-then-storm would hand all of it to one side."""
    out: list[tuple[int, bool]] = []
    for pair in range(pairs):
        first_crash = pair % 2 == 1
        out += [(pair, first_crash), (pair, not first_crash)]
    return out


def ray(ctx: h.Ctx) -> None:
    duration = QUICK_BLOCK_S if ctx.quick else BLOCK_S
    pairs = QUICK_PAIRS if ctx.quick else PAIRS
    d = ctx.bucket(NAME)
    calm, storm = Blocks(), Blocks()
    # the driver's threads (its loop, each fake platform's, the kills) take turns at the GIL
    # each ms, not each 5 ms: a platform busy with a burst delays another's reply stamp less
    interval = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    settles: list[float | None] = []
    killer = Killer(ctx.ray_tree().ns)
    try:
        for n, (pair, crash) in enumerate(order(pairs)):
            # each block starts on a calm tree: Telegram up for a whole period (the first
            # one also after the killer's own start, which connects it to Ray)
            settles.append(settle(ctx.ray_tree()))
            block(ctx, n, pair, duration, killer if crash else None, storm if crash else calm)
    finally:
        sys.setswitchinterval(interval)
        killer.close()
    d["settle_between_blocks_s"] = settles
    d["settle_s"] = settle(ctx.ray_tree())  # the benchmarks after this one: a calm tree
    d["no_crash"] = summary(ctx, "no crashes", calm)
    d["crash"] = summary(ctx, f"telegram crashed every {CRASH_EVERY_S:.0f}s", storm)
    rec = ctx.platforms.rec
    calm_p99 = {ch: d["no_crash"][ch]["p99_ms"] for ch in ("slack", "signal")}
    d["since_kill"] = since_kill(rec, storm, {k: v for k, v in calm_p99.items() if v})
    for row in d["since_kill"]:
        h.log(
            f"storm, since kill {row['since_kill']}: "
            f"{row['over_calm_p99']} of {row['n']} over the calm p99"
        )
    d["ratio_interval"] = {
        ch: h.ratio_interval(
            rec.latencies(storm.ids, ch), rec.latencies(calm.ids, ch), q=99, seed=SEED
        )
        for ch in h.CHANNELS
    }
    try:
        st = ctx.ray_tree().status()
        d["tree_after"] = {
            c["id"]: {k: c.get(k) for k in ("state", "restarts")} for c in st.get("children", [])
        }
    except Exception as exc:  # report only
        d["tree_after"] = {"error": type(exc).__name__}


def settle(tree: h.RayTree, timeout: float = 120.0) -> float | None:
    """Until Telegram has run again for SETTLE_QUIET_S (after a storm it may be in backoff,
    then importing aiogram for seconds): the next block and the benchmarks after this one
    measure a calm tree, not its recovery."""
    from actors.registry import actor_name
    from moltbot.cli.render import flatten

    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if flatten(tree.status()).get(actor_name(TELEGRAM), {}).get("state") == "running":
            time.sleep(SETTLE_QUIET_S)
            return round(time.monotonic() - t0, 1)
        time.sleep(0.5)
    h.log(f"telegram still not running {timeout:.0f}s after the storm")
    return None


def report(ctx: h.Ctx) -> dict[str, Any]:
    d = ctx.bucket(NAME)
    base, cr = d.get("no_crash", {}), d.get("crash", {})
    ratios = {
        ch: h.ratio(cr.get(ch, {}).get("p99_ms"), base.get(ch, {}).get("p99_ms"))
        for ch in h.CHANNELS
    }
    intervals = d.get("ratio_interval", {})
    rows = [
        [
            ch,
            base.get(ch, {}).get("p50_ms"),
            base.get(ch, {}).get("p99_ms"),
            cr.get(ch, {}).get("p50_ms"),
            cr.get(ch, {}).get("p99_ms"),
            ratios[ch],
            _interval(intervals.get(ch)),
            cr.get(ch, {}).get("lost"),
        ]
        for ch in h.CHANNELS
    ]
    h.print_table(
        f"crash isolation: telegram killed every {CRASH_EVERY_S:.0f}s "
        f"({cr.get('kills')} kills in {cr.get('blocks')} blocks, {cr.get('duration_s')}s; "
        f"interleaved with {base.get('blocks')} calm blocks)",
        [
            "channel",
            "calm p50",
            "calm p99",
            "crash p50",
            "crash p99",
            "p99 ratio",
            "90% CI",
            "lost",
        ],
        rows,
    )
    lost_total = (cr.get("lost") or 0) + (base.get("lost") or 0) if cr else None
    targets = [
        h.target("slack p99 ratio crashes/calm", ratios["slack"], "<=", TARGET_RATIO),
        h.target("signal p99 ratio crashes/calm", ratios["signal"], "<=", TARGET_RATIO),
        h.target("messages lost (all channels)", lost_total, "==", 0),
    ]
    h.print_targets(targets)
    path = h.write_result(
        NAME,
        quick=ctx.quick,
        figures=cr,
        baseline=base,
        ratios={**ratios, "interval_90": intervals},
        targets=targets,
        out_dir=ctx.out_dir,
        notes=[
            f"open loop, Poisson (seed {SEED} + pair, each pair's calm and storm block alike): "
            f"{RATE_PER_CHANNEL}/s per channel on {CONVERSATIONS} conversations",
            "blocks in the order calm, storm, storm, calm, ... (ABBA), each on a tree whose "
            f"Telegram had run {SETTLE_QUIET_S:.0f} s",
            "crash = ray.kill of the telegram channel process (process death); "
            "its supervisor restarts it; telegram messages keep coming",
            "90% CI: bootstrap of the p99 ratio, messages resampled within each condition",
            f"tree after: {d.get('tree_after')}",
        ],
    )
    return {"path": str(path), "targets": targets}


def _interval(iv: list[float] | None) -> str | None:
    return None if not iv else f"{iv[0]:.2f}-{iv[1]:.2f}"
