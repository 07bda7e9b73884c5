"""The moment of a death: Slack and Signal messages sent in the first 50 ms after Telegram's
process is killed, against the same messages at a calm moment 3 s before, with Ray's own
threads at nice 10 (``moltbot/thread_nice.py``, the default) and with them left at 0
(``MOLTBOT_RAY_THREADS_NICE=0``).

When a worker process dies, every process of the tree hears of it and cleans up in Ray's C++
threads, and the dying one tears itself down. The crash benchmark's storm blocks mix that moment
with the restarts that follow; here it is alone. The kill comes from the killer process
(``benchmarks/killer.py``, as in the crash benchmark: the driver, whose fakes stamp the replies,
does none of a kill's Ray work) ``AHEAD_S`` after it is asked; meanwhile the driver sends a
Slack and a Signal message in turn every ``GAP_S`` from ``LEAD_S`` before that moment (a fresh
conversation each, so none waits for another's turn), and each message's offset from the kill is
measured afterwards (the killer stamps the kill on the same clock). The same burst runs at a
calm moment before each kill, against the moment a kill would have come. The figure is how much
longer the messages sent in the first ``EARLY_MS`` after the kill took than those sent then at
the calm moment: the medians' difference in ms (the means' beside it); the messages sent before
the kill are a control that should show nothing.

The two settings run on trees of their own, in blocks in the order off, on, on, off
(``order``), so a drift of the machine weighs on both alike; each block starts a fresh tree with
the setting in its environment and starts its kills once the tree has run past the root's first
metrics read (a minute), with both agents awake: the steady state, not a tree's first minute.
"""

from __future__ import annotations

import asyncio
import statistics
import threading
import time
from typing import Any

from actors.metrics_sweep import SWEEP_EVERY_S
from benchmarks import harness as h
from benchmarks.killer import Killer
from moltbot.thread_nice import ENV

NAME = "afterkill"
TELEGRAM = "channels/telegram"
AHEAD_S = 0.3  # the killer kills this long after it is asked
GAP_S = 0.005  # a message every 5 ms, Slack and Signal in turn ...
LEAD_S = 0.02  # ... from this long before the kill ...
MESSAGES = 28  # ... 28 of them: to 115 ms after it
EARLY_MS = 50.0  # the figure: messages sent in the first 50 ms after the kill
WINDOWS_MS = ((-LEAD_S * 1000, 0.0), (0.0, 10.0), (10.0, 25.0), (25.0, 50.0), (50.0, 120.0))
CALM_BEFORE_S = 3.0  # the calm burst, this long before its kill
SETTLE_S = 3.0  # Telegram up this long before a calm burst
KILLS = 6  # per block
QUICK_KILLS = 2
BLOCKS = 4  # off, on, on, off
QUICK_BLOCKS = 2
SETTINGS = {"off": {ENV: "0"}, "on": {}}
START = 600_000  # conversation numbers: apart from the other benchmarks'

Row = tuple[float, float | None]  # (ms from the kill when sent, latency ms or None: unanswered)


