"""Audit records on their way to the audit log, without making anyone wait for it.

:class:`AuditQueue` is the one audit forwarder: ``record`` queues a record (bounded; a full
queue drops it and logs) and never blocks or raises, so it serves as an ``AuditSink`` or a
vault's ``on_read`` hook; one task the queue owns hands the records, in order, to an async
``send`` (the gateway server's ``audit`` callable, or the store actor through Ray in
``actors.audit``). ``aclose`` sends what is queued for a short grace, then stops that task.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from moltbot.security.audit import secret_read_fields
from moltbot.security.vault import ReadHook

log = logging.getLogger("moltbot.audit")

AUDIT_QUEUE = 256  # records waiting to be sent; beyond that they are dropped
CLOSE_GRACE_S = 2.0

AuditSend = Callable[[str, dict[str, Any]], Awaitable[Any]]
"""Writes one audit record (kind, fields) to the log; may wait, may raise."""


class AuditQueue:
    """Records of one ``source`` (an actor path, "gateway") queued for ``send``."""

    def __init__(self, send: AuditSend, *, source: str, maxsize: int = AUDIT_QUEUE) -> None:
        self.source = source
        self._send = send
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
                await self._send(kind, fields)
            except Exception as exc:  # no store, a damaged log: log and go on
                why = getattr(exc, "code", type(exc).__name__)
                log.warning("%s: %s record not audited (%s)", self.source, kind, why)
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
