"""7. Start and stop: ``moltbot up --detach`` → ready and ``moltbot down``, beside Ray's own head
start measured in the same run.

Baseline (Ray alone): ``ray start --head`` with the options and environment ``moltbot up`` gives
its head (``actors.control.start_head``: the same flags from the same config, the same
``worker_env``, its own process session and temp dir), until its log says it started, then a
fresh Python process connects and a trivial actor answers: "Ray's head start to first actor
answering". Its stop: SIGTERM to the head's process session, until no process of it is left
(``ray stop`` is not used: it ends every Ray on the machine, and this one is shared).

moltbot: the default config as ``moltbot init`` writes it (no channel; only the gateway port
moved to a free one) in a fresh MOLTBOT_HOME; ``moltbot up --detach`` wall time (the CLI
returns once the whole tree answered ready), then ``moltbot down`` wall time, then every
process still alive that belongs to that head (its session, its temp dir on the command line,
or MOLTBOT_HOME in its environment) is counted: "processes left".

Targets (issue 21 item 1): up ≤ Ray's head start + 3 s; down < 2 s; no process left.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import psutil

from benchmarks import harness as h
from benchmarks.common import free_port

NAME = "startstop"
UP_SLACK_S = 3.0
DOWN_TARGET_S = 2.0
# a fresh client: connect to the head, one trivial actor, one call answered
CLIENT = """
import sys, ray
ray.init(address=sys.argv[1], _node_ip_address="127.0.0.1", log_to_driver=False,
         configure_logging=False)
@ray.remote(num_cpus=0)
class Ping:
    def ping(self):
        return "pong"
