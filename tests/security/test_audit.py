"""The audit log hash chain: appends verify, every kind of tampering is found at the right line,
a torn last line is repaired on reopen, secrets are redacted, modes are private."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import stat
import threading
from pathlib import Path

import msgspec
import pytest

from moltbot.clock import FakeClock
from moltbot.errors import BadRequest
from moltbot.security.audit import (
    GENESIS,
    REDACTED,
    AuditError,
    AuditLog,
    canonical,
    record_hash,
    tail,
    verify,
)


@pytest.fixture
def log_path(tmp_path: Path) -> Path:
    return tmp_path / "home" / "audit" / "audit.jsonl"


def fill(path: Path, n: int) -> AuditLog:
    log = AuditLog(path, clock=FakeClock())
    for i in range(n):
        log.append("tool_call", {"tool": "bash", "n": i, "note": f"record number {i}"})
    return log


def lines(path: Path) -> list[bytes]:
    return path.read_bytes().split(b"\n")[:-1]


def write_lines(path: Path, items: list[bytes]) -> None:
    path.write_bytes(b"".join(x + b"\n" for x in items))


def test_records_chain_from_genesis_and_verify(log_path: Path) -> None:
    log = fill(log_path, 5)
    recs = [json.loads(x) for x in lines(log_path)]
    assert [r["seq"] for r in recs] == [1, 2, 3, 4, 5]
    assert recs[0]["prev"] == GENESIS
    for before, after in itertools.pairwise(recs):
        assert after["prev"] == before["hash"]
    for raw, rec in zip(lines(log_path), recs, strict=True):
        # canonical bytes: sorted keys, no spaces; hash = sha256 of the record without "hash"
        assert raw == json.dumps(rec, sort_keys=True, separators=(",", ":")).encode()
        body = {k: v for k, v in rec.items() if k not in ("hash", "mac")}
        assert rec["hash"] == hashlib.sha256(canonical(body)).hexdigest()
    result = verify(log_path)
    assert result.ok and result.records == 5 and result.line == 0 and result.problem == ""
    digest = log.append("login", {"address": "127.0.0.1", "method": "token"})
    assert (
        digest
        == json.loads(lines(log_path)[-1])["hash"]
        == record_hash(json.loads(lines(log_path)[-1]))
    )
    assert verify(log_path).records == 6


def test_a_second_writer_continues_the_same_chain(log_path: Path) -> None:
    fill(log_path, 3)
    fill(log_path, 2)  # a new AuditLog (e.g. a restarted store) reads the head and goes on
    result = verify(log_path)
    assert result.ok and result.records == 5
    assert [r["seq"] for r in tail(log_path, 10)] == [1, 2, 3, 4, 5]


def test_concurrent_appends_from_threads_keep_the_chain(log_path: Path) -> None:
    log = AuditLog(log_path)
    other = AuditLog(log_path)  # a second instance: only the flock keeps them apart

    def work(target: AuditLog, tag: str) -> None:
        for i in range(25):
            target.append("config_change", {"by": tag, "i": i})

    threads = [threading.Thread(target=work, args=(t, n)) for t, n in ((log, "a"), (other, "b"))]
    threads += [threading.Thread(target=work, args=(log, "c"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    result = verify(log_path)
    assert result.ok and result.records == 75, result


def test_missing_log_is_an_empty_intact_chain(tmp_path: Path) -> None:
    result = verify(tmp_path / "nope.jsonl")
    assert result.ok and result.records == 0
    assert tail(tmp_path / "nope.jsonl", 5) == []


# --- tampering -------------------------------------------------------------------------------
def test_one_flipped_byte_in_a_middle_record_is_found_at_its_line(log_path: Path) -> None:
    fill(log_path, 6)
    items = lines(log_path)
    at = items[3].index(b"record number 3") + len(b"record number ")
    items[3] = items[3][:at] + b"7" + items[3][at + 1 :]  # "record number 7": still valid JSON
    write_lines(log_path, items)
    result = verify(log_path)
    assert not result.ok and result.line == 4 and result.records == 3
    assert "hash" in result.problem and "line 4" in result.problem


def test_a_flipped_byte_that_breaks_json_is_found_at_its_line(log_path: Path) -> None:
    fill(log_path, 4)
    data = bytearray(log_path.read_bytes())
    second = data.index(b"\n") + 1
    data[second] = ord("[")  # the second record's opening brace
    log_path.write_bytes(bytes(data))
    result = verify(log_path)
    assert not result.ok and result.line == 2 and "not valid JSON" in result.problem


def test_a_deleted_middle_line_is_found(log_path: Path) -> None:
    fill(log_path, 6)
    items = lines(log_path)
    del items[2]
    write_lines(log_path, items)
    result = verify(log_path)
    assert not result.ok and result.line == 3 and result.records == 2
    assert "seq 4 where 3 was expected" in result.problem and "removed" in result.problem


def test_two_swapped_lines_are_found(log_path: Path) -> None:
    fill(log_path, 6)
    items = lines(log_path)
    items[1], items[2] = items[2], items[1]
    write_lines(log_path, items)
    result = verify(log_path)
    assert not result.ok and result.line == 2 and "seq 3 where 2 was expected" in result.problem


def test_a_rewritten_record_with_a_fresh_hash_breaks_the_next_line(log_path: Path) -> None:
    fill(log_path, 5)
    items = lines(log_path)
    rec = json.loads(items[1])
    rec["fields"]["tool"] = "innocent"
    rec["hash"] = record_hash(rec)  # self-consistent, but the next record chained the old one
    items[1] = canonical(rec)
    write_lines(log_path, items)
    result = verify(log_path)  # its MAC is that of the old hash: found at its own line
    assert not result.ok and result.line == 2 and "does not match its MAC" in result.problem
    unsealed = verify(log_path, key_file=log_path.parent / "nowhere.key")
    assert not unsealed.ok and unsealed.line == 1 and "key" in unsealed.problem


def test_a_file_truncated_mid_record_is_reported_as_incomplete(log_path: Path) -> None:
    fill(log_path, 6)
    data = log_path.read_bytes()
    cut = sum(len(x) + 1 for x in lines(log_path)[:3]) + 20  # 20 bytes into line 4
    log_path.write_bytes(data[:cut])
    result = verify(log_path)
    assert not result.ok and result.line == 4 and result.records == 3
    assert "incomplete" in result.problem


def test_a_torn_middle_line_is_found(log_path: Path) -> None:
    fill(log_path, 5)
    items = lines(log_path)
    items[2] = items[2][:30]  # a record cut short, with more records after it
    write_lines(log_path, items)
    result = verify(log_path)
    assert not result.ok and result.line == 3 and "not valid JSON" in result.problem


def test_an_empty_or_foreign_line_is_found(log_path: Path) -> None:
    fill(log_path, 3)
    items = lines(log_path)
    write_lines(log_path, [items[0], b"", *items[1:]])
    assert verify(log_path).line == 2 and "empty" in verify(log_path).problem
    write_lines(log_path, [items[0], b'{"seq":2}', *items[1:]])
    assert verify(log_path).line == 2 and "not an audit record" in verify(log_path).problem
    spaced = json.dumps(json.loads(items[1])).encode()  # same content, not canonical bytes
    write_lines(log_path, [items[0], spaced, *items[2:]])
    assert verify(log_path).line == 2 and "canonical" in verify(log_path).problem


# --- torn last line ----------------------------------------------------------------------------
def test_a_torn_last_line_is_truncated_on_reopen_and_the_chain_goes_on(log_path: Path) -> None:
    fill(log_path, 3)
    with open(log_path, "ab") as fh:
        fh.write(b'{"fields":{"tool":"ba')  # a crash in the middle of the fourth append
    assert verify(log_path).line == 4
    assert [r["seq"] for r in tail(log_path, 10)] == [1, 2, 3]  # tail skips the torn line
    log = AuditLog(log_path)
    assert log_path.read_bytes().endswith(b"\n")
    assert verify(log_path).ok and verify(log_path).records == 3
    log.append("pairing", {"channel": "telegram:main", "sender": "42"})
    result = verify(log_path)
    assert result.ok and result.records == 4
    assert tail(log_path, 1)[0]["kind"] == "pairing"


def test_a_torn_only_line_leaves_an_empty_chain(log_path: Path) -> None:
    log_path.parent.mkdir(parents=True)
    log_path.write_bytes(b'{"fiel')
    AuditLog(log_path).append("login", {"address": "::1"})
    recs = tail(log_path, 5)
    assert len(recs) == 1 and recs[0]["seq"] == 1 and recs[0]["prev"] == GENESIS


def test_a_damaged_complete_last_record_refuses_to_continue(log_path: Path) -> None:
    fill(log_path, 2)
    with open(log_path, "ab") as fh:
        fh.write(b"not json at all\n")
    with pytest.raises(AuditError) as info:
        AuditLog(log_path)
    assert "moltbot audit verify" in info.value.hint


# --- what goes in --------------------------------------------------------------------------
def test_secret_named_fields_are_redacted_at_any_depth(log_path: Path) -> None:
    log = AuditLog(log_path)
    secrets = ["tok-AAAA", "pw-BBBB", "sec-CCCC", "key-DDDD", "api-EEEE", "bot-FFFF", "k-GGGG"]
    log.append(
        "config_change",
        {
            "token": secrets[0],
            "password": secrets[1],
            "client_secret": secrets[2],
            "key": secrets[3],
            "api_key": secrets[4],
            "channels": [{"account": "main", "bot_token": secrets[5]}],
            "nested": {"deeper": {"API-KEY": secrets[6]}},
            "path": "$.gateway.port",
            "keys_changed": 3,
        },
    )
    text = log_path.read_text()
    for value in secrets:
        assert value not in text
    fields = tail(log_path, 1)[0]["fields"]
    assert fields["token"] == fields["api_key"] == fields["key"] == REDACTED
    assert fields["channels"] == [{"account": "main", "bot_token": REDACTED}]
    assert fields["nested"]["deeper"]["API-KEY"] == REDACTED
    assert fields["path"] == "$.gateway.port" and fields["keys_changed"] == 3
    assert verify(log_path).ok


def test_values_are_made_json_safe_and_bounded(log_path: Path) -> None:
    log = AuditLog(log_path)
    log.append("tool_call", {"output": "x" * 10_000, "obj": object(), "nan": float("nan")})
    fields = tail(log_path, 1)[0]["fields"]
    assert len(fields["output"]) < 2100 and "more chars" in fields["output"]
    assert fields["obj"] == "object" and fields["nan"] == "nan"
    assert verify(log_path).ok


def test_unknown_kinds_are_refused(log_path: Path) -> None:
    with pytest.raises(BadRequest):
        AuditLog(log_path).append("whatever", {})
    assert not log_path.read_bytes()


def test_modes_are_private(log_path: Path) -> None:
    fill(log_path, 1)
    assert stat.S_IMODE(log_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(log_path.parent.stat().st_mode) == 0o700
    os.chmod(log_path, 0o644)
    os.chmod(log_path.parent, 0o755)
    AuditLog(log_path).append("login", {"address": "127.0.0.1"})
    assert stat.S_IMODE(log_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(log_path.parent.stat().st_mode) == 0o700


def test_tail_reads_from_the_end_across_chunks(log_path: Path) -> None:
    log = AuditLog(log_path)
    for i in range(40):  # every 7th line is longer than one 8 KiB read chunk
        pads = {f"pad{j}": "p" * 1900 for j in range(6 if i % 7 == 0 else 1)}
        log.append("tool_call", {"i": i, **pads})
    assert max(len(x) for x in lines(log_path)) > 8192
    got = tail(log_path, 15)
    assert [r["fields"]["i"] for r in got] == list(range(25, 40))
    assert len(tail(log_path, 1000)) == 40 and tail(log_path, 0) == []
    assert all(isinstance(msgspec.json.encode(r), bytes) for r in got)
