"""4. Recovery: time from a channel process's death (``ray.kill`` of ``channels/<type>``, the
process its accounts share) to its account's next answered message (messages are injected from
the moment the process is gone), per channel type, repeated: cold (a new process
imports the channel's SDK again) and with ``supervision.channels.standby`` (a warm spare is
promoted: "warm imports"). Target: under 2 s with warm imports.

Also ``moltbot up --detach`` → ready (the CLI returns when the whole tree answered ready):
wall time of the command, which includes starting a Ray head, in a fresh MOLTBOT_HOME.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from benchmarks import harness as h
from benchmarks.startstop import up_down

NAME = "recovery"
TARGET_S = 2.0
PROBE_EVERY_S = 0.25
PHASES = ("death_seen", "restart_ready", "to_reply")
CPU_PARTS = ("new_processes", "new_at_nice_0", "the_others")
PATHS = {  # the process each type's accounts share (tg0, sl0, sg0 run inside)
    "telegram": "channels/telegram",
    "slack": "channels/slack",
    "signal": "channels/signal",
}


async def _probe(
    p: h.Platforms, ch: str, rep: int, t_kill: float, timeout: float
) -> tuple[float | None, int, int]:
    """Inject a probe every PROBE_EVERY_S until one is answered: (kill → first reply s,
    probes sent, probes still unanswered a few seconds after the first reply)."""
    loop = asyncio.get_running_loop()
    ids: list[int] = []
    end = loop.time() + timeout
    first = None
    while loop.time() < end and first is None:
        ids.append(p.inject(h.Conv(ch, 400_000 + rep * 100 + len(ids))))
        await asyncio.sleep(PROBE_EVERY_S)
        got = [p.rec.replied_at[m] for m in ids if m in p.rec.replied_at]
        if got:
            first = min(got) - t_kill
    await p.answered(ids, 5.0)
    return first, len(ids), len(p.rec.lost(ids))


def ray(ctx: h.Ctx) -> None:
    """Cold restarts on the shared tree, then (that tree stopped) a tree whose channels keep a
    warm standby: each kill then promotes the spare."""
    p = ctx.platforms
    reps = 1 if ctx.quick else 3
    time.sleep(6)  # restarts of the crash benchmark leave the intensity window
    ctx.bucket(NAME)["cold"] = _kills(p, ctx.ray_tree(), reps, standby=False)
    ctx.stop_tree()
    tree = h.RayTree(h.bench_config(p, standby=True), ctx.home("standby")).start()
    try:
        h.log(f"standby tree ready in {tree.ready_s:.1f}s")
        p.run(p.closed_loop(h.convs(6, start=85_000), 1), timeout=180)
        for path in PATHS.values():
            _wait_spare(tree, path)
        time.sleep(3)
        total, _ = h.tree_uss()
        ctx.bucket(NAME)["standby_tree_idle_uss_mb"] = h.mb(total)
        h.log(f"tree with standbys idle: USS {h.mb(total)} MB")
        ctx.bucket(NAME)["standby"] = _kills(p, tree, reps, standby=True)
    finally:
        tree.stop()


def _kills(p: h.Platforms, tree: h.RayTree, reps: int, *, standby: bool) -> dict[str, Any]:
    mode = "standby" if standby else "cold"
    samples: dict[str, list[float | None]] = {ch: [] for ch in PATHS}
    lost: dict[str, int] = dict.fromkeys(PATHS, 0)
    phases: dict[str, list[dict[str, float | None]]] = {ch: [] for ch in PATHS}
    cpu: dict[str, list[dict[str, float]]] = {ch: [] for ch in PATHS}
    for rep in range(reps):
        for ch, path in PATHS.items():
            if standby:
                _wait_spare(tree, path)
            pid_before = tree.pid(path)
            victim = tree.handle(path)  # looked up first: the kill → probe timing is the same
            cpu_before = h.cpu_snapshot()
            t_kill, wall_kill = time.perf_counter(), time.time()
            tree.kill(path, victim)
            _wait_gone(pid_before)  # ``ray.kill`` returns first: the victim could still answer
            base = (1 if standby else 0) * 10 + rep
            took, sent, unanswered = p.run(_probe(p, ch, base, t_kill, 45.0), timeout=90)
            cpu[ch].append(_restart_cpu(cpu_before, h.cpu_snapshot()))
            samples[ch].append(None if took is None else round(took, 3))
            phases[ch].append(_phases(tree, path, wall_kill, took))
            lost[ch] += unanswered
            h.log(
                f"recovery ({mode}) {ch} #{rep + 1}: {None if took is None else round(took, 2)}"
                f" s, {sent} probes, {unanswered} unanswered (pid {pid_before} -> "
                f"{tree.pid(path)})"
            )
            time.sleep(2.5)  # at most 2 restarts per 5 s under the channels supervisor
    return {"recovery_s": samples, "phases_s": phases, "probes_unanswered": lost, "cpu_s": cpu}


def _wait_gone(pid: int, timeout: float = 10.0) -> None:
    """Until the process ``pid`` has died. The probes start only then: one sent before could be
    answered by the dying process (its replies take a few ms), and count as a recovery."""
    import psutil

    try:
        psutil.Process(pid).wait(timeout)
    except psutil.NoSuchProcess:
        pass
    except psutil.TimeoutExpired:
        h.log(f"process {pid} still alive {timeout:.0f} s after its kill")


def _restart_cpu(
    before: dict[int, tuple[str, float]],
    after: dict[int, tuple[str, float]],
    at_nice_0: Callable[[int], float] = h.cpu_at_nice_0,
) -> dict[str, float]:
    """What a restart cost in CPU between two ``cpu_snapshot``s, from the kill until its probes
    were answered: the processes started meanwhile (the new channel process; a standby's
    replacement spare), of that the part at normal priority (the rest ran on the quiet import
    threads), and every process that was there before (the supervisor, Ray's GCS and raylet,
    the driver with the fakes, ...)."""
    new = [pid for pid in after if pid not in before]
    total = sum(after[pid][1] for pid in new)
    rest = sum(c - before[pid][1] for pid, (_, c) in after.items() if pid in before)
    return {
        "new_processes": round(total, 3),
        # of which the threads still there at nice 0: what the siblings at work compete with
        "new_at_nice_0": round(sum(at_nice_0(pid) for pid in new), 3),
        "the_others": round(rest, 3),
    }


def _wait_spare(tree: h.RayTree, path: str, timeout: float = 120.0) -> None:
    """Until the child at ``path`` has a warm standby (its imports run at nice 19)."""
    from actors.registry import actor_name
    from moltbot.cli.render import flatten

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if flatten(tree.status()).get(actor_name(path), {}).get("standby") == "warm":
            return
        time.sleep(0.25)
    raise TimeoutError(f"no warm standby for {path} after {timeout:.0f}s")


def _phases(
    tree: h.RayTree, path: str, wall_kill: float, took: float | None
) -> dict[str, float | None]:
    """Where a recovery's time went, from the channels supervisor's own events: kill → death
    seen, → restarted and ready (backoff, new process, imports, connect), → next reply."""
    import ray

    events = ray.get(tree.handle(path.rsplit("/", 1)[0]).recent_events.remote(0), timeout=30)
    mine = [e for e in events if e["child"] == path and e["t"] >= wall_kill]
    exited = next((e["t"] for e in mine if e["event"] == "exited"), None)
    started = next((e["t"] for e in mine if e["event"] == "started"), None)

    def span(a: float | None, b: float | None) -> float | None:
        return None if a is None or b is None else round(b - a, 3)

    return {
        "death_seen": span(wall_kill, exited),
        "restart_ready": span(exited, started),
        "to_reply": span(started, None if took is None else wall_kill + took),
    }


def post(ctx: h.Ctx) -> None:
    """``moltbot up`` → ready, once (twice in a full run), after the benchmark tree is gone."""
    if ctx.quick:
        h.log("quick: `moltbot up` -> ready is not measured (it starts a Ray head: ~1 min)")
        return
    ctx.bucket(NAME)["up"] = [up_to_ready(ctx, i) for i in range(2)]


def up_to_ready(ctx: h.Ctx, i: int) -> dict[str, Any]:
    """The benchmark config (three fake channels): ``startstop.up_down``'s measure."""
    cfg = h.bench_config(ctx.platforms)
    return up_down(ctx.home(f"up{i}"), json.dumps(cfg), cfg["gateway"]["port"], h.SECRET_ENV)


