"""Warm standbys (``supervision.<pool>.standby``) on a real local Ray: a restart promotes the
spare process (same pid, its own Ray name, found by path), a new spare follows, a dead spare
falls back to a cold start, and stopping the tree leaves no spare behind."""

from __future__ import annotations

import time

import msgspec
import pytest
import ray

from actors.registry import lookup
from actors.standby import STANDBY_DELAY_S
from moltbot.supervision.spec import ChildSpec
from tests.actors.helpers import FAST, node, start_root, stop_root, tree, wait_for

pytestmark = [pytest.mark.usefixtures("ray_cluster"), pytest.mark.timeout(180)]

STANDBY = msgspec.structs.replace(FAST, standby=True, period=2.0)


def kids(*ids: str) -> list[ChildSpec]:
    return [ChildSpec(id=i, kind="worker", shutdown=2.0) for i in ids]


def spare_of(root: object, ns: str, cid: str) -> tuple[str, int]:
    wait_for(lambda: node(tree(root), cid).get("standby") == "warm", what=f"{cid} spare warm")
    name = node(tree(root), cid)["standby_name"]
    return name, int(ray.get(ray.get_actor(name, namespace=ns).warm.remote(), timeout=20)["pid"])


def pid_by_path(ns: str, path: str) -> int:
    return int(ray.get(lookup(path, ns).ready.remote(), timeout=20)["pid"])


def restarted(root: object, cid: str, times: int) -> bool:
    n = node(tree(root), cid)
    return n["restarts"] >= times and n["state"] == "running"


def test_a_restart_promotes_the_warm_spare_and_a_new_spare_follows() -> None:
    root, ns = start_root(STANDBY, kids("a", "b"))
    try:
        name, spare_pid = spare_of(root, ns, "b")
        assert name == "moltbot.b@" + name.rsplit("@", 1)[1]
        first = pid_by_path(ns, "b")
        assert spare_pid != first
        ray.kill(lookup("b", ns), no_restart=True)
        wait_for(lambda: restarted(root, "b", 1), what="b restarted")
        status = node(tree(root), "b")
        assert status["name"] == "moltbot.b"  # the path's name stays the identity shown
        assert status["ray_name"] == name  # ... while the spare's process runs it
        assert pid_by_path(ns, "b") == spare_pid  # promoted: no new process was started
        info = ray.get(lookup("b", ns).ready.remote(), timeout=20)
        assert info["incarnation"] == 2
        assert ray.get(lookup("b", ns).echo.remote("hi"), timeout=20) == "hi"
        # a new spare is made for the next crash, and it is promoted in turn
        name2, spare2 = spare_of(root, ns, "b")
        assert name2 != name and spare2 not in (first, spare_pid)
        ray.kill(lookup("b", ns), no_restart=True)
        wait_for(lambda: restarted(root, "b", 2), what="b restarted again")
        assert pid_by_path(ns, "b") == spare2
        assert node(tree(root), "a")["restarts"] == 0
        events = ray.get(root.recent_events.remote(), timeout=20)
        assert [e["standby"] for e in events if e["event"] == "promoted"] == [name, name2]
    finally:
        stop_root(root)
    for leftover in ("moltbot.a", "moltbot.b", name, name2):  # no spare outlives its tree
        wait_for(lambda n=leftover: _gone(n, ns), what=f"{leftover} gone")


def test_a_dead_spare_falls_back_to_a_cold_start_under_the_paths_own_name() -> None:
    root, ns = start_root(STANDBY, kids("b"))
    try:
        _, spare_pid = spare_of(root, ns, "b")
        ray.kill(lookup("b", ns), no_restart=True)  # promote it once: the alias is in use
        wait_for(lambda: restarted(root, "b", 1), what="b restarted")
        assert pid_by_path(ns, "b") == spare_pid
        name2, _ = spare_of(root, ns, "b")
        ray.kill(ray.get_actor(name2, namespace=ns), no_restart=True)  # the spare dies first
        wait_for(lambda: node(tree(root), "b").get("standby") == "failed", what="spare failed")
        ray.kill(lookup("b", ns), no_restart=True)
        wait_for(lambda: restarted(root, "b", 2), what="b restarted cold")
        status = node(tree(root), "b")
        assert "ray_name" not in status  # a new process under moltbot.b again
        cold = int(ray.get(ray.get_actor("moltbot.b", namespace=ns).ready.remote())["pid"])
        assert pid_by_path(ns, "b") == cold  # the old alias no longer misleads lookups
        assert cold != spare_pid
    finally:
        stop_root(root)


def test_without_standby_no_spare_is_made() -> None:
    root, ns = start_root(msgspec.structs.replace(STANDBY, standby=False), kids("b"))
    try:
        time.sleep(STANDBY.period + STANDBY_DELAY_S + 2.0)  # when a spare would have been made
        ray.kill(lookup("b", ns), no_restart=True)
        wait_for(lambda: restarted(root, "b", 1), what="b restarted")
        time.sleep(STANDBY.period + STANDBY_DELAY_S + 2.0)
        assert "standby" not in node(tree(root), "b")
        named = ray.util.list_named_actors(all_namespaces=True)
        assert [a for a in named if a["namespace"] == ns and "@" in a["name"]] == []
        assert any(a["namespace"] == ns and a["name"] == "moltbot.b" for a in named)
    finally:
        stop_root(root)


def _gone(name: str, ns: str) -> bool:
    try:
        ray.get_actor(name, namespace=ns)
    except ValueError:
        return True
    return False
