"""The audit log: an append-only JSONL hash chain (``$MOLTBOT_HOME/audit/audit.jsonl``).

Each line is one record in canonical JSON (sorted keys, no spaces, UTF-8)::

    {"fields":{...},"hash":"<hex>","kind":"login","prev":"<hex>","seq":1,"ts":1700000000.5}

- ``seq`` counts from 1, so record ``seq`` N is on line N.
- ``hash`` is the SHA-256 of the record's canonical JSON *without* ``hash``.
- ``prev`` is the previous record's ``hash`` (i.e. the SHA-256 of its canonical bytes); the
  first record's ``prev`` is 64 zeros.

``verify`` walks the chain and names the first bad line: a changed byte breaks that record's
hash (or its JSON), a removed or reordered line breaks ``seq``/``prev``, a rewritten record with
a recomputed hash breaks the next record's ``prev``. Cutting records off the *end* at a line
boundary cannot be seen from the chain alone (nothing after it refers to them).

Writers append under a thread lock and an exclusive ``flock`` on the file, fsync every record,
and keep the file 0600 in a 0700 folder. A crash can only tear the last line (one ``write`` of
one record, not yet acknowledged): before each append the writer truncates a last line that
does not end in a newline, so the chain continues from the last complete record. ``verify``
reports a torn last line until then (it cannot tell a torn write from a truncated file).

Field values are sanitized before writing: a key that names a secret (token, password, secret,
api key, ...) gets ``"[redacted]"``, long strings are shortened. Never pass secret values here.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import re
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import msgspec

from moltbot.clock import SYSTEM_CLOCK, Clock
from moltbot.errors import BadRequest, MoltbotError
from moltbot.security.fsmodes import ensure_private_dir

log = logging.getLogger(__name__)

GENESIS = "0" * 64
REDACTED = "[redacted]"
MAX_STRING = 2000
MAX_DEPTH = 8
KINDS = frozenset(
    {
        "login",
        "access_refused",
        "auth_failed",
        "lockout",
        "config_change",
        "secret_read",
        "tool_call",
        "approval",
        "pairing",
        "supervision",
        "plugin_denied",
    }
)
_KEYS = frozenset({"seq", "ts", "kind", "fields", "prev", "hash"})
_HEX64 = re.compile(r"[0-9a-f]{64}")
_SECRET_KEY = re.compile(
    r"(^|[_\-.])(token|tokens|password|passwd|secret|secrets|key|api_?key|apikey|passphrase|"
    r"private_?key|credentials?|cookie|authorization)$",
    re.IGNORECASE,
)
_CHUNK = 8192

AuditSink = Callable[[str, dict[str, Any]], None]
"""Records one audit event (kind, fields) without waiting or raising; fields hold no secret."""


class AuditError(MoltbotError):
    """The audit log cannot be appended to (its last record is damaged, or I/O failed)."""

    code = "audit_error"


class VerifyResult(msgspec.Struct, frozen=True, kw_only=True):
    ok: bool
    records: int  # records that verified (all of them when ``ok``)
    problem: str = ""
    line: int = 0  # 1-based line of the first problem, 0 when ok


# --- canonical form ----------------------------------------------------------------------------
def canonical(record: Mapping[str, Any]) -> bytes:
    """Sorted keys, no spaces, UTF-8: the bytes that are hashed and written."""
    return msgspec.json.encode(record, order="sorted")


def record_hash(record: Mapping[str, Any]) -> str:
    """SHA-256 hex of the canonical JSON of ``record`` without its ``hash`` key."""
    body = {k: v for k, v in record.items() if k != "hash"}
    return hashlib.sha256(canonical(body)).hexdigest()


def _secret_key(key: str) -> bool:
    return bool(_SECRET_KEY.search(key))


def sanitize(value: Any, depth: int = 0) -> Any:
    """A JSON-safe copy of ``value``: secret-named keys redacted, long strings shortened."""
    if depth > MAX_DEPTH:
        return "[too deep]"
    if isinstance(value, Mapping):
        out: dict[str, Any] = {}
        for k, v in value.items():
            key = str(k)
            out[key] = REDACTED if _secret_key(key) else sanitize(v, depth + 1)
        return out
    if isinstance(value, list | tuple | set | frozenset):
        return [sanitize(v, depth + 1) for v in value]
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else str(value)
    text = value if isinstance(value, str) else type(value).__name__
    if len(text) > MAX_STRING:
        text = text[:MAX_STRING] + f"...[{len(text) - MAX_STRING} more chars]"
    return text


def secret_read_fields(name: str, reader: str) -> dict[str, str]:
    """The fields of a ``secret_read`` record: the secret's name and who read it (never the
    value). ``reader`` is ``cli:<command>`` or an actor path such as ``channels/slack:work``."""
    return {"secret_name": name, "reader": reader}


# --- reading from the end --------------------------------------------------------------------
def _complete_end(fd: int, size: int) -> int:
    """Offset just after the last newline (0 if none): where the complete lines end."""
    pos = size
    while pos > 0:
        step = min(_CHUNK, pos)
        pos -= step
        cut = os.pread(fd, step, pos).rfind(b"\n")
        if cut >= 0:
            return pos + cut + 1
    return 0


def _lines_backwards(fd: int, end: int) -> Iterator[bytes]:
    """The lines (without newline) before offset ``end``, last first. ``end`` is 0 or just
    after a newline."""
    pos, buf, line_end = end, b"", end
    while line_end > 0:
        while True:
            stop = line_end - 1 - pos  # this line's newline is buf[stop]
            cut = buf.rfind(b"\n", 0, stop) if stop > 0 else -1
            if cut >= 0 or pos == 0:
                break
            step = min(_CHUNK, pos)
            pos -= step
            buf = os.pread(fd, step, pos) + buf
        start = pos + cut + 1 if cut >= 0 else 0
        yield buf[start - pos : line_end - 1 - pos]
        line_end = start


def tail(path: Path, n: int) -> list[dict[str, Any]]:
    """The last ``n`` complete, decodable records of the log (oldest first)."""
    if n <= 0:
        return []
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return []
    out: list[dict[str, Any]] = []
    try:
        size = os.fstat(fd).st_size
        end = _complete_end(fd, size)  # a torn last line is not a record
        for line in _lines_backwards(fd, end):
            try:
                rec = msgspec.json.decode(line)
            except msgspec.DecodeError:
                continue
            if isinstance(rec, dict):
                out.append(rec)
                if len(out) >= n:
                    break
    finally:
        os.close(fd)
    out.reverse()
    return out


# --- writing ----------------------------------------------------------------------------------
def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class AuditLog:
    """Appends records to the hash chain at ``path`` (thread-safe; process-safe via flock)."""

    def __init__(self, path: Path, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.path = Path(path)
        self._clock = clock
        self._lock = threading.Lock()
        ensure_private_dir(self.path.parent)
        with self._locked() as fd:  # repair a torn last line and check the chain's head now
            self._head(fd)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[int]:
        with self._lock:
            fd = os.open(self.path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                if os.fstat(fd).st_mode & 0o077:
                    os.fchmod(fd, 0o600)
                fcntl.flock(fd, fcntl.LOCK_EX)
                yield fd
            finally:
                os.close(fd)  # closing releases the flock

    def _head(self, fd: int) -> tuple[int, str]:
        """(seq, hash) of the last complete record; truncates a torn last line first."""
        size = os.fstat(fd).st_size
        if size == 0:
            return 0, GENESIS
        keep = _complete_end(fd, size)
        if keep != size:
            log.warning(
                "audit log %s ends in a torn line (%d bytes): truncated to the last record",
                self.path,
                size - keep,
            )
            os.ftruncate(fd, keep)
            os.fsync(fd)
            size = keep
            if size == 0:
                return 0, GENESIS
        line = next(_lines_backwards(fd, size))
        try:
            rec = msgspec.json.decode(line)
            seq, digest = rec["seq"], rec["hash"]
            if not isinstance(seq, int) or not _HEX64.fullmatch(digest):
                raise TypeError("bad seq/hash")
        except (msgspec.DecodeError, KeyError, TypeError) as exc:
            raise AuditError(
                f"the last record of the audit log {self.path} is damaged ({type(exc).__name__})",
                hint="run `moltbot audit verify`; move the file away to start a new chain",
            ) from None
        return seq, digest

    def append(self, kind: str, fields: Mapping[str, Any] | None = None) -> str:
        """Append one record (fsynced before returning); returns its hash."""
        if kind not in KINDS:
            raise BadRequest(f"unknown audit record kind {kind!r}", hint=", ".join(sorted(KINDS)))
        clean = sanitize(dict(fields or {}))
        with self._locked() as fd:
            seq, prev = self._head(fd)
            rec: dict[str, Any] = {
                "seq": seq + 1,
                "ts": round(self._clock.time(), 6),
                "kind": kind,
                "fields": clean,
                "prev": prev,
            }
            rec["hash"] = record_hash(rec)
            _write_all(fd, canonical(rec) + b"\n")
            os.fsync(fd)
        return str(rec["hash"])


# --- verifying --------------------------------------------------------------------------------
def _well_formed(rec: Any) -> bool:
    return (
        isinstance(rec, dict)
        and set(rec) == _KEYS
        and type(rec["seq"]) is int
        and isinstance(rec["ts"], int | float)
        and isinstance(rec["kind"], str)
        and isinstance(rec["fields"], dict)
        and isinstance(rec["prev"], str)
        and isinstance(rec["hash"], str)
    )


def _check(raw: bytes, lineno: int, seq: int, prev: str) -> str:
    """Why line ``lineno`` is not the record that should follow (seq, prev); '' when it is."""
    if not raw:
        return "is empty"
    try:
        rec = msgspec.json.decode(raw)
    except msgspec.DecodeError:
        return "is not valid JSON (a changed byte or a torn write)"
    if not _well_formed(rec):
        return "is not an audit record (wrong fields or types)"
    if canonical(rec) != raw:
        return "is not in canonical form (the line was edited)"
    if record_hash(rec) != rec["hash"]:
        return "does not match its hash (the record was changed)"
    if rec["seq"] != seq:
        why = "a record before it was removed" if rec["seq"] > seq else "records were duplicated"
        return f"has seq {rec['seq']} where {seq} was expected ({why}, or lines were reordered)"
    if rec["prev"] != prev:
        return f"does not chain to line {lineno - 1} (a record before it was replaced or removed)"
    return ""


def verify(path: Path) -> VerifyResult:
    """Check the whole chain; the result names the first bad line and why. A missing file is
    an empty, intact log."""
    try:
        fh = open(path, "rb")  # closed by the `with` below; read line by line
    except FileNotFoundError:
        return VerifyResult(ok=True, records=0)
    prev, count = GENESIS, 0
    with fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.endswith(b"\n"):
                return VerifyResult(
                    ok=False,
                    records=count,
                    line=lineno,
                    problem=f"line {lineno} is incomplete: the file ends inside a record "
                    "(truncated, or a write was torn)",
                )
            raw = line[:-1]
            why = _check(raw, lineno, count + 1, prev)
            if why:
                return VerifyResult(
                    ok=False, records=count, line=lineno, problem=f"line {lineno} {why}"
                )
            prev = msgspec.json.decode(raw)["hash"]
            count += 1
    return VerifyResult(ok=True, records=count)
