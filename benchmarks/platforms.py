"""The fake platforms with reply timing, the conversations and the load generators, and
the benchmark config."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import math
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec
from aiohttp import web

import actors  # noqa: F401  - Ray's environment before any ray import
from benchmarks.common import CHANNELS, TOKEN_RE, free_port
from moltbot.config.schema import Config
from tests.fakes.signal_api import NUMBER as SIGNAL_NUMBER
from tests.fakes.signal_api import FakeSignal
from tests.fakes.slack_api import FakeSlack
from tests.fakes.telegram_api import FakeTelegram


# --- an event loop thread for the fakes and the load generator ------------------------------
class LoopThread:
    def __init__(self, name: str = "fakes") -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True, name=name)
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
    """Inject and reply times per message token. Messages are injected on the driver's loop;
    ``reply`` is called on each platform's own loop thread (``Platforms``), under ``lock``."""

    sent_at: dict[int, float] = field(default_factory=dict)
    channel_of: dict[int, str] = field(default_factory=dict)
    replied_at: dict[int, float] = field(default_factory=dict)
    duplicates: int = 0
    unmatched: int = 0
    waiters: dict[int, asyncio.Future[float]] = field(default_factory=dict)
    next_id: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def reply(self, text: str) -> None:
        now = time.perf_counter()
        ids = {int(m) for m in TOKEN_RE.findall(text)}
        with self.lock:
            if not ids:
                self.unmatched += 1
            for mid in ids:
                if mid in self.replied_at:
                    self.duplicates += 1
                    continue
                self.replied_at[mid] = now
                fut = self.waiters.pop(mid, None)
                if fut is not None:  # it belongs to the driver's loop
                    fut.get_loop().call_soon_threadsafe(_settle, fut, now)

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


def _settle(fut: asyncio.Future[float], at: float) -> None:
    if not fut.done():
        fut.set_result(at)


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
    """The fake Telegram, Slack and Signal servers (``accounts`` of each), each platform on an
    event loop thread of its own, as the real ones are separate services: a burst that one
    platform serves (a restarted Telegram answering its backlog at once) does not hold up
    another's request handling and so its reply times. The load generator and the waits for
    replies run on ``lt``, the driver's loop."""

    def __init__(self, accounts: int = 1) -> None:
        self.lt = LoopThread()
        self.loops = {ch: LoopThread(f"fake-{ch}") for ch in CHANNELS}
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
        for ch, fakes in self.fakes.items():
            for fake in fakes:
                self.loops[ch].run(fake.start())

    def close(self) -> None:
        for ch, fakes in self.fakes.items():
            for fake in fakes:
                with contextlib.suppress(Exception):
                    self.loops[ch].run(fake.stop(), timeout=10)
            self.loops[ch].close()
        self.lt.close()

    def __enter__(self) -> Platforms:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- on the loop ---------------------------------------------------------------------
    def inject(self, conv: Conv, note: str = "") -> int:
        """Hand one message to the fake platform, on its loop (call on the driver's loop); its
        token id. Its latency starts here: the hand-over to the platform's thread is in it."""
        rec = self.rec
        mid = rec.new_id()
        text = f"bench bq{mid}x {note}".strip()
        fake = self.fakes[conv.channel][conv.slot]
        kw: dict[str, Any]
        if conv.channel == "telegram":
            kw = {"chat_id": conv.user, "user_id": conv.user, "text": text}
        elif conv.channel == "slack":
            kw = {"channel": f"D{conv.user}", "user": f"U{conv.user}", "text": text}
        else:
            # senders' numbers are +1666...: under the bot's own (+1555 000 1111) the user of
            # conversation 1111 was the bot itself, whose messages the adapter skips
            kw = {"source": f"+1666{conv.user:07d}", "text": text}
        rec.channel_of[mid] = conv.channel
        rec.sent_at[mid] = time.perf_counter()
        self.loops[conv.channel].loop.call_soon_threadsafe(
            functools.partial(fake.inject_message, **kw)
        )
        return mid

    async def answered(self, ids: Sequence[int], timeout: float, poll_s: float = 0.05) -> None:
        """Until every message of ``ids`` has its reply, or ``timeout`` s (call on the driver's
        loop; what is still unanswered then is ``rec.lost(ids)``)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        while loop.time() < end and self.rec.lost(ids):
            await asyncio.sleep(poll_s)

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
    agent_idle_s: float | None = None,
) -> dict[str, Any]:
    """The config (as data) the benchmarks run: defaults except what points at the fakes
    (``agent_idle_s``: ``agent.idle_stop_s``, when not the default)."""
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
    if agent_idle_s is not None:
        cfg["agent"]["idle_stop_s"] = agent_idle_s
    if channel_intensity is not None:
        cfg["supervision"] = {"channels": {"intensity": channel_intensity, "period": 10}}
    if standby:
        cfg.setdefault("supervision", {}).setdefault("channels", {})["standby"] = True
    return cfg


def to_config(data: dict[str, Any]) -> Config:
    return msgspec.convert(data, type=Config)
