"""A child over its memory ceiling is restarted (OTP's ``max_heap_size``), on a real Ray.

The plugins pool gets ``max_memory_mb``; beside the example ``reminders`` plugin runs ``leaky``
(tests/plugins/fixtures/leaks.py), which keeps 8 MB more every 0.2 s in its sandboxed host
process. The supervisor measures each child's process tree when it pings it: the leaking child
is restarted each time it crosses the ceiling (an abnormal exit naming the ceiling, counted as
a restart), its neighbour is never touched, and a child under its ceiling reports its size.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
import ray

from actors.supervisor import Supervisor
from moltbot.config.schema import Config
from moltbot.plugins.manifest import source_digest
from moltbot.security.vault import Vault
from moltbot.supervision.spec import ChildSpec
from moltbot.supervision.tree import build_tree
from tests.actors.helpers import FAST, child, node, tree, wait_for
from tests.plugins.support import EXAMPLES, FIXTURES, ROOT

CEILING_MB = 320
LEAKY = f"{FIXTURES}.leaks"


def config() -> Config:
    return msgspec.convert(
        {
            "plugins": [
                {"name": "reminders", "module": "reminders_plugin", "capabilities": ["storage"]},
                {
                    "name": "leaky",
                    "module": LEAKY,
                    "capabilities": ["tools"],
                    "sha256": source_digest(LEAKY),
                    "config": {"mb": 8, "every_s": 0.2},
                },
            ],
            "supervision": {
                "plugins": {
                    "intensity": 100,
                    "period": 30.0,
                    "backoff": {"base_s": 0.05, "max_s": 0.5, "jitter": 0.1},
                    "max_memory_mb": CEILING_MB,
                },
                "ping_interval_s": 0.3,
                "ping_timeout_s": 3.0,
                "shutdown_s": 2.0,
                "ready_timeout_s": 60.0,
            },
        },
        Config,
    )


@pytest.fixture(scope="module")
def live(ray_cluster: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, str]]:
    home = tmp_path_factory.mktemp("home")
    Vault.create(home)
    specs = {c.id: c for c in build_tree(config())}
    gateway = ChildSpec(id="gateway", kind="worker", shutdown=2.0)
    ns = f"t-{uuid.uuid4().hex[:8]}"
    env = {"MOLTBOT_HOME": str(home), "PYTHONPATH": f"{EXAMPLES}{os.pathsep}{ROOT}"}
    root = Supervisor.options(  # type: ignore[attr-defined]
        name="moltbot", namespace=ns, num_cpus=0, runtime_env={"env_vars": env}
    ).remote(
        path="", flags=FAST, children=[specs["store"], gateway, specs["plugins"]], namespace=ns
    )
    try:
        ray.get(root.start_detached.remote())
        ray.get(root.ready.remote(), timeout=120)
        yield root, ns
    finally:
        try:
            ray.get(root.stop.remote(), timeout=60)
        finally:
            ray.kill(root)


def plugins(root: Any) -> dict[str, dict[str, Any]]:
    return {c["id"]: c for c in node(tree(root), "plugins")["children"]}


def test_the_tree_gives_each_pool_its_ceiling() -> None:
    specs = {c.id: c for c in build_tree(config())}
    kids = {c.id: c for c in specs["plugins"].args["children"]}
    assert kids["plugin:leaky"].max_memory_mb == CEILING_MB
    assert specs["store"].max_memory_mb == 1024  # the root's default
    # a pool supervisor runs inside the root's process: it has no process of its own to cap
    assert {c.max_memory_mb for c in build_tree(Config()) if c.id == "tools"} == {0}
    tools = next(c for c in build_tree(Config()) if c.id == "tools")
    assert {k.max_memory_mb for k in tools.args["children"]} == {4096}


def test_a_leaking_child_is_restarted_at_its_ceiling_and_its_neighbour_is_not(
    live: tuple[Any, str],
) -> None:
    root, ns = live
    wait_for(lambda: plugins(root)["plugin:leaky"]["restarts"] >= 2, 90, "two memory restarts")
    kids = plugins(root)
    assert kids["plugin:reminders"]["restarts"] == 0
    assert kids["plugin:reminders"]["state"] == "running"
    calm = kids["plugin:reminders"].get("memory")
    assert calm is not None and 0 < calm["mb"] < CEILING_MB and calm["max_mb"] == CEILING_MB

    sup = child(ns, "plugins")
    events = ray.get(sup.recent_events.remote(0), timeout=20)
    exits = [e for e in events if e["event"] == "exited" and e["child"].endswith("plugin:leaky")]
    assert len(exits) >= 2
    for e in exits:
        assert e["exit"] == "abnormal"
        assert f"over its ceiling of {CEILING_MB} MB" in e["reason"], e
        used = float(e["reason"].split("memory ", 1)[1].split(" MB", 1)[0])
        assert CEILING_MB < used < CEILING_MB + 200  # caught within a few pings of crossing
    restarts = [e for e in events if e["event"] == "restarting" and "plugin:leaky" in e["child"]]
    assert len(restarts) >= 2
    assert node(tree(root), "store")["restarts"] == 0
