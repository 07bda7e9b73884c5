"""Plugin actors in a real tree on the session's Ray: isolation, restarts, refusals, denials.

One tree for the module, built by ``build_tree`` from a config with seven plugins: the example
``reminders`` (examples/reminders, bundled: no pin), a ``probe`` with a granted and an ungranted
secret, test plugins (tests/plugins/fixtures, pinned) that raise in run / os._exit / block their
event loop, one refused for using a capability it was not granted, and ``hostile``, which tries
to get out of its bubblewrap sandbox (the vault, Ray's token, session folder and GCS, a file
outside its folder, a loopback socket). Beside them: the store and a plain worker standing in
for the gateway and channels. ``PYTHONPATH`` in the root's runtime env makes the plugin modules
findable in every actor; each plugin's code runs in its own sandboxed host process.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest
import ray

from actors import routing
from actors.supervisor import Supervisor
from moltbot import paths
from moltbot.config.schema import Config
from moltbot.errors import PluginError
from moltbot.messages import ToolResult
from moltbot.plugins.manifest import source_digest
from moltbot.security import audit
from moltbot.security.vault import PASSPHRASE_ENV, Vault
from moltbot.supervision.spec import Backoff, ChildSpec, SupervisorFlags
from moltbot.supervision.tree import build_tree
from tests.actors.helpers import child, node, pid_of, tree, wait_for
from tests.plugins.support import EXAMPLES, FIXTURES, ROOT

FAST = SupervisorFlags(
    intensity=10,
    period=30.0,
    backoff=Backoff(base_s=0.05, max_s=0.5, jitter=0.1),
    ping_interval_s=0.3,
    ping_timeout_s=3.0,
)
PLUGINS = [
    {
        "name": "reminders",
        "module": "reminders_plugin",
        "capabilities": ["tools", "storage"],
        "config": {"tick_s": 0.2},
    },
    {
        "name": "probe",
        "module": f"{FIXTURES}.secret_probe",
        "capabilities": ["tools", "secrets", "gateway_methods"],
        "secrets": ["probe_token"],
    },
    {"name": "greedy", "module": f"{FIXTURES}.greedy", "capabilities": ["channel"]},
    {"name": "raiser", "module": f"{FIXTURES}.raises_in_run", "capabilities": ["storage"]},
    {"name": "exiter", "module": f"{FIXTURES}.exits", "capabilities": ["storage"]},
    {"name": "hanger", "module": f"{FIXTURES}.hangs", "capabilities": ["storage"]},
]
HOSTILE = f"{FIXTURES}.hostile_plugin"
# the plugin's process raised in run, exited, or blocked its loop: the broker's end is a crash,
# whose reason (the broker's Unavailable, written for users) names the plugin
CRASHERS = {f"plugin:{name}": f"plugin '{name}'" for name in ("raiser", "exiter", "hanger")}


@dataclass
class Tree:
    root: Any
    ns: str
    home: Path
    listener: socket.socket


def pinned(entry: dict[str, Any]) -> dict[str, Any]:
    if entry["module"].startswith(FIXTURES):  # not bundled with moltbot: needs its pin
        return {**entry, "sha256": source_digest(entry["module"])}
    return entry


def hostile(targets: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": "hostile",
        "module": HOSTILE,
        "capabilities": ["tools", "secrets", "network"],  # not storage
        "http_hosts": ["localhost"],
        "config": targets,
    }


def config(targets: dict[str, Any]) -> Config:
    backoff = {"base_s": 0.05, "max_s": 0.5, "jitter": 0.1}
    return msgspec.convert(
        {
            "plugins": [pinned(p) for p in [*PLUGINS, hostile(targets)]],
            "supervision": {
                "plugins": {"intensity": 1000, "period": 30.0, "backoff": backoff},
                "ping_interval_s": 0.3,
                "ping_timeout_s": 3.0,
                "shutdown_s": 2.0,
                "ready_timeout_s": 60.0,
            },
        },
        Config,
    )


def children(cfg: Config) -> list[ChildSpec]:
    """The real tree's store and plugins subtree; a plain worker in place of the gateway."""
    specs = {c.id: c for c in build_tree(cfg)}
    gateway = ChildSpec(id="gateway", kind="worker", shutdown=2.0)
    return [specs["store"], gateway, specs["plugins"]]


