"""Small helpers for tests that run a real supervision tree on the session's Ray."""

from __future__ import annotations

import asyncio
import json
import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import ray

from actors import control
from actors.reaper import lingering
from actors.registry import lookup
from actors.supervisor import Supervisor
from moltbot.config.schema import Config
from moltbot.messages import InboundMessage
from moltbot.supervision.spec import Backoff, ChildSpec, ChildType, SupervisorFlags

FAST = SupervisorFlags(
    intensity=10,
    period=30.0,
    backoff=Backoff(base_s=0.05, max_s=0.5, jitter=0.1),
    ping_interval_s=0.5,
    ping_timeout_s=5.0,
)


def start_root(
    flags: SupervisorFlags,
    children: list[ChildSpec],
    env: dict[str, str] | None = None,
    ready_timeout: float = 60.0,
) -> tuple[Any, str]:
    ns = f"t-{uuid.uuid4().hex[:8]}"
    opts: dict[str, Any] = {"name": "moltbot", "namespace": ns, "num_cpus": 0}
    root = Supervisor.options(**opts).remote(  # type: ignore[attr-defined]
        path="",
        flags=flags,
        children=children,
        namespace=ns,
        env=env,  # as ``control.boot``
    )
    ray.get(root.start_detached.remote())
    ray.get(root.ready.remote(), timeout=ready_timeout)
    return root, ns


def worker(cid: str, kind: str, cfg: Config, **args: Any) -> ChildSpec:
    """A worker child of ``kind`` with ``cfg`` (and ``args``) and short test timeouts."""
    return ChildSpec(
        id=cid, kind=kind, shutdown=3.0, args={"config": cfg, **args}, ready_timeout=60.0
    )


def as_built(made: ChildSpec, cfg: Config) -> ChildSpec:
    """A child as ``build_tree`` made it (on demand, its restart, its args), with the tests'
    short timeouts."""
    return msgspec.structs.replace(
        made, args={**made.args, "config": cfg}, shutdown=3.0, ready_timeout=60.0, resources={}
    )


def supervisor(cid: str, kids: list[ChildSpec], flags: SupervisorFlags = FAST) -> ChildSpec:
    return ChildSpec(
        id=cid,
        kind="supervisor",
        child_type=ChildType.SUPERVISOR,
        shutdown=20.0,
        ready_timeout=120.0,
        args={"flags": flags, "children": kids},
    )


def child(ns: str, path: str, wait_s: float = 10.0) -> Any:
    """The actor at ``path`` (a supervisor: its handle through the root, ``Inside``); while
    its supervisor is (re)creating it, the name can be missing for a moment (on a busy machine
    a restart takes a while): look again for ``wait_s``."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return lookup(path, ns)
        except ValueError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def kill(ns: str, path: str) -> None:
    """End the child at ``path`` now, as ``moltbot kill`` does: ``ray.kill`` for an actor of
    its own; a child inside the root's process (a pool, the store, the scheduler) has its run
    cancelled there (its process is the root's, which nothing but ``down`` ends)."""
    child(ns, path)  # there (a restart in progress can hide its name for a moment)
    control.kill(ns, path, "kill")


def incarnation_of(ns: str, path: str) -> int:
    return int(ray.get(child(ns, path).ready.remote(), timeout=20)["incarnation"])


def pid_of(ns: str, path: str) -> int:
    return int(ray.get(child(ns, path).ready.remote(), timeout=20)["pid"])


def tree(root: Any) -> dict[str, Any]:
    return dict(ray.get(root.status.remote(), timeout=20))


def node(status: dict[str, Any], cid: str) -> dict[str, Any]:
    for c in status["children"]:
        if c["id"] == cid:
            return dict(c)
    raise KeyError(cid)


def child_node(root: Any, path: str) -> dict[str, Any]:
    """The status entry of the child at ``path`` (``tools/sandbox-0``) in the root's tree."""
    status = tree(root)
    for part in path.split("/"):
        status = node(status, part)
    return status


def asleep(root: Any, ns: str, path: str) -> bool:
    """An on-demand child with no process now: no actor by its name, and its state idle."""
    try:
        lookup(path, ns)
    except ValueError:
        return child_node(root, path)["state"] == "idle"
    return False


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


def home_with_workspace(base: Path) -> tuple[Path, Path]:
    """A ``MOLTBOT_HOME`` under ``base`` and its workspace, whose operator folder (the one the
    gateway's chats use) holds ``hello.txt``."""
    home = base / "home"
    workspace = home / "workspace"
    workspace.mkdir(parents=True)
    (workspace / "operator").mkdir()
    (workspace / "operator" / "hello.txt").write_text("hi there\n")
    return home, workspace


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def request(ws: Any, rid: str, method: str, params: dict[str, Any]) -> dict[str, Any]:
    """Send one gateway request over ``ws`` and return its response (events are skipped)."""
    await ws.send(json.dumps({"type": "req", "id": rid, "method": method, "params": params}))
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 20))
        if frame["type"] == "res" and frame["id"] == rid:
            return dict(frame)


def inbound(text: str, sender: str = "alice", mid: str | None = None, **kw: Any) -> InboundMessage:
    """A Telegram DM to chat 1 with a fresh id unless `mid` is given."""
    return InboundMessage(
        id=mid or f"telegram:main:1:{uuid.uuid4().hex[:8]}",
        channel=kw.pop("channel", "telegram"),
        account=kw.pop("account", "main"),
        chat_id="1",
        sender_id=sender,
        text=text,
        **kw,
    )


def killed(handle: Any) -> None:
    """``ray.kill`` and wait until the actor is gone: what is sent next finds no one (a message
    the dying actor still took and answered is the kill-between-send-and-mark window)."""
    info = ray.get(handle.ready.remote(), timeout=30)
    ray.kill(handle, no_restart=True)

    def gone() -> bool:
        try:
            ray.get(handle.ping.remote(), timeout=2)
        except ray.exceptions.RayActorError:
            # Ray calls an actor dead before its process has exited: until it has, it may still
            # take a message from its platform connection (and answer it in the window)
            return lingering(int(info["pid"]), float(info["created"])) is None
        except ray.exceptions.GetTimeoutError:
            return False  # dying, not yet dead: ask again
        return False

    wait_for(gone, 30, "the old actor's process gone")