def _median(xs: list[float | None]) -> float | None:
    good = [x for x in xs if x is not None]
    return h._r(h.percentile(good, 50), 3) if good else None


MODES = {"cold": "new process (cold restart)", "standby": "warm standby promoted"}


def report(ctx: h.Ctx) -> dict[str, Any]:
    d = ctx.bucket(NAME)
    figures: dict[str, Any] = {mode: d.get(mode, {}) for mode in MODES}
    figures["up"] = d.get("up", [])
    figures["standby_tree_idle_uss_mb"] = d.get("standby_tree_idle_uss_mb")
    figures["tree_idle_uss_mb"] = ctx.memory.get("tree_idle", {}).get("uss_mb")
    worst: dict[str, float | None] = {}
    for mode, what in MODES.items():
        m = d.get(mode, {})
        samples: dict[str, list[float | None]] = m.get("recovery_s", {})
        rows = []
        for ch, xs in samples.items():
            good = [x for x in xs if x is not None]
            rows.append(
                [
                    ch,
                    xs[0] if xs else None,
                    _median(xs),
                    max(good) if good else None,
                    sum(1 for x in xs if x is None),
                ]
            )
        all_ = [x for xs in samples.values() for x in xs]
        worst[mode] = None if not all_ or None in all_ else max(x for x in all_ if x is not None)
        h.print_table(
            f"recovery, {what}: channel actor killed → its next message answered (s)",
            ["channel", "first", "median", "max", "never"],
            rows,
        )
        if m.get("phases_s"):
            h.print_table(
                f"where it goes ({mode}, median s): kill → death seen → ready again → reply",
                ["channel", "death seen", "restart+ready", "to reply"],
                [
                    [ch, *(_median([x[k] for x in xs]) for k in PHASES)]
                    for ch, xs in m["phases_s"].items()
                ],
            )
        if m.get("cpu_s"):
            h.print_table(
                f"CPU of a restart ({mode}, median s): kill → its probes answered",
                ["channel", "new processes", "of which at nice 0", "the others"],
                [
                    [ch, *(_median([x.get(k) for x in xs]) for k in CPU_PARTS)]
                    for ch, xs in m["cpu_s"].items()
                ],
            )
        if m.get("probes_unanswered"):
            h.print_table(
                f"probes not yet answered 5 s after the first reply ({mode})",
                ["channel", "n"],
                list(m["probes_unanswered"].items()),
            )
    if figures["standby_tree_idle_uss_mb"] and figures["tree_idle_uss_mb"]:
        h.print_table(
            "memory of the standbys (tree idle, USS MB)",
            ["without", "with standbys", "added"],
            [
                [
                    figures["tree_idle_uss_mb"],
                    figures["standby_tree_idle_uss_mb"],
                    round(figures["standby_tree_idle_uss_mb"] - figures["tree_idle_uss_mb"], 1),
                ]
            ],
        )
    ups = d.get("up", [])
    if ups:
        h.print_table(
            "moltbot up --detach → ready (s)",
            ["run", "wall", "tree boot", "exit", "/readyz", "down", "left"],
            [
                [
                    i + 1,
                    u.get("wall_s"),
                    u.get("tree_boot_s"),
                    u.get("exit"),
                    u.get("readyz"),
                    u.get("down_s"),
                    u.get("left_after_down"),
                ]
                for i, u in enumerate(ups)
            ],
        )
    targets = [
        h.target(
            "recovery with warm imports (standby), max (s)", worst["standby"], "<", TARGET_S, " s"
        ),
    ]
    figures["cold_restart_max_s"] = worst["cold"]
    h.print_targets(targets)
    baseline: dict[str, Any] = {
        "baseline_process_ready_s": round(ctx.baseline_ready_s, 2)
        if ctx.baseline_ready_s
        else None,
        "what": "start of the no-Ray pipeline process until every adapter connected",
    }
    ratios = {
        "up_wall_vs_baseline_start": h.ratio(
            ups[0]["wall_s"] if ups else None, baseline["baseline_process_ready_s"]
        )
    }
    path = h.write_result(
        NAME,
        quick=ctx.quick,
        figures=figures,
        baseline=baseline,
        ratios=ratios,
        targets=targets,
        out_dir=ctx.out_dir,
        notes=[
            "kill = ray.kill of the channel type's process (its accounts run inside); "
            f"from the kill on, a probe message every {PROBE_EVERY_S}s until one is answered; "
            "time = kill → first reply at the fake platform",
            "probes_unanswered: probes with no reply 5 s after the first "
            "reply (Signal has no ack: a message pushed to the dead actor's "
            "socket is lost, see moltbot/channels/base.py)",
            "cold: the default (a restart starts a new Ray worker process and imports the "
            "channel's SDK); standby: supervision.channels.standby = true (a spare process "
            "with its imports done is promoted; a new spare follows at nice 19)",
            "moltbot up: wall time of `moltbot up --detach` (Ray head start + "
            "tree boot); tree_boot_s is the CLI's own figure after Ray is up",
        ],
    )
    return {"path": str(path), "targets": targets}