@pytest.fixture(scope="module")
def live(ray_cluster: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Tree]:
    home = tmp_path_factory.mktemp("home")
    assert not os.environ.get(PASSPHRASE_ENV), "the test vault uses a key file"
    vault = Vault.create(home)
    vault.set("probe_token", "s3cret-probe-value")
    vault.set("admin_password", "never-for-plugins")
    outside = tmp_path_factory.mktemp("outside") / "private.txt"
    outside.write_text("private")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.setblocking(False)
    targets = {
        "home": str(home),
        "outside": str(outside),
        "ray_token": str(Path.home() / ".ray" / "auth_token"),
        "ray_session": "/tmp/ray/session_latest",
        "gcs": ray.get_runtime_context().gcs_address,
        "port": listener.getsockname()[1],
        "granted_http_port": listener.getsockname()[1],
    }
    cfg = config(targets)
    ns = f"t-{uuid.uuid4().hex[:8]}"
    env = {"MOLTBOT_HOME": str(home), "PYTHONPATH": f"{EXAMPLES}{os.pathsep}{ROOT}"}
    root = Supervisor.options(  # type: ignore[attr-defined]
        name="moltbot", namespace=ns, num_cpus=0, runtime_env={"env_vars": env}
    ).remote(path="", flags=FAST, children=children(cfg), namespace=ns)
    try:
        ray.get(root.start_detached.remote())
        ray.get(root.ready.remote(), timeout=120)
        yield Tree(root=root, ns=ns, home=home, listener=listener)
    finally:
        listener.close()
        try:
            ray.get(root.stop.remote(), timeout=60)
        finally:
            ray.kill(root)


def plugins(t: Tree) -> dict[str, dict[str, Any]]:
    sub = node(tree(t.root), "plugins")
    return {c["id"]: c for c in sub["children"]}


def restarted(t: Tree, cid: str) -> bool:
    kid = plugins(t)[cid]
    return bool(kid["restarts"] >= 1 and kid["state"] == "running")


async def call(t: Tree, name: str, method: str, *args: Any) -> Any:
    return await routing.call(t.ns, f"plugins/plugin:{name}", method, *args, deadline_s=30)


# --- tests --------------------------------------------------------------------------------------
async def test_reminders_plugin_sets_lists_and_fires_through_its_actor(live: Tree) -> None:
    info = await call(live, "reminders", "describe")
    assert info["state"] == "running" and info["capabilities"] == ["storage", "tools"]
    specs = await call(live, "reminders", "tools")
    assert [s["name"] for s in specs] == ["remind", "list_reminders"]
    assert specs[0]["input_schema"]["required"] == ["in_seconds", "text"]

    session = "telegram:main:dm:42"
    got = await call(
        live, "reminders", "call_tool", "remind", {"in_seconds": 0.3, "text": "tea"}, session
    )
    assert isinstance(got, ToolResult) and not got.is_error, got
    await call(
        live, "reminders", "call_tool", "remind", {"in_seconds": 3600, "text": "later"}, session
    )
    bad = await call(live, "reminders", "call_tool", "remind", {"in_seconds": "soon"}, session)
    assert bad.is_error and "invalid input for remind" in bad.text

    async def listed() -> str:
        res = await call(live, "reminders", "call_tool", "list_reminders", {}, session)
        return str(res.text)

    deadline = time.monotonic() + 15
    while "[fired] tea" not in (text := await listed()):
        assert time.monotonic() < deadline, f"the run loop did not fire the reminder: {text}"
        await asyncio.sleep(0.2)
    assert "[pending] later" in text
    # kept in the store's kv under the plugin's own key ...
    raw = await routing.call(live.ns, "store", "kv_get", "plugin.reminders.reminders")
    stored = {r["text"]: r for r in json.loads(raw)}
    assert stored["tea"]["fired_at"] is not None and stored["later"]["fired_at"] is None
    assert stored["tea"]["session"] == session
    # ... so a crashed and restarted plugin still has them
    pid = pid_of(live.ns, "plugins/plugin:reminders")
    child(live.ns, "plugins/plugin:reminders").crash.remote("exit")
    wait_for(lambda: restarted(live, "plugin:reminders"), what="reminders back")
    assert pid_of(live.ns, "plugins/plugin:reminders") != pid
    assert await listed() == text


def test_crashing_plugins_are_restarted_and_nothing_else_is_touched(live: Tree) -> None:
    steady = ("gateway", "store", "plugins/plugin:reminders", "plugins/plugin:probe")
    pids = {p: pid_of(live.ns, p) for p in steady}
    restarts = {cid: c["restarts"] for cid, c in plugins(live).items() if cid not in CRASHERS}

    def all_restarted() -> bool:
        return all(restarted(live, c) for c in CRASHERS)

    wait_for(all_restarted, timeout=60, what="every crashing plugin restarted")
    kids = plugins(live)
    for cid, reason in CRASHERS.items():
        assert kids[cid]["last_exit"].startswith(reason), (cid, kids[cid]["last_exit"])
        assert kids[cid]["restarts"] == 1  # it crashed once; its next life is calm
    for cid, count in restarts.items():
        assert kids[cid]["restarts"] == count and kids[cid]["state"] == "running", kids[cid]
    assert kids["plugin:greedy"]["restarts"] == 0  # refused, not crash-looping
    status = tree(live.root)
    for cid in ("gateway", "store", "plugins"):
        assert node(status, cid)["restarts"] == 0
    assert {p: pid_of(live.ns, p) for p in steady} == pids
    assert ray.get(child(live.ns, "gateway").echo.remote("still here"), timeout=10) == "still here"


