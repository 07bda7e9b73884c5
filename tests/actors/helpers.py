"""Small helpers for tests that run a real supervision tree on the session's Ray."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import ray

from actors.supervisor import Supervisor
from moltbot.supervision.spec import ChildSpec, SupervisorFlags


def start_root(
    flags: SupervisorFlags, children: list[ChildSpec], env: dict[str, str] | None = None
) -> tuple[Any, str]:
    ns = f"t-{uuid.uuid4().hex[:8]}"
    opts: dict[str, Any] = {"name": "moltbot", "namespace": ns, "num_cpus": 0}
    if env:
        opts["runtime_env"] = {"env_vars": env}
    root = Supervisor.options(**opts).remote(
        path="", flags=flags, children=children, namespace=ns
    )
    ray.get(root.start_detached.remote())
    ray.get(root.ready.remote(), timeout=60)
    return root, ns


def child(ns: str, path: str) -> Any:
    return ray.get_actor("moltbot." + path.replace("/", "."), namespace=ns)


def pid_of(ns: str, path: str) -> int:
    return int(ray.get(child(ns, path).ready.remote(), timeout=20)["pid"])


def tree(root: Any) -> dict[str, Any]:
    return dict(ray.get(root.status.remote(), timeout=20))


def node(status: dict[str, Any], cid: str) -> dict[str, Any]:
    for c in status["children"]:
        if c["id"] == cid:
            return dict(c)
    raise KeyError(cid)


def wait_for(cond: Callable[[], bool], timeout: float = 30.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if cond():
                return
        except Exception:  # the actor may be mid-restart
            pass
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def stop_root(root: Any) -> None:
    try:
        ray.get(root.stop.remote(), timeout=60)
    finally:
        ray.kill(root)
