"""A real home-lab cluster on one machine: two "hosts" are two network namespaces joined by a
veth pair (head 10.77.0.1, worker 10.77.0.2, each with its own HOME and MOLTBOT_HOME), and
everything goes through the real ``moltbot`` command run with ``ip netns exec``:

head: init, config with ``cluster.head_ip`` and ``tools/*`` pinned to ``sandbox_box``, up
--detach (a fresh HOME: it creates the Ray token and the cluster's TLS CA) → the sandbox is
``waiting``; worker: a join with only the token is refused (the head wants a certificate of its
cluster); head: ``node invite`` → worker: ``node join --invite`` → the sandbox runs on the
worker's node (its process is in the worker's namespace), the rest untouched on the head; from
the worker's namespace the head's Ray port refuses plaintext gRPC, TLS without a client
certificate and a certificate of another CA, and serves the invite's → ``node leave`` → nothing
is left on the worker and the sandbox waits again; head: ``down`` → no process of either host
is left.

Needs root and iproute2 (``.ci/run`` installs it).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[2]
MOLTBOT = [sys.executable, "-m", "moltbot.cli.main"]
IP = shutil.which("ip") or "/usr/sbin/ip"
HEAD_IP, WORKER_IP, PREFIX = "10.77.0.1", "10.77.0.2", 24
PIN = "sandbox_box"
SANDBOX = "moltbot.tools.sandbox-0"
ON_HEAD = ("moltbot.store", "moltbot.gateway", "moltbot.agents.agent-0")


def ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([IP, *args], capture_output=True, text=True, timeout=30)


@dataclass
class Host:
    """One fake machine: a network namespace, an address, its own HOME and MOLTBOT_HOME."""

    ns: str
    addr: str
    root: Path

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def mb(self) -> Path:
        return self.root / "mb"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_AUTH_TOKEN")}
        env.update(HOME=str(self.home), MOLTBOT_HOME=str(self.mb), PYTHONPATH=str(ROOT))
        return env

    def run(self, *args: str, timeout: float = 150) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [IP, "netns", "exec", self.ns, *MOLTBOT, *args],
            env=self.env(),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def python(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [IP, "netns", "exec", self.ns, sys.executable, *args],
            env=self.env(),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def pids(self) -> list[int]:
        """Every process in this host's network namespace."""
        out = ip("netns", "pids", self.ns)
        return [int(p) for p in out.stdout.split()] if out.returncode == 0 else []

    def netns_inode(self) -> int:
        return os.stat(f"/run/netns/{self.ns}").st_ino

    def logs(self) -> str:
        """The tails of this host's moltbot-side Ray logs (for failure messages)."""
        out = []
        for log in sorted((self.mb / "run").rglob("*.log")):
            out.append(f"--- {log}\n{log.read_text(errors='replace')[-1500:]}")
        return "\n".join(out)


@dataclass
class Lab:
    head: Host
    worker: Host
    temp_dirs: set[str] = field(default_factory=set)  # Ray's temp dirs of both hosts

    def logs(self) -> str:
        where = f"\n(Ray's logs: {self.head.root.parent / 'ray'} after the test)"
        return self.head.logs() + "\n" + self.worker.logs() + where

    def stray(self) -> list[int]:
        """Processes of either host: in their namespaces, or naming their Ray temp dirs."""
        pids = set(self.head.pids()) | set(self.worker.pids())
        for proc in psutil.process_iter(["pid", "cmdline"]):
            with contextlib.suppress(psutil.Error):
                cmd = " ".join(proc.info["cmdline"] or [])
                if any(d in cmd for d in self.temp_dirs):
                    pids.add(proc.pid)
        pids.discard(os.getpid())
        return sorted(pids)


def _setup(lab: Lab, sfx: str) -> None:
    for host in (lab.head, lab.worker):
        host.home.mkdir(parents=True)
        check(ip("netns", "add", host.ns))
        check(ip("-n", host.ns, "link", "set", "lo", "up"))
    vh, vw = f"mbh{sfx}", f"mbw{sfx}"
    check(ip("link", "add", vh, "type", "veth", "peer", "name", vw))
    for host, dev in ((lab.head, vh), (lab.worker, vw)):
        check(ip("link", "set", dev, "netns", host.ns))
        check(ip("-n", host.ns, "addr", "add", f"{host.addr}/{PREFIX}", "dev", dev))
        check(ip("-n", host.ns, "link", "set", dev, "up"))


