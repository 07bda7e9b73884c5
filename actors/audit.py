"""Audit records from inside an actor, sent to the store's ``audit_append``.

An actor may run on another machine than the head node, so it never writes the audit file
itself: :class:`AuditForwarder` queues records (bounded; a full queue drops and logs) and one
task it owns sends them to the store, in order, each within a short deadline. ``record`` never
blocks and never raises, so it can serve as a pure component's audit sink or a vault's
``on_read`` hook (:meth:`AuditForwarder.secret_reader`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from actors import routing
from moltbot.security.audit import secret_read_fields
from moltbot.security.vault import ReadHook

log = logging.getLogger("moltbot.audit")

AUDIT_QUEUE = 256  # records waiting for the store; beyond that they are dropped
AUDIT_DEADLINE_S = 5.0
CLOSE_GRACE_S = 2.0


class AuditForwarder:
    """Records of one actor (``source``: its path) on their way to the store."""

    def __init__(
        self,
        namespace: str,
        source: str,
        *,
        maxsize: int = AUDIT_QUEUE,
        deadline_s: float = AUDIT_DEADLINE_S,
    ) -> None:
        self.namespace = namespace
        self.source = source
        self.deadline_s = deadline_s
        self._queue: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue(maxsize)
        self._task: asyncio.Task[None] | None = None

    def record(self, kind: str, fields: dict[str, Any]) -> None:
        """Queue one record; the sending task starts on the running loop at first use."""
        try:
            self._queue.put_nowait((kind, dict(fields)))
        except asyncio.QueueFull:
            log.warning("%s: audit queue full, %s record dropped", self.source, kind)
            return
        if self._task is None or self._task.done():
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop in this thread: it goes with the next record
                return
            self._task = loop.create_task(self._forward(), name="audit-forward")

    def secret_reader(self, reader: str = "") -> ReadHook:
        """A vault ``on_read`` hook recording ``secret_read`` (name and ``reader``, default
        ``source``)."""
        who = reader or self.source
        return lambda name: self.record("secret_read", secret_read_fields(name, who))

    async def _forward(self) -> None:
        while True:
            kind, fields = await self._queue.get()
            try:
                await routing.call(
                    self.namespace,
                    "store",
                    "audit_append",
                    kind,
                    fields,
                    deadline_s=self.deadline_s,
                )
            except Exception as exc:  # no store, a damaged log: log and go on
                log.warning("%s: %s record not audited (%s)", self.source, kind, type(exc).__name__)
            finally:
                self._queue.task_done()

    async def aclose(self, grace_s: float = CLOSE_GRACE_S) -> None:
        """Send what is queued (for up to ``grace_s``), then stop the sending task."""
        task = self._task
        if task is None:
            return
        if not task.done():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._queue.join(), grace_s)
        task.cancel()
        await asyncio.wait([task])  # its cancellation is not ours: asyncio.wait does not raise it
        self._task = None