def order(blocks: int) -> list[str]:
    """The settings of ``blocks`` blocks: off, on, on, off, off, on, ... (ABBA)."""
    return [("off", "on")[(i + (i // 2)) % 2] for i in range(blocks)]


def within(rows: list[Row], lo: float, hi: float) -> list[float]:
    """The answered latencies of the messages sent from ``lo`` to before ``hi`` ms after the
    kill."""
    return [lat for at, lat in rows if lo <= at < hi and lat is not None]


def added_ms(
    calm: list[Row], kill: list[Row], lo: float, hi: float, how: str = "median"
) -> float | None:
    """The ``how`` (median or mean) latency of the messages sent from ``lo`` to ``hi`` ms
    after the kill less that of those sent then at the calm moment; None when a side has none
    answered. Unanswered ones are left out (and counted apart)."""
    a, b = within(kill, lo, hi), within(calm, lo, hi)
    if not a or not b:
        return None
    f = statistics.median if how == "median" else statistics.fmean
    return round(f(a) - f(b), 2)


def by_window(calm: list[Row], kill: list[Row]) -> list[list[Any]]:
    """One row per window of ``WINDOWS_MS``: its bounds, then the messages sent then and their
    median latency, calm and after the kill."""
    rows = []
    for lo, hi in WINDOWS_MS:
        c, k = within(calm, lo, hi), within(kill, lo, hi)
        rows.append(
            [
                f"{lo:.0f} to {hi:.0f}",
                len(c),
                round(statistics.median(c), 2) if c else None,
                len(k),
                round(statistics.median(k), 2) if k else None,
            ]
        )
    return rows


async def _burst(p: h.Platforms, first: int, start: float) -> list[int]:
    """A Slack and a Signal message in turn every GAP_S from ``start`` (perf_counter)."""
    ids = []
    for i in range(MESSAGES):
        at = start + i * GAP_S
        wait = at - time.perf_counter()
        if wait > 0.002:
            await asyncio.sleep(wait - 0.001)
        while time.perf_counter() < at:  # the last ms spun: the messages are ms apart
            pass
        ids.append(p.inject(h.Conv(("slack", "signal")[i % 2], first + i)))
    return ids


def _rows(p: h.Platforms, ids: list[int], kill_at: float) -> list[Row]:
    out: list[Row] = []
    for m in ids:
        lat = p.rec.latency(m)
        at = (p.rec.sent_at[m] - kill_at) * 1000
        out.append((round(at, 3), None if lat is None else round(lat * 1000, 3)))
    return out


def _running_again(tree: h.RayTree, pid: int | None, timeout: float = 60.0) -> int:
    """Until Telegram's process is up in a process other than ``pid``: its pid."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            new = tree.pid(TELEGRAM)
        except Exception:  # not there yet
            new = None
        if new is not None and new != pid:
            return new
        time.sleep(0.1)
    raise TimeoutError("telegram did not come back")


class _Setting:
    """What the blocks of one setting gathered."""

    def __init__(self) -> None:
        self.calm: list[Row] = []
        self.kill: list[Row] = []
        self.kills = 0


def _one_kill(p: h.Platforms, killer: Killer, first: int, into: _Setting) -> None:
    """The calm burst, then CALM_BEFORE_S later the kill and its burst."""
    nominal = time.perf_counter() + AHEAD_S  # the calm burst's would-be kill
    calm = p.run(_burst(p, first, nominal - LEAD_S), timeout=30)
    time.sleep(CALM_BEFORE_S)
    got: dict[str, Any] = {}
    asked = time.perf_counter()
    storm = threading.Thread(target=lambda: got.update(killer.storm(TELEGRAM, AHEAD_S, AHEAD_S)))
    storm.start()
    killed = p.run(_burst(p, first + MESSAGES, asked + AHEAD_S - LEAD_S), timeout=30)
    storm.join(30)
    p.run(p.answered(calm + killed, 10.0, poll_s=0.02), timeout=30)
    into.calm += _rows(p, calm, nominal)
    if got.get("kill_at"):  # the killer found it (else: still restarting; nothing counted)
        into.kill += _rows(p, killed, got["kill_at"][0])
        into.kills += 1


def block(ctx: h.Ctx, setting: str, n: int, kills: int, into: _Setting) -> None:
    """A fresh tree with ``setting``, warmed, past its first minute; ``kills`` kills."""
    p = ctx.platforms
    started = time.monotonic()
    tree = h.RayTree(h.bench_config(p), ctx.home(f"afterkill-{n}"), env=SETTINGS[setting])
    tree.start()
    killer = Killer(tree.ns)
    try:
        # both agents awake (12 sessions: all on one of the two has odds of 1 in 2 048)
        p.run(p.closed_loop(h.convs(12, start=START + 90_000 + 100 * n), 2), timeout=180)
        time.sleep(max(0.0, started + SWEEP_EVERY_S + 5 - time.monotonic()))
        pid = tree.pid(TELEGRAM)
        # the killer's first kill in a tree comes ~0.15 s late (the next ones within a few
        # ms), past most of its burst: made and not counted
        for k in range(kills + 1):
            time.sleep(SETTLE_S)
            _one_kill(p, killer, START + 1_000 * n + 2 * MESSAGES * k, into if k else _Setting())
            pid = _running_again(tree, pid)
    finally:
        killer.close()
        tree.stop()
    h.log(
        f"afterkill block {n} ({setting}): added "
        f"{added_ms(into.calm, into.kill, 0.0, EARLY_MS)} ms so far over {into.kills} kills"
    )


def ray(ctx: h.Ctx) -> None:
    """Its own trees (the shared one stopped first: one tree on the fakes at a time)."""
    ctx.stop_tree()
    kills = QUICK_KILLS if ctx.quick else KILLS
    got = {s: _Setting() for s in SETTINGS}
    for n, setting in enumerate(order(QUICK_BLOCKS if ctx.quick else BLOCKS)):
        block(ctx, setting, n, kills, got[setting])
    d = ctx.bucket(NAME)
    for s, g in got.items():
        d[s] = {
            "kills": g.kills,
            "added_ms": added_ms(g.calm, g.kill, 0.0, EARLY_MS),
            "added_mean_ms": added_ms(g.calm, g.kill, 0.0, EARLY_MS, "mean"),
            "added_before_kill_ms": added_ms(g.calm, g.kill, -LEAD_S * 1000, 0.0),
            "by_window": by_window(g.calm, g.kill),
            "unanswered": sum(lat is None for _, lat in g.calm + g.kill),
            "calm": g.calm,
            "kill": g.kill,
        }


def report(ctx: h.Ctx) -> dict[str, Any]:
    d = ctx.bucket(NAME)
    on, off = d.get("on", {}), d.get("off", {})
    for label, s in (("at 0 (off)", off), ("at 10 (on, the default)", on)):
        h.print_table(
            f"after a kill, Ray's threads {label}: Slack and Signal by when they were sent "
            f"(ms from the kill; {s.get('kills')} kills)",
            ["sent", "calm n", "calm median ms", "killed n", "killed median ms"],
            s.get("by_window", []),
        )
    h.print_table(
        f"added by the death to the messages of its first {EARLY_MS:.0f} ms (ms)",
        ["Ray's threads", "medians", "means", "before the kill (control)", "unanswered"],
        [
            [
                label,
                s.get("added_ms"),
                s.get("added_mean_ms"),
                s.get("added_before_kill_ms"),
                s.get("unanswered"),
            ]
            for label, s in (("at 0", off), ("at 10", on))
        ],
    )
    unanswered = (on.get("unanswered") or 0) + (off.get("unanswered") or 0) if on else None
    targets = [h.target("messages unanswered (both settings)", unanswered, "==", 0)]
    h.print_targets(targets)
    path = h.write_result(
        NAME,
        quick=ctx.quick,
        figures=on,
        baseline=off,
        ratios={
            "added_ms_on": on.get("added_ms"),
            "added_ms_off": off.get("added_ms"),
            "added_mean_ms_on": on.get("added_mean_ms"),
            "added_mean_ms_off": off.get("added_mean_ms"),
        },
        targets=targets,
        out_dir=ctx.out_dir,
        notes=[
            "figures: Ray's threads at nice 10 (the default); baseline: at 0 "
            f"({ENV}=0); blocks off, on, on, off, each a fresh tree past its first minute",
            f"each kill from the killer process; a Slack or Signal message every {GAP_S * 1000:.0f}"
            f" ms from {LEAD_S * 1000:.0f} ms before it, and the same at a calm moment "
            f"{CALM_BEFORE_S:.0f} s before; calm/kill rows: (ms from the kill when sent, "
            "latency ms)",
        ],
    )
    return {"path": str(path), "targets": targets}
