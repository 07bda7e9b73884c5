"""Socket activation of the gateway: its port is held open while its process sleeps.

A gateway bound to loopback starts on demand (``gateway.idle_stop_s``), as systemd starts a
socket-activated service. The root supervisor binds the port at boot (:class:`Listener`) and
never accepts on it: while the gateway sleeps it only waits for a connection to be pending
(:meth:`Listener.pending`) and then wakes the gateway. The gateway, starting, takes the same
listening socket (:func:`take`, over a Unix socket whose abstract name only the tree knows,
handed only to a process of the same user: ``SO_PEERCRED``) and accepts on it, the waiting
connection first. Idle, it stops accepting (its copy closed, the root's kept), and what
arrives then waits in the kernel's backlog for the next gateway: no connection is refused.

Pure: no Ray here (``actors.activation`` runs it in the root).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import secrets
import select
import socket
import struct

from moltbot.errors import ConfigError, Unavailable

BACKLOG = 128
_CRED = struct.Struct("3i")  # struct ucred: pid, uid, gid


def listen_error(exc: OSError, host: str, port: int) -> ConfigError:
    """A failed bind as the user reads it: the address, and the fix."""
    if exc.errno == errno.EADDRINUSE:
        return ConfigError(
            "$.gateway.port",
            f"{host}:{port} is already in use by another program",
            fix="stop that program, or choose another gateway.port",
        )
    return ConfigError(
        "$.gateway.bind",
        f"cannot listen on {host}:{port} ({exc.strerror})",
        fix="bind an address of this machine (127.0.0.1 by default)",
    )


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (as asyncio's servers make one)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        infos.sort(key=lambda i: i[0] != socket.AF_INET)  # "localhost": 127.0.0.1 first
        family, kind, proto, _name, address = infos[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
            sock.listen(BACKLOG)
        except OSError:
            sock.close()
            raise
    except OSError as exc:
        raise listen_error(exc, host, port) from None
    sock.setblocking(False)
    return sock


def is_pending(sock: socket.socket) -> bool:
    """A connection waits to be accepted on the listening ``sock`` (does not wait)."""
    readable, _w, _x = select.select([sock], [], [], 0)
    return bool(readable)


class Listener:
    """The root's side: the gateway's port, bound once for the tree's life, and the Unix
    socket it is handed over on."""

    def __init__(self, host: str, port: int) -> None:
        self.sock = bind(host, port)
        self.name = "moltbot-gateway-" + secrets.token_hex(16)  # abstract: no file, no path
        self._unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._unix.bind("\0" + self.name)
        self._unix.listen(8)
        self._unix.setblocking(False)

    @property
    def port(self) -> int:
        return int(self.sock.getsockname()[1])

    async def serve(self) -> None:
        """Hand the listening socket to each process of this user that asks, until cancelled."""
        loop = asyncio.get_running_loop()
        while True:
            conn, _addr = await loop.sock_accept(self._unix)
            with conn:
                _pid, uid, _gid = _CRED.unpack(
                    conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CRED.size)
                )
                if uid == os.getuid():
                    with contextlib.suppress(OSError):  # the asker went away
                        socket.send_fds(conn, [b"L"], [self.sock.fileno()])

    async def pending(self) -> None:
        """Return once a connection waits to be accepted (this process never accepts it)."""
        loop = asyncio.get_running_loop()
        ready: asyncio.Future[None] = loop.create_future()
        fd = self.sock.fileno()

        def readable() -> None:
            if not ready.done():
                ready.set_result(None)

        loop.add_reader(fd, readable)
        try:
            await ready
        finally:
            loop.remove_reader(fd)

    def close(self) -> None:
        self._unix.close()
        self.sock.close()


def take(name: str, timeout_s: float = 10.0) -> socket.socket:
    """The gateway's side: the listening socket the root holds under ``name`` (blocking, and
    brief: one local round trip). ``Unavailable`` when the root does not hand it over."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(timeout_s)
        try:
            conn.connect("\0" + name)
            _msg, fds, _flags, _addr = socket.recv_fds(conn, 16, 1)
        except OSError:
            fds = []
    if not fds:
        raise Unavailable("the gateway's port was not handed over by the root supervisor")
    sock = socket.socket(fileno=fds[0])
    sock.setblocking(False)
    return sock
