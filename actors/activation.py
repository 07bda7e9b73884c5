"""Socket activation in a supervisor (the root's, for the gateway): see
``moltbot.gateway.activation``.

A child spec with ``args["listen"]`` set and ``on_demand`` (``build_tree`` makes the loopback
gateway so) gets its port bound here at boot, before any child starts: a port in use fails
``moltbot up`` at once, naming the key. While the child sleeps this process waits for a
connection to be pending and then wakes it; the child takes the listening socket by the name
given in its ``listen`` argument, and accepts.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from actors.child_record import IDLE, Record
from moltbot.gateway.activation import Listener

log = logging.getLogger("moltbot.supervisor")
WATCH_S = 0.5  # a connection came while the child runs: look again after this long
RETRY_S = 1.0  # after a start that failed, before the next connection wakes it again


class Activations:
    """Mixed into the supervisor, which sets these attributes."""

    records: list[Record]
    _stopping: bool
    # the ports of socket-activated children, by id: ``_activate`` gives each supervisor its
    # own dict; until then (and in a supervisor with none) this empty one is only read
    _listeners: dict[str, Listener] = {}

    async def wake(self, child_id: str) -> dict[str, Any]:
        raise NotImplementedError

    def _activate(self, tg: asyncio.TaskGroup) -> None:
        """Bind the port of each socket-activated child and watch it (tasks of ``tg``)."""
        self._listeners = {}
        for rec in self.records:
            if not (rec.spec.on_demand and rec.spec.args.get("listen")):
                continue
            gw = rec.spec.args["config"].gateway
            listener = Listener(gw.bind, gw.port)  # ConfigError: the port is taken
            self._listeners[rec.spec.id] = listener
            tg.create_task(self._hand_over(listener))
            tg.create_task(self._watch_port(rec, listener))

    def _activation_args(self, rec: Record) -> dict[str, Any]:
        """The child's ``listen``: the name its listening socket is handed over under."""
        listener = self._listeners.get(rec.spec.id)
        return {"listen": listener.name} if listener is not None else {}

    async def _hand_over(self, listener: Listener) -> None:
        try:
            await listener.serve()
        finally:
            listener.close()

    async def _watch_port(self, rec: Record, listener: Listener) -> None:
        """While ``rec`` sleeps, wake it when a connection waits."""
        while True:
            await listener.pending()
            if rec.state != IDLE or self._stopping:  # it runs (and accepts), or restarts
                await asyncio.sleep(WATCH_S)
                continue
            try:
                await self.wake(rec.spec.id)
            except Exception as exc:  # its start failed (logged and audited by ``_start``)
                log.error(
                    "%s could not start for a connection: %s", rec.spec.id, type(exc).__name__
                )
                await asyncio.sleep(RETRY_S)
