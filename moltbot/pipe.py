"""Local pipes: requests between the tree's actors on one node, beside Ray's actor calls.

A Ray actor call costs about a millisecond of CPU across its two processes (measured here:
0.5-0.7 ms in the caller, 0.55-0.9 ms in the callee); the same request over a Unix socket
costs 0.03-0.13 ms. A message makes three or four such requests (journal, turn, transcript,
done mark), so the hot ones travel over a pipe when both ends are on one node, and through
Ray otherwise (``actors.pipes`` decides; Ray still creates, places, watches and kills).

Frames are a 4-byte big-endian length and a pickle: a request ``(id, method, args, kwargs)``,
a response ``(id, ok, value)``. Only the methods a server names can be called. Trust is the
same as between Ray's own workers (which exchange pickles too): the socket sits in a folder
only the user can enter (0700, checked), the file is 0600 and a peer of another uid is
refused (``SO_PEERCRED``).

Every task has an owner: ``PipeServer.run`` holds the connections and their requests in
TaskGroups, ``PipeHub.run`` holds the client connections. Everything waiting is bounded
(``max_inflight`` requests per connection, ``max_pending`` calls per client).
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import pickle
import socket
import stat
import struct
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from moltbot.errors import BadRequest, MoltbotError, PipeClosed, Unavailable

log = logging.getLogger("moltbot.pipe")

MAX_FRAME = 256 * 2**20
SUN_PATH_MAX = 107  # bytes a Unix socket path may have on Linux (108 with the NUL)
_LEN = struct.Struct("!I")
_PEERCRED = struct.Struct("3i")  # pid, uid, gid


def encode(obj: Any) -> bytes:
    body = pickle.dumps(obj, protocol=5)
    if len(body) > MAX_FRAME:
        raise ValueError("frame too large")
    return _LEN.pack(len(body)) + body


async def read_frame(reader: asyncio.StreamReader) -> Any:
    """The next frame, or None at a clean end of the stream."""
    try:
        head = await reader.readexactly(_LEN.size)
    except asyncio.IncompleteReadError as exc:
        if exc.partial:
            raise PipeClosed("the pipe ended inside a frame") from None
        return None
    (size,) = _LEN.unpack(head)
    if size > MAX_FRAME:
        raise PipeClosed("a frame over the size limit")
    try:
        # the peer is this user's own process (private folder, 0600, uid checked at accept)
        return pickle.loads(await reader.readexactly(size))  # noqa: S301
    except asyncio.IncompleteReadError:
        raise PipeClosed("the pipe ended inside a frame") from None


def private_folder(folder: Path) -> Path | None:
    """``folder`` made (0700) and checked: ours and closed to others; None if it is not."""
    try:
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        st = folder.stat()
    except OSError:
        return None
    if st.st_uid != os.getuid() or stat.S_IMODE(st.st_mode) & 0o077:
        log.warning("pipe folder %s is not private to this user; pipes are off", folder)
        return None
    return folder


def socket_path(folder: Path, name: str) -> Path | None:
    path = folder / f"{name}.sock"
    return path if len(os.fsencode(path)) <= SUN_PATH_MAX else None


def sweep(folder: Path) -> int:
    """Remove the sockets of processes that are gone (named ``<pid>.sock``, or
    ``<pid>-<actor>.sock`` for a second actor of one process; a process killed outright leaves
    its files behind). How many were removed."""
    removed = 0
    for sock in folder.glob("*.sock"):
        pid = sock.stem.split("-", 1)[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            with contextlib.suppress(OSError):
                sock.unlink()
                removed += 1
        except OSError:  # alive (or not ours to signal): leave it
            pass
    return removed


def peer_uid(writer: asyncio.StreamWriter) -> int | None:
    sock = writer.get_extra_info("socket")
    if sock is None:
        return None
    with contextlib.suppress(OSError):
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
        return int(_PEERCRED.unpack(raw)[1])
    return None


def portable(exc: BaseException, where: str) -> MoltbotError:
    """What the caller gets for ``exc``: a moltbot error as itself, anything else (and a
    lost pipe of the server's own) as ``Unavailable``, never the foreign message."""
    if isinstance(exc, MoltbotError) and not isinstance(exc, PipeClosed):
        try:
            pickle.loads(pickle.dumps(exc, protocol=5))  # noqa: S301 (our own bytes)
            return exc
        except Exception:
            log.warning("%s: %s does not pickle", where, type(exc).__name__)
    else:
        log.error("%s failed: %s", where, type(exc).__name__)
    return Unavailable(f"{where} could not handle the request")


class PipeServer:
    """Serves ``methods`` of ``target`` on a Unix socket at ``path`` until cancelled."""

    def __init__(
        self,
        target: object,
        methods: Iterable[str],
        path: Path,
        *,
        name: str = "pipe",
        max_inflight: int = 256,
        max_connections: int = 64,
    ) -> None:
        self.target = target
        self.methods = frozenset(methods)
        self.path = path
        self.name = name
        self.max_inflight = max_inflight
        self.started = asyncio.Event()
        self.requests = 0
        self._incoming: asyncio.Queue[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = (
            asyncio.Queue(max_connections)
        )

    async def run(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # a socket left by an earlier process with this pid
        server = await asyncio.start_unix_server(self._on_connect, self.path, limit=2**20)
        try:
            os.chmod(self.path, 0o600)
            self.started.set()
            async with asyncio.TaskGroup() as tg:
                while True:
                    reader, writer = await self._incoming.get()
                    tg.create_task(self._serve(reader, writer))
        finally:
            server.close()
            with contextlib.suppress(OSError):
                self.path.unlink()

    def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if peer_uid(writer) != os.getuid():
            log.warning("%s: refused a connection from another user", self.name)
            writer.close()
            return
        try:
            self._incoming.put_nowait((reader, writer))
        except asyncio.QueueFull:
            log.warning("%s: too many connections; one refused", self.name)
            writer.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        room = asyncio.Semaphore(self.max_inflight)
        try:
            async with asyncio.TaskGroup() as tg:
                while True:
                    await room.acquire()  # a full connection is read no further
                    try:
                        request = await read_frame(reader)
                    except (PipeClosed, pickle.UnpicklingError, EOFError, ValueError) as exc:
                        log.warning("%s: bad frame, connection closed (%s)", self.name, exc)
                        break
                    except ConnectionError:
                        break
                    if request is None:
                        break
                    tg.create_task(self._handle(request, writer, room))
        finally:  # the requests that were running have answered (or could not)
            writer.close()

    async def _handle(
        self, request: Any, writer: asyncio.StreamWriter, room: asyncio.Semaphore
    ) -> None:
        rid: Any = None
        try:
            rid, method, args, kwargs = request
            self.requests += 1
            if method not in self.methods:
                raise BadRequest(f"{self.name}: no method {method!r} on this pipe")
            value = getattr(self.target, method)(*args, **kwargs)
            if inspect.isawaitable(value):
                value = await value
            frame = encode((rid, True, value))
        except Exception as exc:
            frame = encode((rid, False, portable(exc, self.name)))
        finally:
            room.release()
        if writer.is_closing():
            return
        writer.write(frame)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
