"""The tree's environment reaches every actor without a Ray ``runtime_env`` (issue 21: a
worker given one is started through Ray's ``setup_worker.py``, a second Python process that
imports ``ray`` before it execs the worker, 0.3 s of CPU at every start and restart). The root
gets it as an argument (``control.tree_env``), sets it in its process and hands it down with
each child's arguments: through a pool inside the root's process to a child in a process of
its own, and again to that child's next incarnation after a crash."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import ray

from actors.control import tree_env
from moltbot.supervision.spec import ChildSpec
from tests.actors.helpers import (
    FAST,
    child,
    incarnation_of,
    kill,
    start_root,
    stop_root,
    supervisor,
)

pytestmark = pytest.mark.usefixtures("ray_cluster")


def _seen(self: Any) -> dict[str, Any]:  # runs inside the actor (``__ray_call__``)
    from moltbot.deferred_imports import is_deferred

    return {
        "pid": os.getpid(),
        "home": os.environ.get("MOLTBOT_HOME"),
        "mark": os.environ.get("MB_TREE_ENV_MARK"),
        "runtime_env": dict(ray.get_runtime_context().runtime_env),
        "argv": list(sys.argv),
        "deferred": is_deferred("jsonschema"),
    }


def _look(ns: str, path: str) -> dict[str, Any]:
    return dict(ray.get(child(ns, path).__ray_call__.remote(_seen), timeout=60))


def test_the_tree_env_reaches_a_child_process_and_its_restart(tmp_path: Path) -> None:
    env = {**tree_env(tmp_path), "MB_TREE_ENV_MARK": "handed down"}
    kids = [ChildSpec(id="w", kind="worker", shutdown=3.0, ready_timeout=60.0)]
    root, ns = start_root(FAST, [supervisor("pool", kids)], env=env)
    try:
        first = _look(ns, "pool/w")
        assert first["pid"] != int(ray.get(root.ready.remote(), timeout=20)["pid"])
        assert first["home"] == str(tmp_path)
        assert first["mark"] == "handed down"
        # started straight from the raylet: no runtime_env, so no setup_worker step (which
        # leaves the runtime env's hash on the worker's command line)
        assert first["runtime_env"] == {}
        assert not any(a.startswith("--serialized-runtime-env") for a in first["argv"])
        hashes = [a for a in first["argv"] if a.startswith("--runtime-env-hash=")]
        assert hashes in ([], ["--runtime-env-hash=0"]), hashes
        # the boot still works: it comes from the Ray start's environment now
        assert first["deferred"] is True

        kill(ns, "pool/w")
        deadline = time.monotonic() + 60
        while incarnation_of(ns, "pool/w") < 2:
            assert time.monotonic() < deadline, "the worker was not restarted"
            time.sleep(0.1)
        again = _look(ns, "pool/w")
        assert again["pid"] != first["pid"]
        assert (again["home"], again["mark"]) == (str(tmp_path), "handed down")
        assert again["runtime_env"] == {}
    finally:
        stop_root(root)
