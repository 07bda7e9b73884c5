"""Local pipes in a real tree on the session's Ray: the agent's transcript writes reach the
store over its pipe, ride through the store's restart, and go through Ray when pipes are off.

The driver (this test) is not an actor, so its own calls go through Ray; the agent, an actor
on the same node, sends its store calls over the store's pipe.
"""

from __future__ import annotations

import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import msgspec
import pytest
import ray

from actors import routing
from actors.pipes import ENABLED_ENV
from moltbot.config.schema import Config
from tests.actors.helpers import (
    FAST,
    child,
    inbound,
    node,
    start_root,
    stop_root,
    supervisor,
    tree,
    wait_for,
    worker,
)

pytestmark = pytest.mark.timeout(240)


def small_tree(cfg: Config) -> list[Any]:
    return [
        worker("store", "store", cfg),
        supervisor("agents", [worker("agent-0", "agent", cfg)]),
    ]


@pytest.fixture(scope="module")
def cfg() -> Config:
    return msgspec.convert({"agent": {"workers": 1}, "tools": {"workers": 1}}, Config)


@pytest.fixture
def started(
    ray_cluster: None, cfg: Config, tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[Any, str, Path]]:
    home = tmp_path / "home"
    env = {"MOLTBOT_HOME": str(home), **getattr(request, "param", {})}
    root, ns = start_root(FAST, small_tree(cfg), env=env)
    try:
        yield root, ns, home
    finally:
        stop_root(root)


def info(ns: str, path: str) -> dict[str, Any]:
    """The actor's ready info with its pipe figures."""
    actor = child(ns, path)
    got = dict(ray.get(actor.ready.remote(), timeout=30))
    got["pipes"] = ray.get(actor.pipe_figures.remote(), timeout=30)
    return got


async def answer(ns: str, text: str) -> str:
    return str(await routing.call(ns, "agents/agent-0", "answer", inbound(text)))


async def test_store_calls_go_over_the_pipe_and_ride_through_a_restart(
    started: tuple[Any, str, Path],
) -> None:
    root, ns, home = started
    store = info(ns, "store")
    assert store["pipes"]["serving"]
    assert store["pid"] == info(ns, "")["pid"]  # the store runs inside the root's process
    sock = home / "run" / "pipes" / f"{store['pid']}-store.sock"  # its own socket there
    assert sock.exists() and stat.S_ISSOCK(sock.stat().st_mode)
    assert stat.S_IMODE(sock.stat().st_mode) == 0o600
    assert stat.S_IMODE(sock.parent.stat().st_mode) == 0o700

    assert await answer(ns, "one") == "[offline] you said: one"
    # the transcript load and the write of that turn (the write goes behind the reply)
    wait_for(lambda: info(ns, "store")["pipes"]["served"] >= 2, what="the turn's write")
    served = info(ns, "store")["pipes"]["served"]
    assert info(ns, "agents/agent-0")["pipes"]["calls"] >= served
    status = tree(root)  # what `moltbot status` shows
    assert node(status, "store")["figures"]["pipe_in"] == served
    agents = node(status, "agents")["children"]
    assert node({"children": agents}, "agent-0")["figures"]["pipe_out"] >= served

    ray.get(child(ns, "store").crash.remote("kill"), timeout=30)  # a new one is started
    wait_for(lambda: info(ns, "store")["incarnation"] > store["incarnation"], what="a new store")
    assert await answer(ns, "two") == "[offline] you said: two"
    # the agent found the new store's pipe (the turn's write goes behind its reply)
    wait_for(lambda: info(ns, "store")["pipes"]["served"] >= 1, what="a write over the pipe")
    assert sock.exists()  # the new store serves again where the old one did
    records = await routing.call(ns, "store", "transcript_load", inbound("x").session_key)
    roles = [r["role"] for r in records if r["role"] != "meta"]
    assert roles == ["user", "assistant"] * 2


@pytest.mark.parametrize("started", [{ENABLED_ENV: "0"}], indirect=True)
async def test_with_pipes_off_every_call_goes_through_ray(started: tuple[Any, str, Path]) -> None:
    _root, ns, home = started
    assert await answer(ns, "hello") == "[offline] you said: hello"
    figures = info(ns, "store")["pipes"]
    assert figures == {"serving": False, "served": 0, "calls": 0}
    assert not (home / "run" / "pipes").exists()
