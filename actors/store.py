"""The store actor: durable state on the head node, behind one name (``moltbot.store``).

It owns the inbound journal (``state/inbound.jsonl``), the session transcripts
(``sessions/*.jsonl``), small durable blobs (``state/kv/<key>``, e.g. pairing state per
channel account) and the audit log (``audit/audit.jsonl``, a hash chain) of the
``MOLTBOT_HOME`` in its environment (or ``home`` when given). All file I/O runs off the event
loop. Every write is fsynced before the call returns, so a restarted
store sees everything an earlier incarnation acknowledged.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgspec
import ray

from actors.base import CHILD_OPTIONS, ChildBase
from moltbot import paths
from moltbot.agent.service import chat_records
from moltbot.messages import InboundMessage
from moltbot.security.audit import AuditLog
from moltbot.store import InboundJournal, KeyValueStore, TranscriptStore


class StoreCore(ChildBase):
    PIPE_METHODS = frozenset(
        {"accept_many", "mark_done_many", "pending", "transcript_append_batch", "transcript_load"}
    )

    def __init__(self, *, path: str = "", home: str | None = None, **kw: Any) -> None:
        super().__init__(path=path, **kw)
        self._home = Path(home) if home else None
        self._journal: InboundJournal | None = None
        self._transcripts: TranscriptStore | None = None
        self._kv: KeyValueStore | None = None
        self._audit: AuditLog | None = None
        self._audit_path = Path()

    async def setup(self) -> None:
        base = self._home or paths.home()
        state = paths.state_dir(base)
        self._audit_path = paths.audit_file(base)
        self._journal = await asyncio.to_thread(InboundJournal, state)
        self._transcripts = await asyncio.to_thread(TranscriptStore, paths.sessions_dir(base))
        self._kv = await asyncio.to_thread(KeyValueStore, state / "kv")

    @property
    def journal(self) -> InboundJournal:
        assert self._journal is not None, "store not set up"
        return self._journal

    @property
    def transcripts(self) -> TranscriptStore:
        assert self._transcripts is not None, "store not set up"
        return self._transcripts

    # --- inbound journal -----------------------------------------------------------------------
    async def accept_many(self, msgs: list[InboundMessage]) -> list[bool]:
        """Journal a batch (one write, one fsync; a channel group-commits its messages): per
        message False when its id was already journaled."""
        await self._ready.wait()
        return await asyncio.to_thread(self.journal.accept_many, msgs)

    async def mark_done_many(self, msg_ids: list[str]) -> list[bool]:
        await self._ready.wait()
        return await asyncio.to_thread(self.journal.mark_done_many, msg_ids)

    async def pending(
        self, channel: str | None = None, account: str | None = None
    ) -> list[InboundMessage]:
        """Accepted but unfinished messages in arrival order, optionally of one channel/account."""
        await self._ready.wait()
        msgs = await asyncio.to_thread(self.journal.pending)
        return [
            m
            for m in msgs
            if (channel is None or m.channel == channel)
            and (account is None or m.account == account)
        ]

    # --- transcripts -------------------------------------------------------------------------
    async def transcript_load(self, session: str) -> list[dict[str, Any]]:
        await self._ready.wait()
        return await asyncio.to_thread(self.transcripts.load, session)

    async def transcript_append_batch(
        self, items: list[tuple[str, list[dict[str, Any]]]]
    ) -> list[str | None]:
        """Append records of several sessions at once (an agent group-commits its turns), one
        fsync per session file: per item None when written, else why not."""
        await self._ready.wait()
        return await asyncio.to_thread(self.transcripts.append_batch, items)

    async def history(self, session: str, limit: int = 50) -> list[dict[str, Any]]:
        """The newest ``limit`` user/assistant messages of a session, oldest first."""
        records = await self.transcript_load(session)
        return chat_records(records, limit)

    async def sessions_list(self) -> list[dict[str, Any]]:
        await self._ready.wait()
        infos = await asyncio.to_thread(self.transcripts.list_sessions)
        return [msgspec.to_builtins(i) for i in infos]

    async def sessions_reset(self, session: str) -> bool:
        """Archive the session's transcript; False when there was nothing to reset."""
        await self._ready.wait()
        return await asyncio.to_thread(self.transcripts.reset, session) is not None

    # --- small durable values ------------------------------------------------------------------
    @property
    def kv(self) -> KeyValueStore:
        assert self._kv is not None, "store not set up"
        return self._kv

    async def kv_get(self, key: str) -> bytes | None:
        await self._ready.wait()
        return await asyncio.to_thread(self.kv.get, key)

    async def kv_put(self, key: str, value: bytes) -> None:
        """Replace the value of ``key`` atomically (see ``moltbot.store.kv``)."""
        await self._ready.wait()
        await asyncio.to_thread(self.kv.put, key, value)

    # --- audit log -------------------------------------------------------------------------------
    async def audit_append(self, kind: str, fields: dict[str, Any]) -> str:
        """Append one audit record (sanitized, fsynced); returns its hash. The log is opened on
        first use, so a damaged log fails these calls, never the store's other duties."""
        await self._ready.wait()

        def append() -> str:
            if self._audit is None:
                self._audit = AuditLog(self._audit_path)
            return self._audit.append(kind, fields)

        return await asyncio.to_thread(append)

    def info(self) -> dict[str, Any]:
        data = super().info()
        if self._journal is not None:
            data["journal"] = self._journal.stats()
        return data


# in a tree it runs inside the root's process (``actors.registry.IN_PROCESS``); on its own
# (tests, tools) it is an actor of its own
StoreActor = ray.remote(**CHILD_OPTIONS)(StoreCore)
