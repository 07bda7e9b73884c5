"""The calling end of the local pipes (``moltbot.pipe``): one connection per server socket,
shared by every caller in this process, owned by the process's ``PipeHub``.

A call whose connection ends before its answer raises ``PipeClosed``: the server went away
(died, restarted, stopped), so the request may or may not have run. Callers only send
idempotent requests this way and try again, as they do when a Ray actor dies.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
from pathlib import Path
from typing import Any

from moltbot.errors import MoltbotError, PipeClosed, Unavailable
from moltbot.pipe import encode, read_frame

log = logging.getLogger("moltbot.pipe")


class PipeClient:
    """One connection to a ``PipeServer``. ``run`` connects and reads answers until the
    connection ends or is cancelled; then every call still waiting fails with PipeClosed."""

    def __init__(self, path: Path, *, max_pending: int = 4096) -> None:
        self.path = path
        self.connected: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.closed = False
        self.calls = 0
        self._writer: asyncio.StreamWriter | None = None
        self._pending: dict[int, asyncio.Future[tuple[bool, Any]]] = {}
        self._ids = itertools.count(1)
        self._room = asyncio.Semaphore(max_pending)

    async def run(self) -> None:
        try:
            try:
                reader, self._writer = await asyncio.open_unix_connection(self.path, limit=2**20)
            except OSError as exc:
                log.info("no pipe at %s (%s)", self.path.name, type(exc).__name__)
                self.connected.set_result(False)
                return
            self.connected.set_result(True)
            while True:
                frame = await read_frame(reader)
                if frame is None:
                    return
                rid, ok, value = frame
                fut = self._pending.pop(rid, None)
                if fut is not None and not fut.done():
                    fut.set_result((ok, value))
        except (PipeClosed, ConnectionError, ValueError, EOFError) as exc:
            log.info("pipe %s ended: %s", self.path.name, type(exc).__name__)
        except Exception as exc:  # an answer that would not unpickle: drop the connection
            log.warning("pipe %s: bad answer (%s)", self.path.name, type(exc).__name__)
        finally:
            self._close()

    def _close(self) -> None:
        self.closed = True
        if not self.connected.done():
            self.connected.set_result(False)
        if self._writer is not None:
            self._writer.close()
        pending, self._pending = self._pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(PipeClosed(f"the pipe to {self.path.name} closed"))

    async def call(self, method: str, *args: Any, **kwargs: Any) -> Any:
        """The method's result; its moltbot error raised as itself."""
        async with self._room:
            if self.closed or self._writer is None:
                raise PipeClosed(f"the pipe to {self.path.name} is closed")
            rid = next(self._ids)
            try:
                frame = encode((rid, method, args, kwargs))
            except Exception:  # an argument that does not pickle is the caller's bug
                raise Unavailable(f"{method}: the request could not be sent") from None
            fut: asyncio.Future[tuple[bool, Any]] = asyncio.get_running_loop().create_future()
            self._pending[rid] = fut
            self.calls += 1
            try:
                self._writer.write(frame)
                await self._writer.drain()
                ok, value = await fut
            except ConnectionError:
                raise PipeClosed(f"the pipe to {self.path.name} closed") from None
            finally:
                self._pending.pop(rid, None)
        if ok:
            return value
        if isinstance(value, MoltbotError):
            raise value
        raise Unavailable(f"{method} failed")


class PipeHub:
    """This process's client connections, one per server socket, while ``run`` runs."""

    def __init__(self) -> None:
        self._tg: asyncio.TaskGroup | None = None
        self._clients: dict[Path, PipeClient] = {}
        self._past_calls = 0  # of the connections that closed

    @property
    def running(self) -> bool:
        return self._tg is not None

    @property
    def calls(self) -> int:
        return self._past_calls + sum(c.calls for c in self._clients.values())

    async def run(self) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                await asyncio.Event().wait()
        finally:
            self._tg = None
            self._clients.clear()

    async def client(self, path: Path) -> PipeClient | None:
        """The connected client of ``path`` (connecting once for all callers); None when
        there is no server there or the hub is not running."""
        found = self._clients.get(path)
        if found is None or found.closed:
            if self._tg is None:
                return None
            if found is not None:
                self._past_calls += found.calls
            found = self._clients[path] = PipeClient(path)
            self._tg.create_task(found.run())
        if not await asyncio.shield(found.connected):
            with contextlib.suppress(KeyError):
                if self._clients[path] is found:
                    del self._clients[path]
            return None
        return found
