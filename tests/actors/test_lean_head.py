"""The head ``moltbot up`` starts runs only the Ray processes the tree uses: no idle workers
started ahead of need, no log monitor, no autoscaler monitor; the dashboard still answers; the
actors are not niced below Ray's own processes."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import msgspec
import psutil
import pytest
import ray

from actors import control, ray_token
from moltbot.cluster.head import Head
from moltbot.config.schema import Config
from moltbot.deferred_imports import DEFERRED
from moltbot.security.vault import PASSPHRASE_ENV


@ray.remote(num_cpus=0)
class _Probe:
    def pid(self) -> int:
        import os

        return os.getpid()

    def nice(self) -> int:
        import os

        return os.getpriority(os.PRIO_PROCESS, 0)

    def deferred(self) -> list[str]:
        from moltbot.deferred_imports import still_deferred

        return still_deferred()


@pytest.fixture
def head(tmp_path: Path) -> Iterator[Head]:
    home = tmp_path / "home"
    home.mkdir()
    started = control.start_head(Config(), home)
    try:
        yield started
    finally:
        control.stop_head(started, home)


def _commands(head: Head) -> list[str]:
    out = []
    for proc in control.head_processes(head):
        try:
            out.append(proc.name() + " " + " ".join(proc.cmdline()))
        except psutil.Error:
            continue
    return out


def test_head_starts_only_what_the_tree_uses(head: Head) -> None:
    control.connect(head)
    probe = _Probe.remote()  # type: ignore[attr-defined]
    actor_pid = ray.get(probe.pid.remote(), timeout=60)  # a driver connected, an actor started
    time.sleep(3)  # prestarted workers (if any) would be up by now
    cmds = _commands(head)
    assert any("gcs_server" in c for c in cmds) and any("raylet" in c for c in cmds)
    assert not [c for c in cmds if "log_monitor.py" in c]
    assert not [c for c in cmds if "autoscaler/_private/monitor.py" in c]
    workers = [p for p in control.head_processes(head) if p.name().startswith("ray::")]
    idle = [p.pid for p in workers if p.name() == "ray::IDLE" and p.pid != actor_pid]
    assert idle == [], "idle workers were started ahead of need"
    assert any(p.name() == "ray::DashboardAgent" for p in workers)
    # the tree's actors run at the priority of Ray's own processes (Ray's default is +15)
    raylet = next(p for p in control.head_processes(head) if p.name() == "raylet")
    assert ray.get(probe.nice.remote(), timeout=60) == raylet.nice()
    # the boot comes with the head's environment: an actor without a runtime_env (as the
    # tree's, spared Ray's setup_worker step) defers what it never uses
    assert ray.get(probe.deferred.remote(), timeout=60) == sorted(DEFERRED)
    token = ray_token.token_path().read_text().strip()  # the head's token opens the dashboard
    req = urllib.request.Request(
        head.dashboard + "/api/version", headers={"Authorization": f"Bearer {token}"}
    )
    with urllib.request.urlopen(req, timeout=10) as r:
        assert r.status == 200 and b"ray_version" in r.read()


def test_the_root_needs_a_runtime_env_only_on_a_cluster_up_did_not_start(tmp_path: Path) -> None:
    assert control._runtime_env(Config()) == {}
    base = Config()
    other = msgspec.structs.replace(
        base, cluster=msgspec.structs.replace(base.cluster, address="10.0.0.2:6379")
    )
    env = control._runtime_env(other)["runtime_env"]["env_vars"]
    assert env["PYTHONPATH"].split(":")[0].endswith("actors/boot")
    handed = control.tree_env(tmp_path)
    assert handed["MOLTBOT_HOME"] == str(tmp_path)
    assert PASSPHRASE_ENV not in handed and "PYTHONPATH" not in handed
