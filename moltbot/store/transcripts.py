"""Transcripts: one append-only JSONL file per session, every append fsynced.

File names never come from the session key verbatim: ``<safe slug>-<sha256 prefix>.jsonl``,
where the slug keeps only ``[A-Za-z0-9_-]`` (so ``../../etc`` cannot leave the folder). The
first line of a file is a header holding the real key (written atomically: temp file, fsync,
rename), so ``list_sessions`` can name sessions. A crash can tear only the last line: readers
skip lines that do not decode, and the next append first ends the torn line with a newline.
``reset`` moves the file to ``archive/`` with a timestamp, it never deletes.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import re
import threading
from pathlib import Path
from typing import Any

import msgspec

from moltbot.clock import SYSTEM_CLOCK, Clock
from moltbot.security.fsmodes import atomic_write, fsync_dir, write_all

log = logging.getLogger(__name__)

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
HEADER = "moltbot.transcript"


class SessionInfo(msgspec.Struct, frozen=True, kw_only=True):
    key: str
    messages: int
    updated: float


def file_stem(session: str) -> str:
    """A safe, unique, stable file stem for a session key."""
    slug = _UNSAFE.sub("_", session).strip("_")[:48] or "session"
    digest = hashlib.sha256(session.encode("utf-8")).hexdigest()[:20]
    return f"{slug}-{digest}"


def append_line(path: Path, line: bytes) -> None:
    """Append one line and fsync; if the file ends in a torn line, end it first."""
    append_lines(path, [line])


def append_lines(path: Path, lines: list[bytes]) -> None:
    """Append lines with one write and one fsync; a torn last line is ended first."""
    data = b"".join(line + b"\n" for line in lines)
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
    try:
        size = os.fstat(fd).st_size
        if size and os.pread(fd, 1, size - 1) != b"\n":
            data = b"\n" + data
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def read_lines(path: Path) -> list[Any]:
    """Decode every JSON line; undecodable (torn) lines are skipped."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    out: list[Any] = []
    for n, line in enumerate(raw.split(b"\n")):
        if not line.strip():
            continue
        try:
            out.append(msgspec.json.decode(line))
        except msgspec.DecodeError:
            log.warning("skipping a torn line %d in %s", n + 1, path.name)
    return out


def _is_header(record: Any) -> bool:
    return isinstance(record, dict) and record.get("type") == HEADER


class TranscriptStore:
    """Synchronous, thread-safe transcript files under ``folder``."""

    def __init__(self, folder: Path, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.folder = Path(folder)
        self.archive = self.folder / "archive"
        self.archive.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._clock = clock
        self._lock = threading.Lock()

    def path_for(self, session: str) -> Path:
        return self.folder / f"{file_stem(session)}.jsonl"

    def _create(self, path: Path, session: str) -> None:
        header = {"type": HEADER, "key": session, "created": self._clock.time()}
        atomic_write(path, msgspec.json.encode(header) + b"\n")

    def append(self, session: str, record: dict[str, Any]) -> None:
        self.append_many(session, [record])

    def append_many(self, session: str, records: list[dict[str, Any]]) -> None:
        """Append records together: one write, one fsync (all of them, or a torn last line)."""
        if not records:
            return
        lines = [msgspec.json.encode(r) for r in records]
        path = self.path_for(session)
        with self._lock:
            if not path.exists():
                self._create(path, session)
            append_lines(path, lines)

    def append_batch(self, items: list[tuple[str, list[dict[str, Any]]]]) -> list[str | None]:
        """``append_many`` for several sessions (group commit): one write and one fsync per
        file. Each item's outcome: None when written, else why it failed (that item only)."""
        by_session: dict[str, list[dict[str, Any]]] = {}
        for session, records in items:
            by_session.setdefault(session, []).extend(records)
        failed: dict[str, str] = {}
        for session, records in by_session.items():
            try:
                self.append_many(session, records)
            except OSError as exc:
                log.error("transcript of a session not written: %s", type(exc).__name__)
                failed[session] = "the transcript could not be written"
        return [failed.get(session) for session, _ in items]

    def load(self, session: str) -> list[dict[str, Any]]:
        with self._lock:
            records = read_lines(self.path_for(session))
        return [r for r in records if isinstance(r, dict) and not _is_header(r)]

    def reset(self, session: str) -> Path | None:
        """Archive the session's transcript; returns where it went (None: nothing to reset)."""
        path = self.path_for(session)
        with self._lock:
            if not path.exists():
                return None
            stamp = int(self._clock.time() * 1000)
            target = self.archive / f"{path.stem}.{stamp}.jsonl"
            n = 0
            while target.exists():
                n += 1
                target = self.archive / f"{path.stem}.{stamp}-{n}.jsonl"
            os.replace(path, target)
            fsync_dir(self.folder)
            fsync_dir(self.archive)
        return target

    def list_sessions(self) -> list[SessionInfo]:
        """Every live session, most recently updated first (archived ones are not listed)."""
        infos: list[SessionInfo] = []
        with self._lock:
            for path in self.folder.glob("*.jsonl"):
                try:
                    raw = path.read_bytes()
                    updated = path.stat().st_mtime
                except OSError:
                    continue
                first, _, rest = raw.partition(b"\n")
                try:
                    header = msgspec.json.decode(first)
                except msgspec.DecodeError:
                    continue
                if not _is_header(header):
                    continue
                count = sum(1 for line in rest.split(b"\n") if line.strip())
                infos.append(SessionInfo(key=str(header["key"]), messages=count, updated=updated))
        infos.sort(key=lambda i: i.updated, reverse=True)
        return infos


class AsyncTranscripts:
    """The async face of a ``TranscriptStore`` (file I/O off the event loop).

    Satisfies ``moltbot.agent.loop.TranscriptLog``.
    """

    def __init__(self, store: TranscriptStore) -> None:
        self.store = store

    async def load(self, session: str) -> list[dict[str, Any]]:
        return await asyncio.to_thread(self.store.load, session)

    async def append(self, session: str, record: dict[str, Any]) -> None:
        await asyncio.to_thread(self.store.append, session, record)

    async def append_many(self, session: str, records: list[dict[str, Any]]) -> None:
        await asyncio.to_thread(self.store.append_many, session, records)

    async def reset(self, session: str) -> Path | None:
        return await asyncio.to_thread(self.store.reset, session)

    async def list_sessions(self) -> list[SessionInfo]:
        return await asyncio.to_thread(self.store.list_sessions)
