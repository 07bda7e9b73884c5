"""The audit log's seal: every attack an intruder who can write the log (but cannot read the
credentials folder) can make is found by ``verify``: a rewritten file with a recomputed hash
chain, a cut-off end, a removed anchor, a forged anchor; and a wrong key is named."""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import pytest

from moltbot.clock import FakeClock
from moltbot.security import audit_seal as seal
from moltbot.security.audit import GENESIS, AuditError, AuditLog, canonical, verify


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "home" / "audit" / "audit.jsonl"


def fill(path: Path, n: int, start: int = 0) -> AuditLog:
    log = AuditLog(path, clock=FakeClock())
    for i in range(start, start + n):
        log.append("tool_call", {"tool": "bash", "n": i})
    return log


def records(path: Path) -> list[dict[str, object]]:
    return [json.loads(x) for x in path.read_bytes().splitlines()]


def rechain(recs: list[dict[str, object]], *, keep_mac: bool = True) -> bytes:
    """What an intruder without the key can do: rewrite records and recompute every SHA-256."""
    out, prev = [], GENESIS
    for rec in recs:
        rec = {k: v for k, v in rec.items() if keep_mac or k != "mac"}
        rec["prev"] = prev
        body = {k: v for k, v in rec.items() if k not in ("hash", "mac")}
        rec["hash"] = prev = hashlib.sha256(canonical(body)).hexdigest()
        out.append(canonical(rec) + b"\n")
    return b"".join(out)


def test_the_key_and_anchor_live_apart_from_the_log(log_path: Path) -> None:
    fill(log_path, 3)
    home = log_path.parent.parent
    key, anchor = home / "credentials" / "audit.key", home / "credentials" / "audit.anchor"
    assert seal.key_path(log_path) == key and seal.anchor_path(log_path) == anchor
    assert key.parent != log_path.parent
    assert stat.S_IMODE(key.stat().st_mode) == 0o600 and len(key.read_bytes()) == 32
    assert stat.S_IMODE(key.parent.stat().st_mode) == 0o700
    assert json.loads(anchor.read_bytes())["seq"] == 3
    assert all("mac" in r for r in records(log_path))
    result = verify(log_path)
    assert (result.ok, result.records, result.legacy, result.note) == (True, 3, 0, "")


def test_a_rewritten_file_with_a_recomputed_chain_is_found(log_path: Path) -> None:
    fill(log_path, 5)
    recs = records(log_path)
    recs[2]["fields"] = {"tool": "nothing to see"}
    log_path.write_bytes(rechain(recs))
    result = verify(log_path)
    assert not result.ok and result.line == 3 and "does not match its MAC" in result.problem
    # dropping the MACs (pretending to be a legacy log) does not help either
    log_path.write_bytes(rechain(recs, keep_mac=False))
    result = verify(log_path)
    assert not result.ok and "anchor" in result.problem and "rewritten" in result.problem


def test_a_cut_tail_is_found(log_path: Path) -> None:
    fill(log_path, 6)
    kept = log_path.read_bytes().splitlines(keepends=True)[:4]
    log_path.write_bytes(b"".join(kept))  # cut at a record boundary: the chain alone is fine
    result = verify(log_path)
    assert not result.ok and result.records == 4
    assert "the log was cut" in result.problem and "6 records" in result.problem
    log_path.write_bytes(b"")
    assert "the log was cut" in verify(log_path).problem
    log_path.unlink()
    assert "the log is missing" in verify(log_path).problem


def test_a_removed_or_forged_anchor_is_found(log_path: Path) -> None:
    fill(log_path, 3)
    anchor = seal.anchor_path(log_path)
    saved = anchor.read_bytes()
    anchor.unlink()
    result = verify(log_path)
    assert not result.ok and "anchor file is missing" in result.problem
    forged = json.loads(saved)
    forged["seq"] = 2
    forged["hash"] = records(log_path)[1]["hash"]  # pretend the log ended at record 2
    anchor.write_bytes(json.dumps(forged).encode())
    assert "does not match its MAC" in verify(log_path).problem
    anchor.write_bytes(b"not json")
    assert "damaged" in verify(log_path).problem


def test_a_wrong_or_missing_key_is_named(log_path: Path, tmp_path: Path) -> None:
    fill(log_path, 2)
    other = tmp_path / "other" / "audit.key"
    seal.create_key(other)
    result = verify(log_path, key_file=other)
    assert not result.ok and result.line == 1 and "not the key" in result.problem
    seal.key_path(log_path).unlink()
    result = verify(log_path)
    assert not result.ok and "key" in result.problem and "missing" in result.problem
    with pytest.raises(AuditError, match="key"):  # never a fresh key over a sealed log
        AuditLog(log_path)


def test_a_legacy_log_verifies_as_unauthenticated_and_goes_on_sealed(log_path: Path) -> None:
    fill(log_path, 3)
    legacy = rechain(records(log_path), keep_mac=False)
    for name in (seal.key_path(log_path), seal.anchor_path(log_path)):
        os.unlink(name)
    log_path.write_bytes(legacy)  # a log written before the seal existed
    result = verify(log_path)
    assert (result.ok, result.records, result.legacy) == (True, 3, 3)
    fill(log_path, 2, start=3)  # a new key is made; new records are sealed
    result = verify(log_path)
    assert (result.ok, result.records, result.legacy) == (True, 5, 3)
    recs = records(log_path)
    assert ["mac" in r for r in recs] == [False, False, False, True, True]
    forged = {k: v for k, v in recs[4].items() if k != "mac"}  # unsealed, after sealed ones
    log_path.write_bytes(rechain([*recs[:4], {**forged, "fields": {"forged": True}}]))
    result = verify(log_path)
    assert not result.ok and result.line == 5 and "has no MAC" in result.problem


def test_a_crash_between_a_write_and_its_anchor_is_a_note(log_path: Path) -> None:
    fill(log_path, 3)
    anchor = seal.anchor_path(log_path)
    before = anchor.read_bytes()
    fill(log_path, 1, start=3)
    anchor.write_bytes(before)  # the anchor of record 4 never made it to disk
    result = verify(log_path)
    assert result.ok and result.records == 4 and "1 records after the anchor" in result.note
