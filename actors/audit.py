"""Audit records from inside an actor, sent to the store's ``audit_append``.

An actor may run on another machine than the head node, so it never writes the audit file
itself: :class:`AuditForwarder` is the pure :class:`~moltbot.security.audit_queue.AuditQueue`
(bounded, drop-when-full, one owned sending task) whose ``send`` calls the store, each record
within a short deadline.
"""

from __future__ import annotations

from typing import Any

from actors import routing
from moltbot.security.audit_queue import AUDIT_QUEUE, AuditQueue

AUDIT_DEADLINE_S = 5.0


class AuditForwarder(AuditQueue):
    """Records of one actor (``source``: its path) on their way to the store."""

    def __init__(
        self,
        namespace: str,
        source: str,
        *,
        maxsize: int = AUDIT_QUEUE,
        deadline_s: float = AUDIT_DEADLINE_S,
    ) -> None:
        super().__init__(self.send, source=source, maxsize=maxsize)
        self.namespace = namespace
        self.deadline_s = deadline_s

    async def send(self, kind: str, fields: dict[str, Any]) -> str:
        """Append one record to the store's audit log now (its chain digest)."""
        digest: str = await routing.call(
            self.namespace, "store", "audit_append", kind, fields, deadline_s=self.deadline_s
        )
        return digest
