"""Pool supervisors run inside the root's process (``actors.supervisor_local``), on a real local
Ray: no actor of their own, reached by path through the root, and however a pool ends
(escalating, killed, stuck) its worker actors end with it and the root's restart rebuilds it."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest
import ray

from actors import control, routing
from actors.registry import Inside, lookup
from moltbot.errors import NotRunning
from moltbot.supervision.spec import ChildSpec
from tests.actors.helpers import (
    FAST,
    child,
    node,
    pid_of,
    start_root,
    stop_root,
    supervisor,
    tree,
    wait_for,
)

pytestmark = [pytest.mark.usefixtures("ray_cluster"), pytest.mark.timeout(240)]

QUICK = msgspec.structs.replace(FAST, ping_interval_s=0.3, ping_timeout_s=2.0)


def workers(*ids: str) -> list[ChildSpec]:
    return [ChildSpec(id=i, kind="worker", shutdown=2.0) for i in ids]


def named(ns: str) -> set[str]:
    """The live named actors of the namespace (Ray's own list, from the GCS)."""
    return {
        a["name"] for a in ray.util.list_named_actors(all_namespaces=True) if a["namespace"] == ns
    }


def dead(handle: Any) -> bool:
    try:
        ray.get(handle.ready.remote(), timeout=10)
    except routing.ActorDied:
        return True
    return False


def pool_back(root: Any, times: int) -> bool:
    pool = node(tree(root), "pool")
    return (
        pool["restarts"] >= times
        and pool["state"] == "running"
        and all(c["state"] == "running" for c in pool["children"])
    )


def tree_of(pool_flags: Any = QUICK) -> tuple[Any, str]:
    return start_root(QUICK, [*workers("store"), supervisor("pool", workers("x", "y"), pool_flags)])


def test_a_pool_lives_in_the_roots_process_and_is_reached_through_the_root() -> None:
    root, ns = tree_of()
    try:
        root_pid = int(ray.get(root.ready.remote(), timeout=20)["pid"])
        # one process fewer: the pool has no actor, only the root and the workers have
        assert named(ns) == {"moltbot", "moltbot.store", "moltbot.pool.x", "moltbot.pool.y"}
        assert isinstance(lookup("pool", ns), Inside)
        assert pid_of(ns, "pool") == root_pid
        status = tree(root)
        assert node(status, "pool")["pid"] == root_pid
        assert node(status, "pool")["name"] == "moltbot.pool"
        workers_pids = {c["pid"] for c in node(status, "pool")["children"]}
        assert root_pid not in workers_pids and len(workers_pids) == 2
        # what the gateway, `moltbot status` and the CLI call on a pool, by path
        events = ray.get(child(ns, "pool").recent_events.remote(0), timeout=20)
        assert {e["child"] for e in events if e["event"] == "started"} == {"pool/x", "pool/y"}

        async def via_routing() -> Any:
            return await routing.call(ns, "pool", "spec_of", deadline_s=10)

        assert [s["id"] for s in asyncio.run(via_routing())] == ["x", "y"]
        assert control.actor_call(ns, "pool", "status")["name"] == "moltbot.pool"
        # a pool's own life is not reachable from outside, nor the root's internals
        for method in ("run", "_kill_all", "start_detached", "call_in", "kill"):
            with pytest.raises(ValueError, match="not called from outside"):
                ray.get(root.call_in.remote("pool", method), timeout=10)
        with pytest.raises(NotRunning):
            control.actor_call(ns, "nothing", "status")
    finally:
        stop_root(root)
    wait_for(lambda: named(ns) == set(), what="no actor left")  # the tree stopped: none left


def test_an_escalating_pool_takes_its_workers_down_and_the_root_rebuilds_it() -> None:
    root, ns = tree_of(msgspec.structs.replace(QUICK, intensity=1))
    try:
        old = {cid: child(ns, f"pool/{cid}") for cid in ("x", "y")}
        old_pids = {cid: pid_of(ns, f"pool/{cid}") for cid in ("x", "y")}
        store_pid = pid_of(ns, "store")
        old["x"].crash.remote("raise")
        wait_for(
            lambda: (
                node(node(tree(root), "pool"), "x")["restarts"] == 1
                and node(node(tree(root), "pool"), "x")["state"] == "running"
            ),
            what="x restarted by the pool",
        )
        old["x"] = child(ns, "pool/x")  # its second incarnation
        old["x"].crash.remote("raise")  # the pool's second restart in its period: escalation
        wait_for(lambda: pool_back(root, 1), timeout=90, what="the pool restarted by the root")
        # the workers of the pool that escalated are gone, not orphaned
        assert dead(old["x"]) and dead(old["y"])
        events = ray.get(root.recent_events.remote(0), timeout=20)
        exits = [e for e in events if e["event"] == "exited" and e["child"] == "pool"]
        assert len(exits) == 1 and "intensity" in exits[0]["reason"]
        assert [e["event"] for e in events if e["child"] == "pool"] == [
            "started",
            "exited",
            "restarting",
            "started",
            "restarted",
        ]
        # the rebuilt pool: new workers under the same names, a fresh start count
        new_pids = {cid: pid_of(ns, f"pool/{cid}") for cid in ("x", "y")}
        assert all(new_pids[c] != old_pids[c] for c in new_pids)
        assert [c["restarts"] for c in node(tree(root), "pool")["children"]] == [0, 0]
        assert named(ns) == {"moltbot", "moltbot.store", "moltbot.pool.x", "moltbot.pool.y"}
        assert pid_of(ns, "store") == store_pid and node(tree(root), "store")["restarts"] == 0
    finally:
        stop_root(root)


def test_a_killed_or_stuck_pool_ends_alone_and_its_workers_with_it() -> None:
    root, ns = tree_of()
    try:
        root_pid = int(ray.get(root.ready.remote(), timeout=20)["pid"])
        before = {cid: child(ns, f"pool/{cid}") for cid in ("x", "y")}
        assert control.kill(ns, "pool", "kill") == "moltbot.pool"
        wait_for(lambda: pool_back(root, 1), timeout=90, what="killed pool back")
        assert node(tree(root), "pool")["last_exit"] == "killed"
        assert all(dead(h) for h in before.values())

        before = {cid: child(ns, f"pool/{cid}") for cid in ("x", "y")}
        control.kill(ns, "pool", "hang")  # stops answering pings; the root's loop does not
        wait_for(lambda: pool_back(root, 2), timeout=90, what="stuck pool back")
        assert node(tree(root), "pool")["last_exit"] == "no answer to ping"
        assert all(dead(h) for h in before.values())
        # `exit` of a pool must not end the root's process, which runs it
        control.kill(ns, "pool", "exit")
        wait_for(lambda: pool_back(root, 3), timeout=90, what="exited pool back")
        assert int(ray.get(root.ready.remote(), timeout=20)["pid"]) == root_pid
        assert node(tree(root), "store")["restarts"] == 0
    finally:
        stop_root(root)