async def test_a_plugin_using_an_ungranted_capability_at_setup_is_refused_not_restarted(
    live: Tree,
) -> None:
    info = await call(live, "greedy", "describe")
    assert info["state"] == "refused"
    assert "was not granted the 'tools' capability" in info["error"]
    assert info["denials"] == [{"plugin": "greedy", "capability": "tools"}]
    result = await call(live, "greedy", "call_tool", "grab", {}, "s")
    assert result.is_error and result.text.startswith("plugin 'greedy' is not available")
    assert await call(live, "greedy", "tools") == []
    with pytest.raises(PluginError, match="not available"):
        await call(live, "greedy", "call_method", "anything", {})


async def test_secrets_granted_by_name_only_and_denials_are_audited(live: Tree) -> None:
    ok = await call(live, "probe", "call_tool", "peek", {"name": "probe_token"}, "s")
    assert ok == ToolResult(text="probe_token has 18 characters")
    denied = await call(live, "probe", "call_tool", "peek", {"name": "admin_password"}, "s")
    assert denied.is_error and "may not read secret 'admin_password'" in denied.text
    assert "never-for-plugins" not in denied.text
    info = await call(live, "probe", "describe")
    expected = {"plugin": "probe", "capability": "secrets", "secret_name": "admin_password"}
    assert info["denials"] == [expected]
    who = await call(live, "probe", "call_method", "whoami", {"echo": 1})
    assert who == {"plugin": "probe", "echo": 1, "caps": ["gateway_methods", "secrets", "tools"]}

    log = paths.audit_file(live.home)

    def recorded(kind: str = "plugin_denied") -> list[dict[str, Any]]:
        lines = log.read_text().splitlines() if log.exists() else []
        return [r for r in map(json.loads, lines) if r["kind"] == kind]

    def denials() -> list[dict[str, Any]]:  # other plugins' denials may come before or after
        return [r["fields"] for r in recorded()]

    wait_for(lambda: expected in denials(), timeout=15, what="the denial in the audit log")
    # the granted read is audited too: by name and reader, never the value
    reads = [r["fields"] for r in recorded("secret_read")]
    assert {"secret_name": "probe_token", "reader": "plugins/plugin:probe"} in reads
    assert "s3cret-probe-value" not in log.read_text()
    assert audit.verify(log).ok


async def test_the_hostile_plugin_gets_nowhere_and_its_denials_are_audited(live: Tree) -> None:
    # the targets are real: Ray's token and session folder exist, the GCS answers
    assert (Path.home() / ".ray" / "auth_token").exists() and Path(
        "/tmp/ray/session_latest"
    ).is_dir()
    result = await call(live, "hostile", "call_tool", "attack", {}, "s")
    assert not result.is_error, result.text
    out = json.loads(result.text)
    assert out.pop("own_file").startswith("OPEN: "), "the control: its own folder is readable"
    assert {k: v for k, v in out.items() if not v.startswith("blocked: ")} == {}
    for target in ("vault", "home", "ray_token", "ray_session", "outside_file"):
        assert "FileNotFoundError" in out[target], (target, out[target])
    assert "ConnectionRefusedError" in out["gcs_socket"]  # its own empty network only
    assert "ConnectionRefusedError" in out["loopback"]
    assert "never-for-plugins" not in result.text
    with pytest.raises(BlockingIOError):  # nothing reached the test's socket
        live.listener.accept()
    expected = [
        {"plugin": "hostile", "capability": "secrets", "secret_name": "admin_password"},
        {"plugin": "hostile", "capability": "network", "host": "127.0.0.1"},
        {"plugin": "hostile", "capability": "storage"},
    ]
    assert (await call(live, "hostile", "describe"))["denials"] == expected
    log = paths.audit_file(live.home)

    def audited() -> list[dict[str, Any]]:
        lines = log.read_text().splitlines() if log.exists() else []
        records = [json.loads(line) for line in lines]
        return [r["fields"] for r in records if r["kind"] == "plugin_denied"]

    wait_for(lambda: all(e in audited() for e in expected), timeout=15, what="denials audited")
    assert audit.verify(log).ok
