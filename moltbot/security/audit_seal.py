"""The audit log's seal: an HMAC key kept apart from the log, and the anchored chain head.

The hash chain alone (``moltbot.security.audit``) shows a changed byte, but anyone who can write
the log can rewrite it whole and recompute every SHA-256, or cut records off its end. The seal
closes both:

- **MAC per record.** ``mac`` = HMAC-SHA256(key, "moltbot-audit-v1:" + the record's ``hash``).
  The ``hash`` covers the record and ``prev``, so the MAC binds the record and its place in the
  chain. Without the key no rewritten record verifies.
- **Anchor.** After every append the chain head (``seq`` and ``hash`` of the last record) is
  written, with its own MAC, to an anchor file beside the key (atomic write, fsync). A file cut
  at a record boundary has fewer records than the anchor names; a rewritten tail does not end
  in the anchored hash.

The key is 32 random bytes in ``$MOLTBOT_HOME/credentials/audit.key`` (0600 in the 0700
credentials folder, never under ``audit/``); the anchor is ``credentials/audit.anchor``. Whoever
holds the user's whole account can read the key: the seal makes tampering by anything that can
write the log (but not read the credentials) evident; it is not a defence against the owner.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

import msgspec

from moltbot.security.fsmodes import atomic_write, ensure_private_dir

KEY_BYTES = 32
_RECORD = b"moltbot-audit-v1:"
_ANCHOR = b"moltbot-audit-anchor-v1:"


class Anchor(msgspec.Struct, frozen=True, kw_only=True):
    seq: int
    hash: str
    mac: str


def key_path(log: Path) -> Path:
    """Where the key of the log at ``<home>/audit/audit.jsonl`` lives: ``<home>/credentials``."""
    return Path(log).parent.parent / "credentials" / "audit.key"


def anchor_path(log: Path) -> Path:
    return Path(log).parent.parent / "credentials" / "audit.anchor"


def load_key(path: Path) -> bytes | None:
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return None
    return data if len(data) == KEY_BYTES else None


def create_key(path: Path) -> bytes:
    """A new key at ``path`` (0600, its folder 0700); an existing one is kept and returned."""
    ensure_private_dir(Path(path).parent)
    key = secrets.token_bytes(KEY_BYTES)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        existing = load_key(path)
        if existing is None:
            raise
        return existing
    try:
        os.write(fd, key)
        os.fsync(fd)
    finally:
        os.close(fd)
    return key


def record_mac(key: bytes, record_hash: str) -> str:
    return hmac.new(key, _RECORD + record_hash.encode("ascii"), hashlib.sha256).hexdigest()


def anchor_mac(key: bytes, seq: int, record_hash: str) -> str:
    body = _ANCHOR + f"{seq}:{record_hash}".encode("ascii")
    return hmac.new(key, body, hashlib.sha256).hexdigest()


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("ascii", "replace"), b.encode("ascii", "replace"))


def write_anchor(path: Path, key: bytes, seq: int, record_hash: str) -> None:
    anchor = Anchor(seq=seq, hash=record_hash, mac=anchor_mac(key, seq, record_hash))
    atomic_write(Path(path), msgspec.json.encode(anchor))


def read_anchor(path: Path) -> Anchor | None:
    """The anchor, or None when there is none; ``ValueError`` when it is not one."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        return None
    try:
        return msgspec.json.decode(data, type=Anchor)
    except (msgspec.DecodeError, msgspec.ValidationError):
        raise ValueError("not an anchor") from None


def anchor_problem(anchor: Anchor | None, key: bytes, count: int, hashes: dict[int, str]) -> str:
    """Why the chain of ``count`` records does not end where ``anchor`` says ('' when it does).
    ``hashes`` holds the hash of record ``anchor.seq`` (and of the last one) as walked."""
    if anchor is None:
        return "the anchor file is missing, so a cut-off end of the log cannot be ruled out"
    if not same(anchor.mac, anchor_mac(key, anchor.seq, anchor.hash)):
        return "the anchor does not match its MAC (it was forged, or this is not the log's key)"
    if anchor.seq > count:
        return (
            f"the log was cut: the anchor records {anchor.seq} records, the file has {count} "
            f"(records {count + 1}-{anchor.seq} are gone)"
        )
    if not same(hashes.get(anchor.seq, ""), anchor.hash):
        return f"record {anchor.seq} is not the anchored one (the log was rewritten)"
    return ""