def _teardown(lab: Lab) -> None:
    """Kill whatever either host still runs, then delete the namespaces (and so the veths)."""
    for run_dir in (lab.head.mb / "run", lab.worker.mb / "run"):
        for record in [run_dir / "ray.json", *run_dir.glob("nodes/*.json")]:
            with contextlib.suppress(OSError, ValueError, KeyError):
                lab.temp_dirs.add(json.loads(record.read_text())["temp_dir"])
    deadline = time.monotonic() + 15
    while (pids := lab.stray()) and time.monotonic() < deadline:
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.2)
    for host in (lab.head, lab.worker):
        ip("netns", "del", host.ns)
    kept = lab.head.root.parent / "ray"  # Ray's own logs, kept with pytest's tmp_path
    for d in lab.temp_dirs:
        if d.startswith("/tmp/moltbot-") and Path(d).is_dir():
            kept.mkdir(exist_ok=True)
            with contextlib.suppress(OSError, shutil.Error):
                shutil.move(d, kept / Path(d).name)


def check(out: subprocess.CompletedProcess[str]) -> None:
    assert out.returncode == 0, f"{' '.join(out.args)}: {out.stderr}"


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[Lab]:
    sfx = secrets.token_hex(3)
    lab = Lab(
        head=Host(f"mbt-h-{sfx}", HEAD_IP, tmp_path / "head"),
        worker=Host(f"mbt-w-{sfx}", WORKER_IP, tmp_path / "worker"),
    )
    try:
        _setup(lab, sfx)
        yield lab
    finally:
        _teardown(lab)


@dataclass
class Status:
    actors: dict[str, dict[str, Any]]
    nodes: list[dict[str, Any]]

    def node_at(self, addr: str) -> dict[str, Any]:
        found = [n for n in self.nodes if n["address"] == addr]
        assert len(found) == 1, self.nodes
        return found[0]


def status(host: Host) -> Status:
    out = host.run("status", "--json")
    assert out.returncode == 0, out.stdout + out.stderr
    data = json.loads(out.stdout)
    actors: dict[str, dict[str, Any]] = {}

    def walk(node: dict[str, Any]) -> None:
        for c in node.get("children", []):
            actors[c["name"]] = c
            walk(c)

    walk(data["tree"])
    return Status(actors, data["nodes"])


def wait_status(host: Host, cond: Callable[[Status], bool], timeout: float = 60) -> Status:
    deadline = time.monotonic() + timeout
    st = status(host)
    while not cond(st) and time.monotonic() < deadline:
        time.sleep(1)
        st = status(host)
    return st


def describe(pids: list[int]) -> list[str]:
    out = []
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            out.append(f"{pid}: {' '.join(psutil.Process(pid).cmdline())[:200]}")
    return out


def netns_of(pid: int) -> int:
    return os.stat(f"/proc/{pid}/ns/net").st_ino


