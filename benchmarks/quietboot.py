"""A restart's boot beside the siblings at work: Slack and Signal latency while fresh processes
do what a restarted Telegram process imports (``ray`` and the actor base, as
``actors/boot/sitecustomize.py`` does, then the Telegram channel's modules, as
``actors.startup.preload`` does), one after another, against the same load with no boot.

The imports run on a quiet thread (``moltbot/quiet_imports.py``) at the bottom: nice 19 and
Linux's idle policy (the default), or nice 19 alone (``MOLTBOT_QUIET_IDLE=0``). The kernel
stops an idle-policy thread the moment a normal one wakes on its core and counts a core that
runs only such threads as free when it places a waking one; nice 19 promises neither. This
measures what that is worth on messages: the crash benchmark's open-loop load (its ``block``)
on the shared tree, in the order none, nice, idle, idle, nice, none, ... so a drift of the
machine weighs on all three alike, and each round's three blocks replay the same seeded
arrivals. The boots' own CPU and wall time are reported too: the idle policy must not make a
restart much slower on a machine with a core to spare.
"""

from __future__ import annotations

import os
import runpy
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

from benchmarks import crash
from benchmarks import harness as h
from benchmarks.common import ROOT_DIR
from moltbot.quiet_imports import IDLE_ENV

NAME = "quietboot"
SETTINGS = {"none": None, "nice": {IDLE_ENV: "0"}, "idle": {IDLE_ENV: "1"}}
BLOCK_S = 30.0
QUICK_BLOCK_S = 5.0
ROUNDS = 2  # none, nice, idle, idle, nice, none: 4 blocks of each setting
QUICK_ROUNDS = 1
BOOT_EVERY_S = 1.0  # the next boot starts this long after the last one ended
CHANNELS = ("slack", "signal")
FIGURES = ("p50_ms", "p90_ms", "p99_ms", "mean_ms")
FIRST_BLOCK = 150  # crash.block's conversations from 450 000: apart from every benchmark's
WARM_START = 720_000  # the warm-up's conversations: apart from every benchmark's
BOOT = (
    "import sys\n"
    "from moltbot.quiet_imports import import_quietly\n"
    "err = import_quietly(sys.argv[1:])\n"
    "sys.exit(1 if err else 0)\n"
)


def order(rounds: int) -> list[str]:
    """none, nice, idle, idle, nice, none, ... (``rounds`` times there and back)."""
    there = list(SETTINGS)
    return [s for _ in range(rounds) for s in (*there, *reversed(there))]


def boot_modules() -> list[str]:
    """What a restarted Telegram process imports on its quiet threads, in order."""
    from actors.channel import ChannelCore

    # run, not imported: a ``sitecustomize`` of this Python's own may be in sys.modules (the
    # file does nothing else outside a Ray worker)
    boot = runpy.run_path(str(ROOT_DIR / "actors" / "boot" / "sitecustomize.py"))
    return [*boot["BOOT_MODULES"], *ChannelCore.modules_for({"channel": "telegram"})]


def boot_once(modules: Sequence[str], env: dict[str, str]) -> tuple[float, float]:
    """One fresh process that imports ``modules`` quietly: its CPU and wall seconds."""
    started = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-c", BOOT, *modules],
        cwd=ROOT_DIR,
        env={**os.environ, "PYTHONPATH": str(ROOT_DIR), **env},
    )
    _pid, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"a boot failed (exit {proc.returncode})")
    return usage.ru_utime + usage.ru_stime, time.monotonic() - started


class Booting:
    """Boots back to back on a thread of the driver until ``stop``."""

    def __init__(self, modules: Sequence[str], env: dict[str, str]) -> None:
        self.done: list[tuple[float, float]] = []
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(modules, env), daemon=True)
        self._thread.start()

    def _run(self, modules: Sequence[str], env: dict[str, str]) -> None:
        try:
            while not self._stop.is_set():
                self.done.append(boot_once(modules, env))
                self._stop.wait(BOOT_EVERY_S)
        except BaseException as exc:  # reported by stop()
            self.error = exc

    def stop(self) -> list[tuple[float, float]]:
        self._stop.set()
        self._thread.join(120)
        if self.error is not None:
            raise self.error
        return self.done


def added(lat: dict[str, Any], base: dict[str, Any]) -> dict[str, float | None]:
    """Each of ``FIGURES`` of ``lat`` less the same of ``base`` (ms), None where one lacks it."""
    out: dict[str, float | None] = {}
    for k in FIGURES:
        a, b = lat.get(k), base.get(k)
        out[k] = round(a - b, 2) if a is not None and b is not None else None
    return out


