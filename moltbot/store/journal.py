"""The inbound journal: a message is durable (fsynced) before its platform offset is acked.

One JSONL file, ``inbound.jsonl``, of three record kinds:

- ``{"k":"in","msg":{...}}``  an accepted ``InboundMessage``;
- ``{"k":"done","id":"..."}`` its turn finished and the reply was sent;
- ``{"k":"seen","ids":[...]}`` written only by compaction: ids already done.

``accept`` returns False for an id already journaled (platforms redeliver after a crash or a
retry). The index is rebuilt from disk at open, so de-duplication survives restarts.
``pending()`` is accepted minus done, in arrival order: what a restarted actor replays.

Memory bound (the documented choice): pending messages are all kept (they are needed for
replay), but only the newest ``max_done_ids`` done ids (default 100 000) are remembered for
de-duplication. Platforms redeliver recent updates only (Telegram offsets, Slack retries within
minutes), so an id older than the last 100 000 finished messages is treated as new.

Compaction: when the file passes ``compact_bytes`` and is more than twice the size of its last
compacted form, it is rewritten (temp file, fsync, atomic rename) as the pending messages plus
one ``seen`` record of the remembered done ids. A torn last line is skipped on read, and the
next append first ends it with a newline.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import msgspec

from moltbot.messages import InboundMessage
from moltbot.security.fsmodes import atomic_write
from moltbot.store.transcripts import append_lines

log = logging.getLogger(__name__)

FILE_NAME = "inbound.jsonl"


class _In(msgspec.Struct, tag_field="k", tag="in"):
    msg: InboundMessage


class _Done(msgspec.Struct, tag_field="k", tag="done"):
    id: str


class _Seen(msgspec.Struct, tag_field="k", tag="seen"):
    ids: list[str]


_Record = _In | _Done | _Seen
_decoder = msgspec.json.Decoder(_Record)
_encoder = msgspec.json.Encoder()


class InboundJournal:
    def __init__(
        self,
        folder: Path,
        *,
        max_done_ids: int = 100_000,
        compact_bytes: int = 16 * 1024 * 1024,
    ) -> None:
        if max_done_ids < 1:
            raise ValueError("max_done_ids must be at least 1")
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.path = self.folder / FILE_NAME
        self._max_done = max_done_ids
        self._compact_bytes = compact_bytes
        self._lock = threading.Lock()
        self._pending: dict[str, InboundMessage] = {}
        self._done: OrderedDict[str, None] = OrderedDict()
        self._size = 0
        self._compacted_size = 0
        self._load()

    # --- reading -------------------------------------------------------------------------
    def _load(self) -> None:
        for stale in self.folder.glob(f".{self.path.name}.*.tmp"):  # a compaction cut short
            stale.unlink(missing_ok=True)
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            raw = b""
        self._size = self._compacted_size = len(raw)
        for n, line in enumerate(raw.split(b"\n")):
            if not line.strip():
                continue
            try:
                record = _decoder.decode(line)
            except (msgspec.DecodeError, msgspec.ValidationError):
                log.warning("inbound journal: skipping torn line %d", n + 1)
                continue
            self._apply(record)

    def _apply(self, record: _Record) -> None:
        if isinstance(record, _In):
            mid = record.msg.id
            if mid not in self._pending and mid not in self._done:
                self._pending[mid] = record.msg
        elif isinstance(record, _Done):
            self._pending.pop(record.id, None)
            self._remember(record.id)
        else:
            for mid in record.ids:
                self._remember(mid)

    def _remember(self, mid: str) -> None:
        self._done[mid] = None
        self._done.move_to_end(mid)
        while len(self._done) > self._max_done:
            self._done.popitem(last=False)

    # --- writing -------------------------------------------------------------------------
    def accept(self, msg: InboundMessage) -> bool:
        """Journal ``msg`` durably; False if its id was already journaled (a duplicate)."""
        return self.accept_many([msg])[0]

    def mark_done(self, msg_id: str) -> bool:
        """Record that ``msg_id`` is finished; False if it was not pending."""
        return self.mark_done_many([msg_id])[0]

    def accept_many(self, msgs: list[InboundMessage]) -> list[bool]:
        """``accept`` for several messages with one write and one fsync (group commit)."""
        with self._lock:
            out: list[bool] = []
            fresh: dict[str, InboundMessage] = {}
            for msg in msgs:
                new = msg.id not in self._pending and msg.id not in self._done
                out.append(new and msg.id not in fresh)
                if out[-1]:
                    fresh[msg.id] = msg
            self._write_many([_In(msg=m) for m in fresh.values()])
            self._pending.update(fresh)
            self._maybe_compact()  # after the state holds what was written: it is kept
            return out

    def mark_done_many(self, msg_ids: list[str]) -> list[bool]:
        """``mark_done`` for several ids with one write and one fsync (an id twice: once)."""
        with self._lock:
            out: list[bool] = []
            done: dict[str, None] = {}
            for mid in msg_ids:
                out.append(mid in self._pending and mid not in done)
                if out[-1]:
                    done[mid] = None
            self._write_many([_Done(id=mid) for mid in done])
            for mid in done:
                del self._pending[mid]
                self._remember(mid)
            self._maybe_compact()
            return out

    def _write_many(self, records: list[_Record]) -> None:
        if not records:
            return
        lines = [_encoder.encode(r) for r in records]
        append_lines(self.path, lines)
        self._size += sum(len(line) + 1 for line in lines)

    def _maybe_compact(self) -> None:
        if self._size > self._compact_bytes and self._size > 2 * self._compacted_size:
            self._compact()

    def pending(self) -> list[InboundMessage]:
        with self._lock:
            return list(self._pending.values())

    def seen(self, msg_id: str) -> bool:
        with self._lock:
            return msg_id in self._pending or msg_id in self._done

    def stats(self) -> dict[str, Any]:
        with self._lock:
            return {"pending": len(self._pending), "done_ids": len(self._done), "bytes": self._size}

    def _compact(self) -> None:
        lines = [_encoder.encode(_In(msg=m)) for m in self._pending.values()]
        lines.append(_encoder.encode(_Seen(ids=list(self._done))))
        data = b"\n".join(lines) + b"\n"
        atomic_write(self.path, data)
        self._size = self._compacted_size = len(data)
        log.info("inbound journal compacted to %d bytes", len(data))