def test_node_join_runs_the_pinned_actor_on_the_worker_and_leave_makes_it_wait(lab: Lab) -> None:
    head, worker = lab.head, lab.worker
    check(head.run("init"))
    (head.mb / "config.json").write_text(
        json.dumps(
            {
                "gateway": {"idle_stop_s": 0},  # runs from the start, on the head
                "agent": {"workers": 1, "idle_stop_s": 0},  # runs from the start, on the head
                "tools": {"workers": 1, "idle_stop_s": 0},  # runs from the start: placed at once
                "supervision": {"shutdown_s": 2},
                "cluster": {
                    "head_ip": HEAD_IP,
                    "dashboard": False,
                    "placement": {"tools/*": {"resources": {PIN: 0.01}}},
                },
            }
        )
    )

    # the head: a fresh HOME, so `up` creates the Ray token (0600) it then tells us to copy
    up = head.run("up", "--detach")
    assert up.returncode == 0, up.stdout + up.stderr + lab.logs()
    record = json.loads((head.mb / "run" / "ray.json").read_text())
    lab.temp_dirs.add(record["temp_dir"])
    address = record["address"]
    assert address.split(":")[0] == HEAD_IP
    token = head.home / ".ray" / "auth_token"
    assert "moltbot node invite" in up.stdout, up.stdout
    assert stat.S_IMODE(token.stat().st_mode) == 0o600
    tls = head.mb / "credentials" / "ray-tls"
    assert stat.S_IMODE((tls / "ca.key").stat().st_mode) == 0o600
    assert stat.S_IMODE(tls.stat().st_mode) == 0o700

    before = status(head)
    assert before.actors[SANDBOX]["state"] == "waiting"  # no node has sandbox_box yet
    head_node = before.node_at(HEAD_IP)
    assert head_node["head"] and [n["address"] for n in before.nodes] == [HEAD_IP]
    assert all(before.actors[a]["node"] == head_node["node"] for a in ON_HEAD)

    # the attack: a machine with the token alone (no certificate of this cluster) is refused
    assert not (worker.home / ".ray").exists()
    copy = worker.root / "auth_token"
    shutil.copy(token, copy)
    refused = worker.run("node", "join", address, "--token-file", str(copy), "--node-ip", WORKER_IP)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert "certificate" in refused.stderr and "moltbot node invite" in refused.stderr
    assert worker.pids() == []

    # the head invites the worker; the invite (token + a certificate for its address) is 0600
    invite = head.root / "worker.invite"
    made = head.run("node", "invite", WORKER_IP, "--out", str(invite))
    assert made.returncode == 0, made.stdout + made.stderr
    assert stat.S_IMODE(invite.stat().st_mode) == 0o600
    shutil.copy(invite, worker.root / "worker.invite")
    joined = worker.run(
        *("node", "join", "--invite", str(worker.root / "worker.invite")),
        *("--resources", json.dumps({PIN: 1}), "--labels", "room=attic"),
    )
    for rec in (worker.mb / "run" / "nodes").glob("*.json"):
        lab.temp_dirs.add(json.loads(rec.read_text())["temp_dir"])
    assert joined.returncode == 0, joined.stdout + joined.stderr + lab.logs()
    assert f"joined {address} as {WORKER_IP}" in joined.stdout

    # from the worker's "machine": the head's Ray port serves members only, over TLS
    [mine] = (worker.mb / "credentials" / "ray-tls").glob("node-*")
    probe = worker.python(
        "-m",
        "tests.cli.tls_probe",
        address,
        str(mine / "ca.crt"),
        str(mine / "node.crt"),
        str(mine / "node.key"),
    )
    assert probe.returncode == 0, probe.stderr
    tried = json.loads(probe.stdout)
    assert tried == {
        "plaintext": "refused",
        "no_cert": "refused",
        "other_ca": "refused",
        "member": "h2",
    }, tried

    placed = wait_status(head, lambda s: s.actors[SANDBOX]["state"] == "running")
    sandbox = placed.actors[SANDBOX]
    assert sandbox["state"] == "running", (placed.actors, lab.logs())
    worker_node = placed.node_at(WORKER_IP)
    assert worker_node["alive"] and not worker_node["head"]
    assert worker_node["resources"][PIN] == 1 and worker_node["labels"] == {"room": "attic"}
    assert sandbox["node"] == worker_node["node"] != head_node["node"]
    assert netns_of(sandbox["pid"]) == worker.netns_inode()  # really on the other "machine"
    table = head.run("status")  # the text view lists the nodes under the tree
    assert table.returncode == 0 and WORKER_IP in table.stdout, table.stdout + table.stderr
    assert f"{PIN}=1" in table.stdout and "room=attic" in table.stdout, table.stdout
    for name in ON_HEAD:  # the rest stays where it was: same process, no restart
        assert placed.actors[name]["node"] == head_node["node"], name
        assert placed.actors[name]["pid"] == before.actors[name]["pid"], name
        assert netns_of(placed.actors[name]["pid"]) == head.netns_inode(), name

    # the worker leaves: nothing of it is left running, and the sandbox waits for a node again
    left = worker.run("node", "leave")
    assert left.returncode == 0 and "1 node(s) stopped" in left.stdout, left.stdout + left.stderr
    assert worker.pids() == [], describe(worker.pids())
    waiting = wait_status(
        head,
        lambda s: s.actors[SANDBOX]["state"] == "waiting" and s.actors[SANDBOX]["restarts"] >= 1,
    )
    assert waiting.actors[SANDBOX]["state"] == "waiting", waiting.actors[SANDBOX]
    assert waiting.actors[SANDBOX]["restarts"] == 1
    assert waiting.actors[SANDBOX]["last_exit"] == "process died"
    assert waiting.actors[SANDBOX]["node"] == ""  # not the node that left
    assert not waiting.node_at(WORKER_IP)["alive"]
    for name in ON_HEAD:
        assert waiting.actors[name]["pid"] == before.actors[name]["pid"], name
        assert waiting.actors[name]["restarts"] == 0, name

    down = head.run("down")
    assert down.returncode == 0 and "moltbot is down" in down.stdout, down.stdout + down.stderr
    deadline = time.monotonic() + 10
    while lab.stray() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert lab.stray() == [], describe(lab.stray())
    assert not (head.mb / "run" / "ray.json").exists()
