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

import asyncio
import contextlib
import importlib.metadata
import json
import math
import os
import platform
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import psutil
from aiohttp import web

import actors  # noqa: F401  - Ray's environment before any ray import
from moltbot.config.schema import Config
from tests.fakes.signal_api import NUMBER as SIGNAL_NUMBER
from tests.fakes.signal_api import FakeSignal
from tests.fakes.slack_api import APP_TOKEN, BOT_TOKEN, FakeSlack
from tests.fakes.telegram_api import DEFAULT_TOKEN, FakeTelegram

ROOT_DIR = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"
OBJECT_STORE_BYTES = 200 * 1024 * 1024
GATEWAY_TOKEN = "bench-gateway-token-0123456789-abcdefghijklmnop"
ANTHROPIC_KEY = "sk-ant-bench-key"
CHANNELS = ("telegram", "slack", "signal")
TOKEN_RE = re.compile(r"bq(\d+)x")

# secrets reach the actors (and the baseline process) as env: references
SECRET_ENV = {
    "MB_BENCH_TG": DEFAULT_TOKEN,
    "MB_BENCH_SLACK_BOT": BOT_TOKEN,
    "MB_BENCH_SLACK_APP": APP_TOKEN,
    "MB_BENCH_GW": GATEWAY_TOKEN,
    "MB_BENCH_ANTHROPIC": ANTHROPIC_KEY,
}
RAY_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0",
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "token"),
}


