"""The supervisor on a real local Ray: crashes by raise, os._exit, ray.kill and hangs."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import msgspec
import pytest
import ray

from moltbot.supervision.spec import Backoff, ChildSpec, Restart, Strategy, SupervisorFlags
from tests.actors.helpers import child, node, pid_of, start_root, stop_root, tree, wait_for

pytestmark = pytest.mark.usefixtures("ray_cluster")

FAST = Backoff(base_s=0.05, max_s=0.5, jitter=0.1)


def flags(strategy: Strategy = Strategy.ONE_FOR_ONE, intensity: int = 10) -> SupervisorFlags:
    return SupervisorFlags(
        strategy=strategy,
        intensity=intensity,
        period=30.0,
        backoff=FAST,
        ping_interval_s=0.3,
        ping_timeout_s=2.0,
    )


def workers(*ids: str, restart: Restart = Restart.PERMANENT, **args: object) -> list[ChildSpec]:
    return [
        ChildSpec(id=i, kind="worker", restart=restart, shutdown=2.0, args=dict(args)) for i in ids
    ]


def restarted(root: object, cid: str, times: int = 1) -> bool:
    n = node(tree(root), cid)
    return n["restarts"] >= times and n["state"] == "running"


@pytest.mark.parametrize("how", ["raise", "exit", "ray_kill"])
def test_one_for_one_restarts_only_the_crashed_child_and_siblings_keep_answering(how: str) -> None:
    root, ns = start_root(flags(), workers("a", "b", "c"))
    try:
        before = {c: pid_of(ns, c) for c in "abc"}
        answers: dict[str, int] = {"a": 0, "c": 0}
        failures: list[str] = []
        stop = threading.Event()

        def hammer() -> None:  # siblings must answer all through the crash and the restart
            while not stop.is_set():
                for cid in ("a", "c"):
                    try:
                        assert ray.get(child(ns, cid).echo.remote(cid), timeout=5) == cid
                        answers[cid] += 1
                    except Exception as exc:
                        failures.append(f"{cid}: {type(exc).__name__}")

        t = threading.Thread(target=hammer)
        t.start()
        victim = child(ns, "b")
        if how == "ray_kill":
            ray.kill(victim, no_restart=True)
        else:
            victim.crash.remote(how)
        wait_for(lambda: restarted(root, "b"), what="b restarted")
        stop.set()
        t.join()
        assert failures == []
        assert answers["a"] > 0 and answers["c"] > 0
        assert pid_of(ns, "b") != before["b"]
        assert pid_of(ns, "a") == before["a"] and pid_of(ns, "c") == before["c"]
        incarnations = {c: ray.get(child(ns, c).ready.remote())["incarnation"] for c in "abc"}
        assert incarnations == {"a": 1, "b": 2, "c": 1}  # b knows it is a restart
        status = tree(root)
        assert node(status, "a")["restarts"] == 0 and node(status, "c")["restarts"] == 0
        assert node(status, "b")["last_exit"] in {"raised CrashRequested", "process died"}
    finally:
        stop_root(root)


def test_one_for_all_restarts_every_child() -> None:
    root, ns = start_root(flags(Strategy.ONE_FOR_ALL), workers("a", "b", "c"))
    try:
        before = {c: pid_of(ns, c) for c in "abc"}
        child(ns, "b").crash.remote("raise")
        wait_for(lambda: all(restarted(root, c) for c in "abc"), what="all restarted")
        after = {c: pid_of(ns, c) for c in "abc"}
        assert all(after[c] != before[c] for c in "abc")
    finally:
        stop_root(root)


def test_rest_for_one_restarts_the_child_and_those_after_it() -> None:
    root, ns = start_root(flags(Strategy.REST_FOR_ONE), workers("a", "b", "c"))
    try:
        before = {c: pid_of(ns, c) for c in "abc"}
        child(ns, "b").crash.remote("exit")
        wait_for(lambda: restarted(root, "b") and restarted(root, "c"), what="b, c restarted")
        assert pid_of(ns, "a") == before["a"]
        assert pid_of(ns, "b") != before["b"] and pid_of(ns, "c") != before["c"]
        assert node(tree(root), "a")["restarts"] == 0
    finally:
        stop_root(root)


def test_intensity_exceeded_escalates_and_stops_the_children() -> None:
    root, ns = start_root(flags(intensity=1), workers("a", "b"))
    try:
        child(ns, "a").crash.remote("raise")
        wait_for(lambda: restarted(root, "a"), what="first restart")
        child(ns, "a").crash.remote("raise")
        outcome = ray.get(root.wait.remote(), timeout=30)
        assert outcome.startswith("failed: EscalationError")
        assert "intensity" in outcome
        with pytest.raises(ValueError):
            ray.get_actor("moltbot.b", namespace=ns)  # siblings were stopped too
    finally:
        ray.kill(root)


def test_stuck_child_is_detected_by_ping_and_restarted() -> None:
    root, ns = start_root(flags(), workers("a", "b"))
    try:
        before = pid_of(ns, "b")
        child(ns, "b").crash.remote("hang")  # blocks b's event loop; ping still answers
        wait_for(lambda: restarted(root, "b"), timeout=30, what="stuck b restarted")
        assert pid_of(ns, "b") != before
        assert node(tree(root), "b")["last_exit"].startswith("stuck")
    finally:
        stop_root(root)


def test_transient_normal_exit_is_not_restarted_permanent_is() -> None:
    children = [
        *workers("t", restart=Restart.TRANSIENT, exit_after=0.3),
        *workers("p", restart=Restart.PERMANENT, exit_after=0.3),
        *workers("tmp", restart=Restart.TEMPORARY, exit_after=0.3),
    ]
    root, _ns = start_root(flags(intensity=100), children)
    try:
        wait_for(lambda: node(tree(root), "t")["state"] == "stopped", what="t stopped")
        wait_for(lambda: node(tree(root), "p")["restarts"] >= 1, what="p restarted")
        wait_for(lambda: "tmp" not in [c["id"] for c in tree(root)["children"]], what="tmp gone")
        assert node(tree(root), "t")["restarts"] == 0
    finally:
        stop_root(root)


def test_nested_supervisor_handles_its_own_children_and_stops_in_reverse_order() -> None:
    inner = ChildSpec(
        id="channels",
        kind="supervisor",
        child_type="supervisor",
        shutdown=20.0,
        args={"flags": flags(), "children": workers("x", "y")},
    )
    root, ns = start_root(flags(), [*workers("store"), inner, *workers("gateway")])
    try:
        status = tree(root)
        assert [c["id"] for c in status["children"]] == ["store", "channels", "gateway"]
        assert [c["name"] for c in node(status, "channels")["children"]] == [
            "moltbot.channels.x",
            "moltbot.channels.y",
        ]
        store_pid = pid_of(ns, "store")
        child(ns, "channels/x").crash.remote("raise")
        wait_for(
            lambda: node(tree(root), "channels")["children"][0]["restarts"] == 1, what="x restarted"
        )
        assert node(tree(root), "channels")["restarts"] == 0
        assert pid_of(ns, "store") == store_pid
        started = time.monotonic()
        ray.get(root.stop.remote(), timeout=60)
        assert time.monotonic() - started < 30
        events = ray.get(root.recent_events.remote(0))
        stops = [e["child"] for e in events if e["event"] == "stopped"]
        assert stops == ["gateway", "channels", "store"]
    finally:
        ray.kill(root)


def test_child_that_fails_in_setup_fails_the_start() -> None:
    bad = ChildSpec(
        id="bad",
        kind="supervisor",
        ready_timeout=5.0,
        args={"flags": flags(), "children": [ChildSpec(id="z", kind="nope")]},
    )
    with pytest.raises(Exception) as info:
        start_root(flags(), [bad])
    assert "did not start" in str(info.value) or "ChildStartError" in str(info.value)


@pytest.mark.parametrize("concurrent", [False, True])
def test_pool_supervisor_starts_its_children_together_others_in_order(
    concurrent: bool, tmp_path: Path
) -> None:
    """Each setup waits for all three to have begun, for at most 1 s (in order) or 20 s
    (together: a loaded machine may take over a second to start a sibling's process)."""
    base = flags()
    pool = SupervisorFlags(**{**msgspec.structs.asdict(base), "concurrent_start": concurrent})
    ids = ("a", "b", "c")
    wait = 20.0 if concurrent else 1.0
    root, ns = start_root(
        pool, workers(*ids, setup_s=wait, meet=str(tmp_path), meet_count=len(ids))
    )
    try:
        spans = [ray.get(child(ns, i).ready.remote(), timeout=30)["setup_span"] for i in ids]
        began, ended = [s[0] for s in spans], [s[1] for s in spans]
        if concurrent:  # every setup ran while the others did
            assert max(began) < min(ended)
        else:  # each began only after the one before it was ready
            assert all(began[k + 1] >= ended[k] for k in range(len(ids) - 1))
        assert [node(tree(root), i)["state"] for i in ids] == ["running"] * 3
    finally:
        stop_root(root)


def test_a_child_that_keeps_failing_to_start_backs_off_longer_each_time() -> None:
    """Backoff counts restarts in a row: a failed start is no uptime, so the count grows
    (it used to reset because the uptime was taken from the last good start)."""
    slow = Backoff(base_s=0.05, max_s=0.4, jitter=0.0)
    # a short period: the failed starts soon lie further back than it from the last good start
    f = msgspec.structs.replace(flags(intensity=50), backoff=slow, period=3.0)
    root, ns = start_root(f, workers("a", "b", fail_from=2))
    try:
        ray.kill(child(ns, "b"), no_restart=True)

        def tries() -> list[dict[str, object]]:
            events = ray.get(root.recent_events.remote(0), timeout=20)
            return [e for e in events if e["event"] == "restarting" and e["child"] == "b"]

        wait_for(lambda: len(tries()) >= 5, timeout=90, what="five restart attempts of b")
        got = tries()[:5]
        assert [e["consecutive"] for e in got] == [1, 2, 3, 4, 5]
        assert [e["backoff"] for e in got] == [0.05, 0.1, 0.2, 0.4, 0.4]
        assert node(tree(root), "b")["last_exit"] == "start failed"
        assert node(tree(root), "a")["restarts"] == 0
    finally:
        stop_root(root)
