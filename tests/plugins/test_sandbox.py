"""Plugins in their real bubblewrap host process, talking to a real broker (no Ray here: the
actor tests in tests/actors/test_plugin_actor.py run the same plugins in a tree).

The hostile plugin (tests/plugins/fixtures/hostile_plugin) tries to read the vault and the rest
of MOLTBOT_HOME, Ray's token and session folder, a file beside its own folder, to use Ray, to
connect to sockets the test listens on, to write into its own folder, and to get a secret, a
host and storage it was not granted. Every try fails; the broker's refusals are reported as
denials (the actor audits them).
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from moltbot.errors import PluginError
from moltbot.plugins import jail
from moltbot.plugins.egress import Egress
from moltbot.plugins.manifest import source_digest
from moltbot.sandbox.bwrap import SandboxPolicy
from moltbot.security.vault import Vault
from tests.plugins.support import EXAMPLES, FIXTURES, Host, entry, sandboxed

HOSTILE = f"{FIXTURES}.hostile_plugin"


@pytest.fixture
def listeners() -> Iterator[list[socket.socket]]:
    socks = []
    for _ in range(3):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        s.listen(8)
        s.setblocking(False)
        socks.append(s)
    yield socks
    for s in socks:
        s.close()


def nothing_arrived(sock: socket.socket) -> bool:
    try:
        conn, _ = sock.accept()
    except BlockingIOError:
        return True
    conn.close()
    return False


async def test_the_hostile_plugin_gets_nowhere(
    tmp_path: Path, listeners: list[socket.socket]
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    Vault.create(home).set("admin_password", "never-for-plugins")
    outside = tmp_path / "outside.txt"
    outside.write_text("private")
    session = tmp_path / "ray" / "session_latest"
    session.mkdir(parents=True)
    (session / "ports").write_text("6379")
    token = tmp_path / ".ray" / "auth_token"
    token.parent.mkdir()
    token.write_text("ray-token")
    loop_port, gcs_port, http_port = (s.getsockname()[1] for s in listeners)
    targets = {
        "home": str(home),
        "outside": str(outside),
        "ray_token": str(token),
        "ray_session": str(session),
        "gcs": f"127.0.0.1:{gcs_port}",
        "port": loop_port,
        "granted_http_port": http_port,
    }
    pc = entry(
        "hostile",
        HOSTILE,
        capabilities=["tools", "secrets", "network"],  # not storage
        http_hosts=["localhost"],
        config=targets,
        sha256=source_digest(HOSTILE),
    )
    host = Host({"admin_password": "never-for-plugins"})
    async with sandboxed(pc, host.services()) as broker:
        result = await broker.call_tool("attack", {}, "s")
    assert not result.is_error, result.text
    out = json.loads(result.text)
    assert out.pop("own_file").startswith("OPEN: "), "the control: its own folder is readable"
    opened = {k: v for k, v in out.items() if not v.startswith("blocked: ")}
    assert opened == {}, opened
    assert "never-for-plugins" not in result.text and "ray-token" not in result.text
    assert "FileNotFoundError" in out["vault"] and "FileNotFoundError" in out["home"]
    assert "FileNotFoundError" in out["outside_file"]
    assert "Read-only file system" in out["write_own_folder"]
    assert "MemoryError" in out["memory"]
    assert "CapabilityDenied" in out["secret"] and "admin_password" in out["secret"]
    assert "CapabilityDenied" in out["storage"]
    assert "127.0.0.1 is not granted" in out["http_ungranted"]
    assert "FetchRefused" in out["http_granted_but_local"]
    assert all(nothing_arrived(s) for s in listeners)
    assert host.denied == [
        {"plugin": "hostile", "capability": "secrets", "secret_name": "admin_password"},
        {"plugin": "hostile", "capability": "network", "host": "127.0.0.1"},
        {"plugin": "hostile", "capability": "storage"},
    ]
    assert host.kv == {}


async def test_the_reminders_example_works_in_its_sandbox(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(EXAMPLES))
    pc = entry(
        "reminders", "reminders_plugin", capabilities=["tools", "storage"], config={"tick_s": 0.1}
    )  # bundled with moltbot: no pin needed
    host = Host()
    async with sandboxed(pc, host.services()) as broker:
        assert list(broker.tool_specs) == ["remind", "list_reminders"]
        got = await broker.call_tool("remind", {"in_seconds": 3600, "text": "tea"}, "s1")
        assert not got.is_error and "tea" in got.text
        bad = await broker.call_tool("remind", {"in_seconds": "soon"}, "s1")
        assert bad.is_error and "invalid input for remind" in bad.text
        listed = await broker.call_tool("list_reminders", {}, "s1")
        assert listed.text.endswith("[pending] tea")
    assert b"tea" in host.kv["plugin.reminders.reminders"]


async def test_a_plugin_asking_for_an_ungranted_capability_at_setup_is_refused() -> None:
    pc = entry(
        "greedy",
        f"{FIXTURES}.greedy",
        capabilities=["channel"],
        sha256=source_digest(f"{FIXTURES}.greedy"),
    )
    host = Host()
    with pytest.raises(ExceptionGroup) as err:
        async with sandboxed(pc, host.services()):
            pass
    (exc,) = err.value.exceptions
    assert isinstance(exc, PluginError)
    assert "was not granted the 'tools' capability" in exc.user_message
    assert host.denied == [{"plugin": "greedy", "capability": "tools"}]


async def test_http_to_a_granted_host_goes_through_the_broker(tmp_path: Path) -> None:
    seen: list[bytes] = []

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        seen.append(head + await reader.readexactly(4))
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\nConnection: close\r\n\r\npong")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]

    async def resolve(host: str, port: int) -> list[str]:
        return ["127.0.0.1"]

    # the granted name resolves to loopback: allowed on this one port, for the test only
    egress = Egress(frozenset({"api.test"}), resolver=resolve, allow_loopback_port_for_tests=port)
    module = f"{FIXTURES}.fetcher"
    pc = entry(
        "fetcher",
        module,
        capabilities=["tools", "network"],
        http_hosts=["api.test"],
        sha256=source_digest(module),
    )
    host = Host()
    async with server, sandboxed(pc, host.services(), egress=egress) as broker:
        ok = await broker.call_tool("fetch", {"url": f"http://api.test:{port}/hook"}, "s")
        other = await broker.call_tool("fetch", {"url": f"http://other.test:{port}/"}, "s")
    assert ok.text == "200 pong", ok
    assert len(seen) == 1 and seen[0].startswith(b"POST /hook HTTP/1.1\r\n")
    assert f"host: api.test:{port}".encode() in seen[0].lower() and seen[0].endswith(b"ping")
    assert other.is_error and "other.test is not granted" in other.text
    assert host.denied == [{"plugin": "fetcher", "capability": "network", "host": "other.test"}]


async def test_without_bubblewrap_a_plugin_is_refused_never_run_unsandboxed(
    tmp_path: Path,
) -> None:
    (tmp_path / "plugin_dir").mkdir()
    policy = SandboxPolicy(workspace=tmp_path, bwrap_path=str(tmp_path / "no-bwrap"))
    with pytest.raises(PluginError, match="their bubblewrap sandbox is not available") as err:
        await jail.spawn(tmp_path / "plugin_dir", policy)
    assert "apt-get install bubblewrap" in err.value.hint