def log(msg: str) -> None:
    print(f"  [{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# --- statistics and results ------------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100); NaN for no values."""
    if not values:
        return math.nan
    xs = sorted(values)
    k = (len(xs) - 1) * q / 100.0
    lo, hi = math.floor(k), math.ceil(k)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def lat_summary(latencies_s: Sequence[float]) -> dict[str, Any]:
    ms = [x * 1000.0 for x in latencies_s]
    return {
        "n": len(ms),
        "p50_ms": _r(percentile(ms, 50)),
        "p90_ms": _r(percentile(ms, 90)),
        "p99_ms": _r(percentile(ms, 99)),
        "max_ms": _r(max(ms) if ms else math.nan),
        "mean_ms": _r(sum(ms) / len(ms) if ms else math.nan),
    }


def _r(x: float, nd: int = 2) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(x, nd)


def ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or b == 0:
        return None
    return round(a / b, 3)


def target(name: str, value: float | None, op: str, limit: float, unit: str = "") -> dict[str, Any]:
    met = (
        None
        if value is None
        else (value < limit if op == "<" else value <= limit if op == "<=" else value == limit)
    )
    return {"name": name, "value": value, "target": f"{op} {limit}{unit}", "met": met}


def machine_info() -> dict[str, Any]:
    try:
        ray_version = importlib.metadata.version("ray")
    except importlib.metadata.PackageNotFoundError:
        ray_version = None
    return {
        "cpu_count": os.cpu_count(),
        "python": platform.python_version(),
        "ray": ray_version,
        "platform": platform.platform(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "load_avg_1_5_15": [round(x, 2) for x in os.getloadavg()],  # other work on the box
        "state_dir": state_medium(),
        "disk_fsync_ms": fsync_ms(),
    }


def write_result(
    name: str,
    *,
    quick: bool,
    figures: dict[str, Any],
    baseline: dict[str, Any],
    ratios: dict[str, Any],
    targets: list[dict[str, Any]],
    notes: list[str] | None = None,
    out_dir: Path | None = None,
) -> Path:
    out = out_dir or RESULTS
    out.mkdir(parents=True, exist_ok=True)
    data = {
        "benchmark": name,
        "quick": quick,
        "timestamp": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine_info(),
        "figures": figures,
        "baseline": baseline,
        "ratios": ratios,
        "targets": targets,
        "notes": notes or [],
    }
    path = out / f"{name}.json"
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path


def print_table(title: str, headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    cells = [[_fmt(c) for c in row] for row in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)
    ]
    print(f"\n{title}")
    print("  " + "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)))
    print("  " + "  ".join("-" * w for w in widths))
    for row in cells:
        print("  " + "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)))
    print(flush=True)


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 1 else f"{v:.1f}"
    return str(v)


def print_targets(targets: list[dict[str, Any]]) -> None:
    print_table(
        "targets",
        ["target", "value", "wanted", "met"],
        [[t["name"], t["value"], t["target"], t["met"]] for t in targets],
    )


def plot(
    path: Path,
    title: str,
    xlabel: str,
    ylabel: str,
    series: dict[str, tuple[list[float], list[float]]],
    *,
    logy: bool = False,
) -> Path | None:
    """A line plot, if matplotlib is installed (``pip install -e '.[bench]'``)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log("matplotlib not installed: no plot (pip install -e '.[bench]')")
        return None
    fig, ax = plt.subplots(figsize=(7, 4.2))
    for label, (xs, ys) in series.items():
        ax.plot(xs, ys, marker="o", label=label)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if logy:
        ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- an event loop thread for the fakes and the load generator ------------------------------
class LoopThread:
    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name="fakes")
        self.thread.start()

    def run(self, coro: Any, timeout: float | None = 60.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        if not self.loop.is_running():
            self.loop.close()


# --- reply timing --------------------------------------------------------------------------
@dataclass
class Recorder:
    """Inject and reply times per message token (used on the fakes' loop only)."""

    sent_at: dict[int, float] = field(default_factory=dict)
    channel_of: dict[int, str] = field(default_factory=dict)
    replied_at: dict[int, float] = field(default_factory=dict)
    duplicates: int = 0
    unmatched: int = 0
    waiters: dict[int, asyncio.Future[float]] = field(default_factory=dict)
    next_id: int = 0

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def reply(self, text: str) -> None:
        now = time.perf_counter()
        ids = {int(m) for m in TOKEN_RE.findall(text)}
        if not ids:
            self.unmatched += 1
        for mid in ids:
            if mid in self.replied_at:
                self.duplicates += 1
                continue
            self.replied_at[mid] = now
            fut = self.waiters.pop(mid, None)
            if fut is not None and not fut.done():
                fut.set_result(now)

    def latency(self, mid: int) -> float | None:
        if mid in self.replied_at and mid in self.sent_at:
            return self.replied_at[mid] - self.sent_at[mid]
        return None

    def latencies(self, ids: Sequence[int], channel: str | None = None) -> list[float]:
        out = []
        for mid in ids:
            if channel is not None and self.channel_of.get(mid) != channel:
                continue
            lat = self.latency(mid)
            if lat is not None:
                out.append(lat)
        return out

    def lost(self, ids: Sequence[int]) -> list[int]:
        return [mid for mid in ids if mid not in self.replied_at]


class TimedTelegram(FakeTelegram):
    recorder: Recorder

    async def _send_message(self, params: dict[str, Any]) -> web.Response:
        resp = await super()._send_message(params)
        if resp.status == 200:
            self.recorder.reply(str(params.get("text") or ""))
        return resp


class TimedSlack(FakeSlack):
    recorder: Recorder

    def _post_message(self, body: dict[str, Any]) -> web.Response:
        resp = super()._post_message(body)
        if resp.status == 200 and b'"ok": true' in (resp.body or b""):  # type: ignore[operator]
            self.recorder.reply(str(body.get("text") or ""))
        return resp


class TimedSignal(FakeSignal):
    recorder: Recorder

    async def _send(self, request: web.Request) -> web.Response:
        before = len(self.sent)
        resp = await super()._send(request)
        if resp.status == 201 and len(self.sent) > before:
            self.recorder.reply(str(self.sent[-1].get("message") or ""))
        return resp


@dataclass(frozen=True)
class Conv:
    """One conversation: a DM from one user on one channel account (``slot`` picks the fake)."""

    channel: str
    user: int
    slot: int = 0


def convs(n: int, channels: Sequence[str] = CHANNELS, start: int = 0) -> list[Conv]:
    """``n`` conversations spread round-robin over ``channels``."""
    return [Conv(channels[i % len(channels)], 1000 + start + i) for i in range(n)]


class Platforms:
    """The fake Telegram, Slack and Signal servers (``accounts`` of each) on a loop thread."""

    def __init__(self, accounts: int = 1) -> None:
        self.lt = LoopThread()
        self.rec = Recorder()
        self.fakes: dict[str, list[Any]] = {c: [] for c in CHANNELS}
        for _ in range(accounts):
            for ch, cls in (
                ("telegram", TimedTelegram),
                ("slack", TimedSlack),
                ("signal", TimedSignal),
            ):
                fake = cls()
                fake.recorder = self.rec
                self.fakes[ch].append(fake)
        for fakes in self.fakes.values():
            for fake in fakes:
                self.lt.run(fake.start())

    def close(self) -> None:
        for fakes in self.fakes.values():
            for fake in fakes:
                with contextlib.suppress(Exception):
                    self.lt.run(fake.stop(), timeout=10)
        self.lt.close()

    def __enter__(self) -> Platforms:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- on the loop ---------------------------------------------------------------------
    def inject(self, conv: Conv, note: str = "") -> int:
        """Hand one message to the fake platform (call on the loop); its token id."""
        rec = self.rec
        mid = rec.new_id()
        text = f"bench bq{mid}x {note}".strip()
        fake = self.fakes[conv.channel][conv.slot]
        rec.sent_at[mid] = time.perf_counter()
        rec.channel_of[mid] = conv.channel
        if conv.channel == "telegram":
            fake.inject_message(chat_id=conv.user, user_id=conv.user, text=text)
        elif conv.channel == "slack":
            fake.inject_message(channel=f"D{conv.user}", user=f"U{conv.user}", text=text)
        else:
            fake.inject_message(source=f"+1555{conv.user:07d}", text=text)
        return mid

    async def ask(self, conv: Conv, timeout: float = 30.0) -> tuple[int, float | None]:
        """Send one message and wait for its reply: (id, latency s or None on timeout)."""
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        mid = self.rec.next_id + 1
        self.rec.waiters[mid] = fut
        got = self.inject(conv)
        assert got == mid
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            self.rec.waiters.pop(mid, None)
            return mid, None
        return mid, self.rec.latency(mid)

    async def closed_loop(
        self, conversations: Sequence[Conv], per_conv: int, timeout: float = 30.0
    ) -> tuple[list[float], int]:
        """Each conversation sends, waits for the reply, sends the next. (latencies, timeouts)"""
        lats: list[float] = []
        timeouts = 0

        async def one(c: Conv) -> None:
            nonlocal timeouts
            for _ in range(per_conv):
                _mid, lat = await self.ask(c, timeout)
                if lat is None:
                    timeouts += 1
                    return
                lats.append(lat)

        await asyncio.gather(*(one(c) for c in conversations))
        return lats, timeouts

    async def open_loop(
        self, rate: float, duration: float, conversations: Sequence[Conv], drain_s: float = 20.0
    ) -> dict[str, Any]:
        """Inject at ``rate`` msg/s (round-robin over conversations) for ``duration``, then wait
        up to ``drain_s`` for the replies. Returns ids, latencies, achieved rates."""
        loop = asyncio.get_running_loop()
        ids: list[int] = []
        n = max(1, int(rate * duration))
        t0 = loop.time()
        for i in range(n):
            due = t0 + i / rate
            delay = due - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            ids.append(self.inject(conversations[i % len(conversations)]))
        sent_s = loop.time() - t0
        end = loop.time() + drain_s
        while loop.time() < end and any(m not in self.rec.replied_at for m in ids):
            await asyncio.sleep(0.02)
        done = [m for m in ids if m in self.rec.replied_at]
        span = (
            max(self.rec.replied_at[m] for m in done) - min(self.rec.sent_at[m] for m in ids)
            if done
            else math.nan
        )
        return {
            "ids": ids,
            "latencies": self.rec.latencies(ids),
            "offered_rate": rate,
            "sent": len(ids),
            "answered": len(done),
            "inject_s": sent_s,
            "achieved_rate": len(done) / span if done and span > 0 else 0.0,
        }

    def run(self, coro: Any, timeout: float | None = None) -> Any:
        return self.lt.run(coro, timeout)

    # --- config ------------------------------------------------------------------------------
    def channels_config(self, channels: Sequence[str] = CHANNELS) -> dict[str, Any]:
        out: dict[str, list[dict[str, Any]]] = {"telegram": [], "slack": [], "signal": []}
        for i, fake in enumerate(self.fakes["telegram"]):
            if "telegram" in channels:
                out["telegram"].append(
                    {
                        "account": f"tg{i}",
                        "token": "env:MB_BENCH_TG",
                        "api_base": fake.api_base,
                        "dm_policy": "open",
                        "poll_timeout_s": 10,
                    }
                )
        for i, fake in enumerate(self.fakes["slack"]):
            if "slack" in channels:
                out["slack"].append(
                    {
                        "account": f"sl{i}",
                        "bot_token": "env:MB_BENCH_SLACK_BOT",
                        "app_token": "env:MB_BENCH_SLACK_APP",
                        "api_base": fake.api_base,
                        "dm_policy": "open",
                    }
                )
        for i, fake in enumerate(self.fakes["signal"]):
            if "signal" in channels:
                out["signal"].append(
                    {
                        "account": f"sg{i}",
                        "number": SIGNAL_NUMBER,
                        "api_base": fake.api_base,
                        "dm_policy": "open",
                    }
                )
        return out


def bench_config(
    platforms: Platforms | None,
    *,
    channels: Sequence[str] = CHANNELS,
    gateway_port: int | None = None,
    anthropic_url: str | None = None,
    agents: int = 2,
    channel_intensity: int | None = None,
    standby: bool = False,
) -> dict[str, Any]:
    """The config (as data) the benchmarks run: defaults except what points at the fakes."""
    cfg: dict[str, Any] = {
        "gateway": {"port": gateway_port or free_port(), "auth": {"token": "env:MB_BENCH_GW"}},
        "agent": {"provider": "offline", "workers": agents},
        "channels": platforms.channels_config(channels) if platforms else {},
        "cluster": {"dashboard": False, "object_store_mb": 200},
    }
    if anthropic_url:
        cfg["agent"].update(
            {
                "provider": "anthropic",
                "api_key": "env:MB_BENCH_ANTHROPIC",
                "base_url": anthropic_url,
                "models": ["claude-bench"],
            }
        )
    if channel_intensity is not None:
        cfg["supervision"] = {"channels": {"intensity": channel_intensity, "period": 10}}
    if standby:
        cfg.setdefault("supervision", {}).setdefault("channels", {})["standby"] = True
    return cfg


def to_config(data: dict[str, Any]) -> Config:
    return msgspec.convert(data, type=Config)


# --- the tree on Ray -------------------------------------------------------------------------
def ray_init() -> None:
    import ray

    if not ray.is_initialized():
        ray.init(
            address="local",  # always a new local Ray: never join another one on this machine
            num_cpus=os.cpu_count() or 2,
            object_store_memory=OBJECT_STORE_BYTES,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
            _node_ip_address="127.0.0.1",
        )


def ray_shutdown() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()


class RayTree:
    """The supervision tree (everything ``build_tree`` makes) on the local Ray of this driver."""

    def __init__(self, cfg_data: dict[str, Any], home: Path, *, only: Sequence[str] = ()) -> None:
        self.cfg = to_config(cfg_data)
        self.home = home
        self.only = set(only)
        self.ns = f"bench-{uuid.uuid4().hex[:8]}"
        self.root: Any = None
        self.ready_s = math.nan

    def start(self, timeout: float = 180.0) -> RayTree:
        import ray

        from actors.supervisor import Supervisor
        from moltbot.supervision.tree import build_tree, root_flags

        ray_init()
        kids = build_tree(self.cfg)
        if self.only:
            kids = [k for k in kids if k.id in self.only]
        env = {**RAY_ENV, **SECRET_ENV, "MOLTBOT_HOME": str(self.home)}
        t0 = time.perf_counter()
        self.root = Supervisor.options(  # type: ignore[attr-defined]
            name="moltbot",
            namespace=self.ns,
            num_cpus=0,
            max_restarts=0,
            runtime_env={"env_vars": env},
        ).remote(path="", flags=root_flags(self.cfg), children=kids, namespace=self.ns)
        ray.get(self.root.start_detached.remote(), timeout=timeout)
        ray.get(self.root.ready.remote(), timeout=timeout)
        self.ready_s = time.perf_counter() - t0
        return self

    def handle(self, path: str) -> Any:

        from actors.registry import lookup

        return lookup(path, self.ns)

    def pid(self, path: str) -> int:
        import ray

        return int(ray.get(self.handle(path).ready.remote(), timeout=30)["pid"])

    def kill(self, path: str, handle: Any = None) -> bool:
        """``ray.kill`` the actor at ``path`` (its process dies); False if it is not there.
        ``handle``: already looked up (so the kill is not delayed by the lookup)."""
        import ray

        try:
            h = handle if handle is not None else self.handle(path)
        except ValueError:
            return False
        ray.kill(h, no_restart=True)
        return True

    def status(self) -> dict[str, Any]:
        import ray

        return dict(ray.get(self.root.status.remote(), timeout=30))

    def stop(self) -> None:
        import ray

        if self.root is None:
            return
        try:
            ray.get(self.root.stop.remote(), timeout=60)
        except Exception as exc:  # report, still kill
            log(f"tree stop: {type(exc).__name__}")
        finally:
            with contextlib.suppress(Exception):
                ray.kill(self.root)
            self.root = None

    def __enter__(self) -> RayTree:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- the same pipeline without Ray (a subprocess) ------------------------------------------------
class Pipeline:
    """``python -m benchmarks.pipeline``: adapters + ChannelService + agent in one asyncio
    process. Ready when it prints READY; stopped with SIGTERM."""

    def __init__(self, cfg_data: dict[str, Any], home: Path, *, gateway: bool = False) -> None:
        self.cfg_data = cfg_data
        self.home = home
        self.gateway = gateway
        self.proc: subprocess.Popen[str] | None = None
        self.ready_s = math.nan

    def start(self, timeout: float = 60.0) -> Pipeline:
        self.home.mkdir(parents=True, exist_ok=True)
        cfg_path = self.home / "bench-config.json"
        cfg_path.write_text(json.dumps(self.cfg_data))
        env = {
            **os.environ,
            **SECRET_ENV,
            "MOLTBOT_HOME": str(self.home),
            "PYTHONPATH": str(ROOT_DIR),
        }
        argv = [sys.executable, "-m", "benchmarks.pipeline", "--config", str(cfg_path)]
        if self.gateway:
            argv.append("--gateway")
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=None, text=True, env=env, cwd=ROOT_DIR
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            if line.strip() == "READY":
                self.ready_s = time.perf_counter() - t0
                return self
        self.stop()
        raise RuntimeError("the baseline pipeline did not become ready")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def __enter__(self) -> Pipeline:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# Where MOLTBOT_HOME (journal, transcripts) lives. tmpfs by default, so the figures measure the
# software rather than this machine's fsync latency (``fsync_ms`` in the machine info says
# what the disk would add: about six fsyncs per message). ``--disk`` uses the temp dir.
STATE_ROOT: Path | None = Path("/dev/shm") if Path("/dev/shm").is_dir() else None


def state_medium() -> str:
    return "tmpfs (/dev/shm)" if STATE_ROOT is not None else f"disk ({tempfile.gettempdir()})"


def fsync_ms(folder: Path | None = None, n: int = 20) -> float:
    """Mean time of a small append + fsync in ``folder`` (the temp dir: the disk)."""
    fd, name = tempfile.mkstemp(prefix="moltbot-bench-fsync-", dir=folder)
    try:
        t0 = time.perf_counter()
        for _ in range(n):
            os.write(fd, b"x" * 200 + b"\n")
            os.fsync(fd)
        return round((time.perf_counter() - t0) / n * 1000, 2)
    finally:
        os.close(fd)
        os.unlink(name)


@contextlib.contextmanager
def temp_home(tag: str, root: Path | str | None = "default") -> Iterator[Path]:
    base = STATE_ROOT if root == "default" else root
    path = Path(tempfile.mkdtemp(prefix=f"moltbot-bench-{tag}-", dir=base))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


# --- memory ----------------------------------------------------------------------------------
def uss(proc: psutil.Process) -> int:
    try:
        return int(proc.memory_full_info().uss)
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return 0


def descendants(exclude: Callable[[psutil.Process], bool] | None = None) -> list[psutil.Process]:
    """Every process under this driver (the local Ray: gcs, raylet, workers, ...)."""
    out = []
    for p in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if exclude is not None and exclude(p):
                continue
            out.append(p)
    return out


def is_browser_or_pipeline(p: psutil.Process) -> bool:
    try:
        cmd = " ".join(p.cmdline())
    except psutil.Error:
        return True
    return "benchmarks.pipeline" in cmd or "chrom" in p.name().lower() or "playwright" in cmd


def tree_uss() -> tuple[int, Counter[str]]:
    """Total USS of the Ray processes under this driver, and USS by process kind."""
    by_kind: Counter[str] = Counter()
    total = 0
    for p in descendants(is_browser_or_pipeline):
        u = uss(p)
        total += u
        try:
            name = p.name()
            if name.startswith("ray::"):
                kind = "actor " + name.removeprefix("ray::").split(".")[0]
            elif "default_worker" in " ".join(p.cmdline()):
                kind = "idle worker"
            else:
                kind = name
        except psutil.Error:
            kind = "?"
        by_kind[kind] += u
    return total, by_kind


def _kind(p: psutil.Process) -> str:
    name = p.name()
    if name.startswith("ray::"):
        return "actor " + name.removeprefix("ray::").split(".")[0]
    cmd = " ".join(p.cmdline())
    if "benchmarks.pipeline" in cmd:
        return "baseline pipeline"
    if "default_worker" in cmd:
        return "idle worker"
    return name


def cpu_snapshot() -> dict[int, tuple[str, float]]:
    """CPU seconds (user + system) so far of this driver (the fakes run in it) and every
    process under it (Ray's processes or the baseline pipeline), by pid, with its kind."""
    out: dict[int, tuple[str, float]] = {}
    me = psutil.Process()
    for p in [me, *descendants(lambda q: "chrom" in q.name().lower())]:
        with contextlib.suppress(psutil.Error):
            t = p.cpu_times()
            kind = "driver + fakes" if p.pid == me.pid else _kind(p)
            out[p.pid] = (kind, t.user + t.system)
    return out


def cpu_per_message(
    before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]], messages: int
) -> dict[str, float]:
    """CPU ms per message by process kind between two snapshots, and the ``total``."""
    by_kind: Counter[str] = Counter()
    for pid, (kind, secs) in after.items():
        by_kind[kind] += secs - before.get(pid, (kind, 0.0))[1]
    n = max(messages, 1)
    out = {k: round(v * 1000 / n, 2) for k, v in by_kind.most_common() if v * 1000 / n >= 0.05}
    out["total"] = round(sum(by_kind.values()) * 1000 / n, 2)
    return out


def mb(n: float) -> float:
    return round(n / 2**20, 1)


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

    def ray_tree(self) -> RayTree:
        """The full tree on the shared fakes; Ray idle memory is sampled before it starts."""
        if self.tree is None:
            self.stop_pipeline()
            ray_init()
            time.sleep(5 if self.quick else 10)  # let Ray's own start settle
            total, kinds = tree_uss()
            self.memory["ray_idle"] = {
                "uss_mb": mb(total),
                "by_kind_mb": {k: mb(v) for k, v in kinds.items()},
            }
            log(f"Ray idle: USS {mb(total)} MB")
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