print(ray.get(Ping.remote().ping.remote(), timeout=120), flush=True)
"""


def moltbot_bin() -> str:
    return str(Path(sys.executable).with_name("moltbot"))


def run_moltbot(args: list[str], env: dict[str, str], timeout: float) -> Any:
    """``moltbot ARGS`` to its end (exit -1, "timed out" on stderr, after ``timeout`` s)."""
    try:
        return subprocess.run(
            [moltbot_bin(), *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        return subprocess.CompletedProcess(exc.cmd, -1, str(exc.stdout or ""), "timed out")


# --- processes of one head ---------------------------------------------------------------------
def alive_of(home: Path, pgid: int, temp_dir: str) -> list[str]:
    """Processes (not zombies) of the head started for ``home``: in its session, naming its
    temp dir, or with ``MOLTBOT_HOME=home`` in their environment. ``name(pid)`` each."""
    out = []
    for p in psutil.process_iter(["pid", "name", "cmdline"]):
        if p.pid == os.getpid():
            continue
        try:
            if p.status() == psutil.STATUS_ZOMBIE:
                continue
            cmd = " ".join(p.info["cmdline"] or [])
            mine = bool(pgid) and os.getsid(p.pid) == pgid
            mine = mine or bool(temp_dir and temp_dir in cmd)
            mine = mine or p.environ().get("MOLTBOT_HOME") == str(home)
        except (psutil.Error, ProcessLookupError, PermissionError):
            continue
        if mine:
            out.append(f"{p.info['name']}({p.pid})")
    return out


def _until_none(home: Path, pgid: int, temp_dir: str, timeout: float) -> list[str]:
    end = time.monotonic() + timeout
    left = alive_of(home, pgid, temp_dir)
    while left and time.monotonic() < end:
        time.sleep(0.05)
        left = alive_of(home, pgid, temp_dir)
    return left


# --- the baseline: Ray's own head ------------------------------------------------------------
def ray_head(cfg_text: str, home: Path) -> dict[str, Any]:
    """``ray start --head`` as ``moltbot up`` runs it → a fresh client's first actor answers;
    then its stop (SIGTERM to its session until nothing of it is left)."""
    from actors import control, ray_token
    from actors.ray_temp import ray_temp_dir
    from moltbot.config.loader import load_config

    cfg_path = home / "config.json"
    cfg_path.write_text(cfg_text)
    cfg = load_config(cfg_path)
    temp_dir = ray_temp_dir(home, hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:10])
    port = control._free_port(cfg.cluster.head_port, cfg.cluster.head_ip)
    ray_token.ensure_token()
    argv = [  # the flags of actors.control.start_head, from the same config
        control._ray_bin(),
        "start",
        "--head",
        "--block",
        f"--node-ip-address={cfg.cluster.head_ip}",
        f"--port={port}",
        f"--temp-dir={temp_dir}",
        "--disable-usage-stats",
        f"--object-store-memory={cfg.cluster.object_store_mb * 1024 * 1024}",
        f"--include-dashboard={'true' if cfg.cluster.dashboard else 'false'}",
    ]
    if cfg.cluster.dashboard:
        dport = control._free_port(cfg.cluster.dashboard_port, cfg.cluster.dashboard_host)
        argv += [f"--dashboard-host={cfg.cluster.dashboard_host}", f"--dashboard-port={dport}"]
    env = control.worker_env(MOLTBOT_HOME=str(home))
    log_path = home / "ray-baseline.log"
    out: dict[str, Any] = {}
    t0 = time.perf_counter()
    with open(log_path, "wb") as logf:
        proc = subprocess.Popen(
            argv, stdout=logf, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 90
        while b"Ray runtime started" not in log_path.read_bytes():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the baseline Ray head did not start; see {log_path}")
            time.sleep(0.05)
        out["head_started_s"] = round(time.perf_counter() - t0, 2)
        client = subprocess.run(
            [sys.executable, "-c", CLIENT, f"{cfg.cluster.head_ip}:{port}"],
            env=env,
            capture_output=True,
            text=True,
            timeout=180,
            check=False,
        )
        out["start_s"] = round(time.perf_counter() - t0, 2)
        if client.returncode != 0 or client.stdout.strip() != "pong":
            raise RuntimeError(f"the baseline's first actor did not answer: {client.stderr[-400:]}")
    finally:
        t1 = time.perf_counter()
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        left = _until_none(home, proc.pid, temp_dir, 30.0)
        out["stop_s"] = round(time.perf_counter() - t1, 2)
        for name in left:  # still there after 30 s: not measured further, killed
            with contextlib.suppress(psutil.Error, ValueError):
                psutil.Process(int(name.rsplit("(", 1)[1].rstrip(")"))).kill()
        out["left_after_stop"] = len(left)
        proc.wait(10)
    h.log(f"Ray head alone: {out}")
    return out


# --- moltbot up / down: one definition, also used by the recovery benchmark ---------------------
def up_down(home: Path, cfg_text: str, port: int, extra_env: dict[str, str]) -> dict[str, Any]:
    """``moltbot up --detach`` → ready (wall), /readyz, ``moltbot down`` (wall), processes
    left right after ``down`` returned (and 5 s later)."""
    (home / "config.json").write_text(cfg_text)
    env = {**os.environ, **h.RAY_ENV, **extra_env, "MOLTBOT_HOME": str(home)}
    t0 = time.perf_counter()
    proc = run_moltbot(["up", "--detach"], env, 240)
    wall = time.perf_counter() - t0
    out: dict[str, Any] = {"exit": proc.returncode, "wall_s": round(wall, 2)}
    m = re.search(r"moltbot is up in ([0-9.]+)s", proc.stdout)
    out["tree_boot_s"] = float(m.group(1)) if m else None  # after the Ray head answered
    if proc.returncode != 0:
        out["error"] = (proc.stderr or proc.stdout)[-500:]
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=10) as r:
            out["readyz"] = r.status
    except Exception as exc:
        out["readyz"] = type(exc).__name__
    from moltbot.cluster.head import read_head

    head = read_head(home)
    pgid, temp_dir = (head.pgid, head.temp_dir) if head else (0, "")
    out["alive_before_down"] = len(alive_of(home, pgid, temp_dir))  # > 0: the count sees them
    t1 = time.perf_counter()
    down = run_moltbot(["down"], env, 120)
    out["down_s"] = round(time.perf_counter() - t1, 2)
    out["down_exit"] = down.returncode
    left = alive_of(home, pgid, temp_dir)
    out["left_after_down"] = len(left)
    out["left_names"] = left[:10]
    if left:  # how long they linger (then they are killed: the next run starts clean)
        still = _until_none(home, pgid, temp_dir, 5.0)
        out["left_after_5s"] = len(still)
        for name in still:
            with contextlib.suppress(psutil.Error, ValueError):
                psutil.Process(int(name.rsplit("(", 1)[1].rstrip(")"))).kill()
    h.log(f"moltbot up -> ready -> down: {out}")
    return out


def default_config(home: Path) -> tuple[str, int]:
    """``moltbot init`` in ``home`` (config, vault, gateway token): the default config text with
    the gateway on a free port, and that port."""
    env = {**os.environ, **h.RAY_ENV, "MOLTBOT_HOME": str(home)}
    init = subprocess.run(
        [moltbot_bin(), "init"], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    if init.returncode != 0:
        raise RuntimeError(f"moltbot init failed: {init.stderr[-400:]}")
    text = (home / "config.json").read_text()
    port = free_port()
    moved, n = re.subn(r'"port": 18789', f'"port": {port}', text, count=1)
    if n != 1:
        raise RuntimeError("the default config has no gateway port 18789 any more")
    return moved, port


# --- phases ------------------------------------------------------------------------------
def post(ctx: h.Ctx) -> None:
    """After every other Ray is gone: Ray's head alone, then moltbot up/down, alternated."""
    d = ctx.bucket(NAME)
    d["ray"], d["moltbot"] = [], []
    for i in range(1 if ctx.quick else 2):
        home = ctx.home(f"startstop{i}")
        text, port = default_config(home)
        d["ray"].append(ray_head(text, ctx.home(f"raybase{i}")))
        d["moltbot"].append(up_down(home, text, port, {}))


