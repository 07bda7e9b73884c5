"""The egress proxy of a bash sandbox granted the network (``tools.bash.network: true``).

The sandbox never shares the host's network: it keeps its own network namespace, where only
``lo`` exists. Inside, :mod:`moltbot.sandbox.forwarder` listens on ``127.0.0.1:PROXY_PORT`` and
relays each connection to a Unix socket bound into the sandbox; ``http_proxy``/``https_proxy``
point there. The other end of that socket is :class:`EgressProxy`, in the sandbox actor's
process, which speaks HTTP ``CONNECT`` (https) and absolute-URI requests (plain http), resolves
the host itself and applies web_fetch's rules (:func:`moltbot.tools.web_fetch.vet_host`): only
ports 80 and 443, only public addresses (no loopback, private, link-local, metadata ...), and
connects to the vetted address (no DNS rebinding). A refusal is an HTTP 403 whose body says
why. Connections are capped in number, bytes and time. Raw TCP/UDP has no route at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import urlsplit

from moltbot.errors import FetchRefused
from moltbot.sandbox import forwarder
from moltbot.security.ssrf import Resolver, system_resolver, vet_host

log = logging.getLogger(__name__)

PROXY_PORT = 3128  # on the sandbox's own loopback
SOCKET_NAME = "egress.sock"
SANDBOX_DIR = "/run/moltbot-egress"  # where the socket folder appears inside the sandbox
MAX_HEAD = 16 * 1024
_CHUNK = 64 * 1024


class EgressProxy:
    """Serves one sandboxed run's outbound HTTP(S) on a Unix socket."""

    def __init__(
        self,
        *,
        ports: frozenset[int] = frozenset({80, 443}),
        max_connections: int = 16,
        max_bytes: int = 64 * 1024 * 1024,
        timeout_s: float = 60.0,
        resolver: Resolver = system_resolver,
        allow_loopback_port_for_tests: int | None = None,
    ) -> None:
        self.ports = ports
        self.max_bytes = max_bytes
        self.timeout_s = timeout_s
        self._slots = asyncio.Semaphore(max_connections)
        self._resolve = resolver
        self._test_port = allow_loopback_port_for_tests
        self.refused: list[str] = []  # why each refused request was refused (bounded)

    @contextlib.asynccontextmanager
    async def serve(self, uid: int | None = None) -> AsyncIterator[Path]:
        """A private folder holding the socket and the forwarder script, served until exit;
        ``uid``: the sandbox user who must reach it (when we run as root)."""
        folder = _make_folder()
        try:
            server = await asyncio.start_unix_server(self._handle, path=str(folder / SOCKET_NAME))
            if uid is not None:
                _hand_over(folder, uid)
            try:
                async with server:
                    yield folder
            finally:
                server.close()
        finally:
            _remove_folder(folder)

    # --- one connection ------------------------------------------------------------------------
    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with self._slots, asyncio.timeout(self.timeout_s):
                await self._serve(reader, writer)
        except (TimeoutError, OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        if len(head) > MAX_HEAD:
            return await self._refuse(writer, "request head too large")
        try:
            method, target, rest = _request_line(head)
            host, port, forward = _destination(method, target, rest)
            if port not in self.ports:
                raise FetchRefused(f"port {port} is not allowed (only {sorted(self.ports)})")
            ip = await vet_host(host, port, self._resolve, test_loopback_port=self._test_port)
        except FetchRefused as exc:
            return await self._refuse(writer, exc.user_message)
        up_reader, up_writer = await asyncio.open_connection(ip, port)
        try:
            if method == "CONNECT":
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            else:
                up_writer.write(forward)
            budget = [self.max_bytes]
            try:
                async with asyncio.TaskGroup() as tg:
                    tg.create_task(_pump(reader, up_writer, budget))
                    tg.create_task(_pump(up_reader, writer, budget))
            except* (TimeoutError, OSError):
                pass  # the byte cap, or a side went away: the connection ends
        finally:
            up_writer.close()

    async def _refuse(self, writer: asyncio.StreamWriter, why: str) -> None:
        log.info("sandbox egress refused: %s", why)
        if len(self.refused) < 256:
            self.refused.append(why)
        body = f"refused by moltbot's egress proxy: {why}\n".encode()
        writer.write(
            b"HTTP/1.1 403 Forbidden\r\nContent-Type: text/plain; charset=utf-8\r\n"
            + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode()
            + body
        )
        await writer.drain()


def _make_folder() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="moltbot-egress-"))  # 0700
    (folder / forwarder.FILE_NAME).write_text(forwarder.source())
    return folder


def _hand_over(folder: Path, uid: int) -> None:
    for path in (folder, folder / SOCKET_NAME, folder / forwarder.FILE_NAME):
        os.chown(path, uid, -1)


def _remove_folder(folder: Path) -> None:
    for name in (SOCKET_NAME, forwarder.FILE_NAME):
        with contextlib.suppress(FileNotFoundError):
            (folder / name).unlink()
    with contextlib.suppress(OSError):
        folder.rmdir()


def _request_line(head: bytes) -> tuple[str, str, bytes]:
    line, _, rest = head.partition(b"\r\n")
    parts = line.decode("latin-1").split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise FetchRefused("not an HTTP/1.x proxy request")
    return parts[0].upper(), parts[1], rest


def _destination(method: str, target: str, rest: bytes) -> tuple[str, int, bytes]:
    """(host, port, bytes to send upstream) of a CONNECT or absolute-URI request."""
    if method == "CONNECT":
        host, sep, port = target.rpartition(":")
        if not sep or not port.isdigit() or not host:
            raise FetchRefused("CONNECT needs host:port")
        return host.strip("[]"), int(port), b""
    url = urlsplit(target)
    if url.scheme != "http" or not url.hostname:
        raise FetchRefused("only http:// URLs (and CONNECT for https) go through the proxy")
    if url.username or url.password:
        raise FetchRefused("URLs with a user name or password are refused")
    path = url.path or "/"
    origin = f"{method} {path}{'?' + url.query if url.query else ''} HTTP/1.1\r\n"
    kept = [
        h
        for h in rest.split(b"\r\n")
        if h and not h.lower().startswith((b"proxy-", b"connection:", b"keep-alive:"))
    ]
    forward = origin.encode("latin-1") + b"\r\n".join([*kept, b"Connection: close"]) + b"\r\n\r\n"
    return url.hostname, url.port or 80, forward


async def _pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter, budget: list[int]) -> None:
    with contextlib.suppress(OSError):
        while chunk := await src.read(_CHUNK):
            budget[0] -= len(chunk)
            if budget[0] < 0:
                raise TimeoutError("byte cap reached")  # ends both directions
            dst.write(chunk)
            await dst.drain()
        if dst.can_write_eof():
            dst.write_eof()
