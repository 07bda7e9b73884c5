"""A channel tree for tests on the session's Ray: the fake platforms served from a loop thread
in the test process, and the real actors ``build_tree`` makes from a config (store, agents,
channels, and whichever others a test names) under one root, torn down in that order: the tree,
then the fakes."""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import msgspec
import ray

from actors.supervisor import Supervisor
from moltbot.config.schema import Config
from moltbot.supervision.tree import build_tree, root_flags
from tests.actors.helpers import node, stop_root, tree

ECHO = "[offline] you said: "
RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_USAGE_STATS_ENABLED": "0"}
FAST = {"intensity": 20, "period": 60, "backoff": {"base_s": 0.05, "max_s": 0.5}}


class Fake(Protocol):
    """A fake platform server (tests/fakes)."""

    async def start(self) -> Any: ...

    async def stop(self) -> Any: ...


class LoopThread:
    """An event loop in a thread, for the fake servers (the test itself stays synchronous)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float = 30.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Any, *args: Any, **kw: Any) -> Any:
        async def go() -> Any:
            return fn(*args, **kw)

        return self.run(go())

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def fast_config(sections: dict[str, Any], groups: Iterable[str] = ()) -> Config:
    """The config of ``sections`` (the agent offline with one worker unless given) whose root,
    agents, channels and ``groups`` supervisors restart fast, with short pings and timeouts
    (ready in 120 s: aiogram's import is slow on a busy box)."""
    supervision: dict[str, Any] = {g: FAST for g in ("root", "agents", "channels", *groups)}
    supervision |= {
        "ping_interval_s": 0.5,
        "ping_timeout_s": 5.0,
        "shutdown_s": 3.0,
        "ready_timeout_s": 120.0,
    }
    raw = {"agent": {"provider": "offline", "workers": 1}, **sections, "supervision": supervision}
    return msgspec.convert(raw, type=Config)


def telegram_main(tg: Any, **more: Any) -> dict[str, Any]:
    """The ``telegram`` account ``main`` on the fake Telegram ``tg`` (open DMs, short polls;
    its token from ``MB_TEST_TG``), with ``more`` keys."""
    return {
        "account": "main",
        "token": "env:MB_TEST_TG",
        "api_base": tg.api_base,
        "dm_policy": "open",
        "poll_timeout_s": 1,
        **more,
    }


@contextmanager
def serving(*fakes: Fake) -> Iterator[LoopThread]:
    """The fakes started on a new loop thread; stopped, and the thread ended, on the way out."""
    loop = LoopThread()
    started: list[Fake] = []
    try:
        for fake in fakes:
            loop.run(fake.start())
            started.append(fake)
        yield loop
    finally:
        for fake in started:
            loop.run(fake.stop())
        loop.close()


@contextmanager
def running_tree(
    cfg: Config, ids: Iterable[str], home: Path, env: dict[str, str] | None = None
) -> Iterator[tuple[Any, str]]:
    """(root, namespace) of a tree of the top-level children ``ids`` of ``cfg``, in a fresh
    namespace, with ``MOLTBOT_HOME=home`` and ``env`` (token references) in its environment;
    ready before it is handed over, stopped and killed on the way out."""
    wanted = set(ids)
    kids = [c for c in build_tree(cfg) if c.id in wanted]
    env_vars = {**RAY_ENV, "MOLTBOT_HOME": str(home), **(env or {})}
    ns = f"t-{uuid.uuid4().hex[:8]}"
    root = Supervisor.options(  # type: ignore[attr-defined]
        name="moltbot", namespace=ns, num_cpus=0
    ).remote(  # the environment handed down the tree, as ``control.boot`` does: no runtime_env
        path="", flags=root_flags(cfg), children=kids, namespace=ns, env=env_vars
    )
    try:
        ray.get(root.start_detached.remote())
        ray.get(root.ready.remote(), timeout=240)
        yield root, ns
    finally:
        stop_root(root)


def host_node(root: Any, kind: str) -> dict[str, Any]:
    """The status of the process the accounts of channel type ``kind`` share."""
    return node(node(tree(root), "channels"), kind)


def channel_node(root: Any, cid: str) -> dict[str, Any]:
    """The status of channel ``cid`` (e.g. ``telegram:main``) inside its type's process, under
    the channels supervisor."""
    for host in node(tree(root), "channels")["children"]:
        if any(c["id"] == cid for c in host.get("children", [])):
            return node(host, cid)
    raise KeyError(cid)