def _median(xs: list[Any]) -> float | None:
    good = [float(x) for x in xs if isinstance(x, int | float)]
    return h._r(h.percentile(good, 50), 2) if good else None


def report(ctx: h.Ctx) -> dict[str, Any]:
    d = ctx.bucket(NAME)
    base, runs = d.get("ray", []), d.get("moltbot", [])
    ray_start = _median([b.get("start_s") for b in base])
    ray_stop = _median([b.get("stop_s") for b in base])
    up = _median([r.get("wall_s") for r in runs if r.get("exit") == 0])
    down = _median([r.get("down_s") for r in runs if r.get("down_exit") == 0])
    left = max((r.get("left_after_down", 0) for r in runs), default=None)
    added = None if up is None or ray_start is None else round(up - ray_start, 2)
    h.print_table(
        "start and stop (s): Ray's head alone (baseline) and moltbot, default config",
        ["run", "Ray start", "Ray stop", "up", "tree boot", "/readyz", "down", "procs", "left"],
        [
            [
                i + 1,
                b.get("start_s"),
                b.get("stop_s"),
                r.get("wall_s"),
                r.get("tree_boot_s"),
                r.get("readyz"),
                r.get("down_s"),
                r.get("alive_before_down"),
                r.get("left_after_down"),
            ]
            for i, (b, r) in enumerate(zip(base, runs, strict=False))
        ],
    )
    targets = [
        h.target(
            f"up --detach → ready, vs Ray's head start {ray_start} s + {UP_SLACK_S:g} s (s)",
            None if ray_start is None else up,
            "<=",
            round((ray_start if ray_start is not None else math.nan) + UP_SLACK_S, 2),
            " s",
        ),
        h.target("moltbot down (s)", down, "<", DOWN_TARGET_S, " s"),
        h.target("processes left after down", left if runs else None, "==", 0),
    ]
    h.print_targets(targets)
    path = h.write_result(
        NAME,
        quick=ctx.quick,
        figures={"moltbot": runs, "up_s": up, "down_s": down, "up_minus_ray_s": added},
        baseline={"ray_head": base, "start_s": ray_start, "stop_s": ray_stop},
        ratios={
            "up_vs_ray_start": h.ratio(up, ray_start),
            "down_vs_ray_stop": h.ratio(down, ray_stop),
        },
        targets=targets,
        out_dir=ctx.out_dir,
        notes=[
            "baseline: `ray start --head --block` with start_head's flags and environment "
            "(same config), until its log says started, then a fresh `python -c` connects "
            "and one trivial actor answers; stop = SIGTERM to its session until none is left",
            "moltbot: default config from `moltbot init` (no channel; gateway port moved to a "
            "free one), fresh MOLTBOT_HOME; up = wall of `moltbot up --detach`; down = wall "
            "of `moltbot down`; left = processes of that head (session, temp dir, or "
            "MOLTBOT_HOME in the environment) alive right after `down` returned",
            "medians over the runs (1 with --quick, 2 otherwise), each run alternating "
            "Ray alone then moltbot",
        ],
    )
    return {"path": str(path), "targets": targets}
