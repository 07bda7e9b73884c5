"""The audit log: an append-only JSONL hash chain (``$MOLTBOT_HOME/audit/audit.jsonl``), sealed.

Each line is one record in canonical JSON (sorted keys, no spaces, UTF-8)::

    {"fields":{...},"hash":"<hex>","kind":"login","mac":"<hex>","prev":"<hex>","seq":1,"ts":...}

- ``seq`` counts from 1, so record ``seq`` N is on line N.
- ``hash`` is the SHA-256 of the record's canonical JSON *without* ``hash`` and ``mac``.
- ``mac`` is the HMAC of ``hash`` under a key kept apart from the log, and the chain head is
  anchored after every append (``moltbot.security.audit_seal``): a rewritten file with
  recomputed hashes, or a cut-off end, is found by ``verify``. Records written before the seal
  existed have no ``mac``; they verify as *legacy* (chain only), and the sealed part follows.
- ``prev`` is the previous record's ``hash`` (i.e. the SHA-256 of its canonical bytes); the
  first record's ``prev`` is 64 zeros.

``verify`` walks the chain and names the first bad line: a changed byte breaks that record's
hash (or its JSON), a removed or reordered line breaks ``seq``/``prev``, a rewritten record with
a recomputed hash breaks the next record's ``prev``, a record rewritten with all hashes
recomputed breaks its MAC, and records cut off the *end* are missing from the anchor.

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
from moltbot.security import audit_seal as seal
from moltbot.security.fsmodes import ensure_private_dir, write_all

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
        "channel",
        "webhook_refused",
    }
)
_KEYS = frozenset({"seq", "ts", "kind", "fields", "prev", "hash"})  # a legacy record
_SEALED_KEYS = _KEYS | {"mac"}
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
    line: int = 0  # 1-based line of the first problem, 0 when ok (or a problem of the anchor)
    legacy: int = 0  # of ``records``, those written before the seal (no MAC: chain only)
    note: str = ""  # something worth saying about a log that is ok


# --- canonical form ----------------------------------------------------------------------------
def canonical(record: Mapping[str, Any]) -> bytes:
    """Sorted keys, no spaces, UTF-8: the bytes that are hashed and written."""
    return msgspec.json.encode(record, order="sorted")


def record_hash(record: Mapping[str, Any]) -> str:
    """SHA-256 hex of the canonical JSON of ``record`` without its ``hash`` and ``mac`` keys."""
    body = {k: v for k, v in record.items() if k not in ("hash", "mac")}
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
class AuditLog:
    """Appends sealed records to the hash chain at ``path`` (thread-safe; process-safe via
    flock). The key and the anchor default to ``<home>/credentials`` beside ``<home>/audit``;
    a missing key is made, unless the log already holds sealed records (then its loss is an
    ``AuditError``: a new key would hide whatever was done to the old records)."""

    def __init__(
        self,
        path: Path,
        *,
        clock: Clock = SYSTEM_CLOCK,
        key_file: Path | None = None,
        anchor_file: Path | None = None,
    ) -> None:
        self.path = Path(path)
        self._clock = clock
        self._lock = threading.Lock()
        self._key_file = key_file or seal.key_path(self.path)
        self._anchor_file = anchor_file or seal.anchor_path(self.path)
        ensure_private_dir(self.path.parent)
        with self._locked() as fd:  # repair a torn last line and check the chain's head now
            self._head(fd)
            key = seal.load_key(self._key_file)
            if key is None and self._sealed(fd):
                raise AuditError(
                    f"the audit log's key {self._key_file} is missing or damaged",
                    hint="restore it from a backup, or move the audit log away to start anew",
                )
            self._key = key or seal.create_key(self._key_file)

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
            digest = record_hash(rec)
            rec["hash"] = digest
            rec["mac"] = seal.record_mac(self._key, digest)
            write_all(fd, canonical(rec) + b"\n")
            os.fsync(fd)
            seal.write_anchor(self._anchor_file, self._key, seq + 1, digest)
        return digest

    def _sealed(self, fd: int) -> bool:
        """Whether the last record carries a MAC (the log has been sealed)."""
        size = os.fstat(fd).st_size
        if size == 0:
            return False
        try:
            last = msgspec.json.decode(next(_lines_backwards(fd, size)))
        except msgspec.DecodeError:
            return False
        return isinstance(last, dict) and "mac" in last


# --- verifying --------------------------------------------------------------------------------
def _well_formed(rec: Any) -> bool:
    return (
        isinstance(rec, dict)
        and set(rec) in (_KEYS, _SEALED_KEYS)
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


def _seal_problem(rec: dict[str, Any], key: bytes | None, sealed: bool, key_file: Path) -> str:
    """Why a chain-valid record fails the seal ('' when it passes)."""
    if "mac" not in rec:
        return (
            "has no MAC after sealed records (inserted or rewritten without the key)"
            if (sealed)
            else ""
        )
    if key is None:
        return f"is sealed, but the audit key {key_file} is missing or damaged"
    if not seal.same(rec["mac"], seal.record_mac(key, rec["hash"])):
        return (
            "does not match its MAC: the record was rewritten (hashes recomputed without "
            "the key), or this is not the key the log was written with"
        )
    return ""


def verify(
    path: Path, *, key_file: Path | None = None, anchor_file: Path | None = None
) -> VerifyResult:
    """Check the whole chain, each record's MAC and the anchored head; the result names the
    first bad line (or the anchor) and why. A missing file is an empty, intact log."""
    key_file = key_file or seal.key_path(path)
    anchor_file = anchor_file or seal.anchor_path(path)
    key = seal.load_key(key_file)
    try:
        fh = open(path, "rb")  # closed by the `with` below; read line by line
    except FileNotFoundError:
        fh = None
    prev, count, legacy = GENESIS, 0, 0
    hashes: dict[int, str] = {}
    try:
        anchor = seal.read_anchor(anchor_file)
    except ValueError:
        return VerifyResult(ok=False, records=0, problem=f"the anchor {anchor_file} is damaged")
    if fh is None:
        if anchor is not None:  # the whole log is gone, the anchor is not
            return VerifyResult(
                ok=False,
                records=0,
                problem=f"the log is missing; {anchor.seq} records were anchored",
            )
        return VerifyResult(ok=True, records=0)
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
            rec = msgspec.json.decode(raw) if not why else {}
            why = why or _seal_problem(rec, key, count > legacy, key_file)
            if why:
                return VerifyResult(
                    ok=False, records=count, line=lineno, problem=f"line {lineno} {why}"
                )
            prev = rec["hash"]
            count += 1
            legacy += "mac" not in rec
            if anchor is not None and count == anchor.seq:
                hashes[count] = prev
    if count == legacy and anchor is None:  # nothing sealed yet: the chain is all there is
        return VerifyResult(ok=True, records=count, legacy=legacy)
    why = (
        seal.anchor_problem(anchor, key or b"", count, hashes)
        if key
        else (f"the audit key {key_file} is missing or damaged")
    )
    if why:
        return VerifyResult(ok=False, records=count, legacy=legacy, problem=why)
    behind = count - anchor.seq if anchor is not None else 0
    note = ""
    if behind:  # MAC-checked like the rest; only the anchor lags
        note = f"{behind} records after the anchor (being written, or a crash before its anchor)"
    return VerifyResult(ok=True, records=count, legacy=legacy, note=note)
