"""``tools.bash.network: true`` through the egress proxy, with real bubblewrap: the sandbox never
gets the host's network; HTTP(S) goes through the proxy, which applies web_fetch's rules."""

from __future__ import annotations

import asyncio
import textwrap
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from moltbot.sandbox import SandboxPolicy, SandboxResult, run_sandboxed
from moltbot.sandbox.egress import EgressProxy

pytestmark = pytest.mark.timeout(60)


class Origin:
    """A tiny HTTP server on the host's 127.0.0.1 that counts who reached it."""

    def __init__(self) -> None:
        self.hits = 0
        self.port = 0

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.hits += 1
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ", 2)[1].decode()
            body = f"hello from the origin, you asked {path}".encode()
            writer.write(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture
async def origin() -> AsyncIterator[Origin]:
    o = Origin()
    server = await asyncio.start_server(o._answer, "127.0.0.1", 0)
    o.port = server.sockets[0].getsockname()[1]
    async with server:
        yield o


async def py(
    ws: Path, code: str, *, network: bool, proxy: EgressProxy | None = None
) -> SandboxResult:
    pol = SandboxPolicy(workspace=ws, timeout_s=20.0, network=network)
    return await run_sandboxed(["python3", "-c", textwrap.dedent(code)], pol, proxy=proxy)


FETCH = """
    import urllib.request, urllib.error
    try:
        print(urllib.request.urlopen(URL, timeout=10).read().decode())
    except urllib.error.HTTPError as e:
        print(e.code, e.read().decode())
    except OSError as e:
        print("failed", type(e).__name__)
"""


def fetch(url: str) -> str:
    return f"URL = {url!r}\n" + textwrap.dedent(FETCH)


async def test_an_allowed_host_is_reached_through_the_proxy(tmp_path: Path, origin: Origin) -> None:
    # tests only: the proxy may reach the origin's loopback port (never settable from config)
    proxy = EgressProxy(ports=frozenset({origin.port}), allow_loopback_port_for_tests=origin.port)
    res = await py(
        tmp_path, fetch(f"http://127.0.0.1:{origin.port}/page?x=1"), network=True, proxy=proxy
    )
    assert b"hello from the origin, you asked /page?x=1" in res.stdout, res.stderr
    assert origin.hits == 1
    tunnel = f"""
        import socket
        s = socket.create_connection(("127.0.0.1", 3128))
        s.sendall(b"CONNECT 127.0.0.1:{origin.port} HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
        print(s.recv(100).decode().splitlines()[0])
        s.sendall(b"GET /tunnelled HTTP/1.0\\r\\n\\r\\n")
        print(b"".join(iter(lambda: s.recv(4096), b"")).decode().splitlines()[-1])
    """
    res = await py(tmp_path, tunnel, network=True, proxy=proxy)
    assert res.stdout.decode().splitlines() == [
        "HTTP/1.1 200 Connection established",
        "hello from the origin, you asked /tunnelled",
    ], res.stderr


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://127.0.0.1/", "private, local or reserved"),
        ("http://169.254.169.254/latest/meta-data/", "private, local or reserved"),
        ("http://10.0.0.1/", "private, local or reserved"),
        ("http://127.0.0.1:{port}/", "port {port} is not allowed"),
    ],
)
async def test_private_addresses_and_other_ports_are_refused(
    tmp_path: Path, origin: Origin, url: str, why: str
) -> None:
    proxy = EgressProxy()
    res = await py(tmp_path, fetch(url.format(port=origin.port)), network=True, proxy=proxy)
    out = res.stdout.decode()
    assert out.startswith("403 refused by moltbot's egress proxy"), (out, res.stderr)
    assert why.format(port=origin.port) in out and proxy.refused
    assert origin.hits == 0


async def test_connect_to_another_port_is_refused(tmp_path: Path, origin: Origin) -> None:
    proxy = EgressProxy()
    code = f"""
        import socket
        s = socket.create_connection(("127.0.0.1", 3128))
        s.sendall(b"CONNECT example.com:{origin.port} HTTP/1.1\\r\\n\\r\\n")
        print(s.recv(200).decode().splitlines()[0])
    """
    res = await py(tmp_path, code, network=True, proxy=proxy)
    assert res.stdout.decode().strip() == "HTTP/1.1 403 Forbidden"
    assert proxy.refused == [f"port {origin.port} is not allowed (only [80, 443])"]


async def test_no_host_network_even_when_granted(tmp_path: Path, origin: Origin) -> None:
    """The attack: a raw connection to a service on the host's loopback, around the proxy."""
    code = f"""
        import socket
        try:
            socket.create_connection(("127.0.0.1", {origin.port}), timeout=3)
            print("CONNECTED")
        except OSError as e:
            print("refused", type(e).__name__)
        print(sorted(l.split(":")[0].strip() for l in open("/proc/net/dev").readlines()[2:]))
    """
    res = await py(tmp_path, code, network=True)
    lines = res.stdout.decode().splitlines()
    assert lines[0].startswith("refused") and lines[1] == "['lo']", (lines, res.stderr)
    assert origin.hits == 0


async def test_without_network_there_is_no_proxy(tmp_path: Path, origin: Origin) -> None:
    code = """
        import os, socket
        print(sorted(k for k in os.environ if "proxy" in k.lower()))
        try:
            socket.create_connection(("127.0.0.1", 3128), timeout=3)
            print("proxy reachable")
        except OSError:
            print("no proxy")
    """
    res = await py(tmp_path, code, network=False)
    assert res.stdout.decode().splitlines() == ["[]", "no proxy"]
    assert not list(Path("/tmp").glob("moltbot-egress-*"))