def ray(ctx: h.Ctx) -> None:
    duration = QUICK_BLOCK_S if ctx.quick else BLOCK_S
    modules = boot_modules()
    got = {s: crash.Blocks() for s in SETTINGS}
    boots: dict[str, list[tuple[float, float]]] = {s: [] for s in SETTINGS}
    p = ctx.platforms
    crash.settle(ctx.ray_tree())  # the shared tree, Telegram up for a while
    # warm: both agents awake and every channel past its first message, or the first block
    # (none) would carry a cold start (12 sessions: all on one agent has odds of 1 in 2 048)
    p.run(p.closed_loop(h.convs(12, start=WARM_START), 2), timeout=180)
    interval = sys.getswitchinterval()
    sys.setswitchinterval(crash.SWITCH_INTERVAL_S)  # as the crash benchmark's driver
    try:
        for n, setting in enumerate(order(QUICK_ROUNDS if ctx.quick else ROUNDS)):
            env = SETTINGS[setting]
            booting = Booting(modules, env) if env is not None else None
            try:
                # a round's blocks (one of each setting) replay one seeded schedule
                pair = n // len(SETTINGS)
                crash.block(ctx, FIRST_BLOCK + n, pair, duration, None, got[setting])
            finally:
                if booting is not None:
                    boots[setting] += booting.stop()
    finally:
        sys.setswitchinterval(interval)
    rec = p.rec
    d = ctx.bucket(NAME)
    for s, blocks in got.items():
        ids = blocks.ids
        d[s] = {
            "sent": len(ids),
            "lost": len(rec.lost(ids)),
            "boots": len(boots[s]),
            "boot_cpu_s": _mean([c for c, _ in boots[s]]),
            "boot_wall_s": _mean([w for _, w in boots[s]]),
            **{ch: h.lat_summary(rec.latencies(ids, ch)) for ch in CHANNELS},
            "both": h.lat_summary([x for ch in CHANNELS for x in rec.latencies(ids, ch)]),
        }
    for s in ("nice", "idle"):
        d[s]["added"] = added(d[s]["both"], d["none"]["both"])
        d[s]["p99_ratio"] = {
            ch: h.ratio(d[s][ch]["p99_ms"], d["none"][ch]["p99_ms"]) for ch in (*CHANNELS, "both")
        }


def _mean(xs: list[float]) -> float | None:
    return round(sum(xs) / len(xs), 3) if xs else None


def report(ctx: h.Ctx) -> dict[str, Any]:
    d = ctx.bucket(NAME)
    rows = []
    for s in SETTINGS:
        g = d.get(s, {})
        for ch in (*CHANNELS, "both"):
            lat = g.get(ch, {})
            rows.append(
                [
                    s,
                    ch,
                    lat.get("n"),
                    *(lat.get(k) for k in FIGURES),
                    g.get("p99_ratio", {}).get(ch),
                ]
            )
    h.print_table(
        "Slack and Signal while restart boots run beside them (none: no boot; nice: imports "
        "at nice 19 alone; idle: nice 19 and the idle policy, the default)",
        ["boots", "channel", "n", "p50 ms", "p90 ms", "p99 ms", "mean ms", "p99 / none"],
        rows,
    )
    h.print_table(
        "what the boots added to Slack and Signal together (ms), and the boots themselves",
        ["boots", *(f"+{k[:-3]}" for k in FIGURES), "boots", "cpu s each", "wall s each"],
        [
            [
                s,
                *(d.get(s, {}).get("added", {}).get(k) for k in FIGURES),
                d.get(s, {}).get("boots"),
                d.get(s, {}).get("boot_cpu_s"),
                d.get(s, {}).get("boot_wall_s"),
            ]
            for s in ("nice", "idle")
        ],
    )
    idle, nice = d.get("idle", {}), d.get("nice", {})
    lost = sum(d.get(s, {}).get("lost", 0) for s in SETTINGS) if idle else None
    targets = [h.target("messages lost (all settings)", lost, "==", 0)]
    h.print_targets(targets)
    path = h.write_result(
        NAME,
        quick=ctx.quick,
        figures=idle,
        baseline=d.get("none", {}),
        ratios={
            "added_idle": idle.get("added"),
            "added_nice": nice.get("added"),
            "p99_ratio_idle": idle.get("p99_ratio"),
            "p99_ratio_nice": nice.get("p99_ratio"),
        },
        targets=targets,
        out_dir=ctx.out_dir,
        notes=[
            f"blocks of {QUICK_BLOCK_S if ctx.quick else BLOCK_S:.0f} s in the order "
            f"{', '.join(order(1))}, ...; the crash benchmark's open-loop load on the shared tree",
            "a boot: a fresh Python process importing what a restarted Telegram process imports "
            f"on its quiet threads, the next {BOOT_EVERY_S:.0f} s after the last ended; "
            f"nice: {IDLE_ENV}=0",
        ],
    )
    return {"path": str(path), "targets": targets}
