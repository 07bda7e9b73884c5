"""``moltbot audit tail|verify`` through the real entry point, on a temp ``MOLTBOT_HOME``."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from moltbot import paths
from moltbot.cli.main import main
from moltbot.security.audit import AuditLog, canonical


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    h = tmp_path / "home"
    monkeypatch.setenv("MOLTBOT_HOME", str(h))
    return h


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def filled(home: Path, n: int) -> Path:
    log = AuditLog(paths.audit_file(home))
    for i in range(n):
        log.append("login", {"address": f"10.0.0.{i}", "method": "token", "password": "pw-1"})
    return paths.audit_file(home)


def test_verify_ok_counts_records(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    filled(home, 4)
    code, out, _ = run(capsys, "audit", "verify")
    assert code == 0
    assert out.strip() == "audit log OK: 4 records, chain intact, MACs and anchor verified"


def test_verify_without_a_log_is_ok_and_says_so(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "audit", "verify")
    assert code == 0 and "0 records" in out and "no audit log yet" in out


def test_verify_names_the_first_bad_line(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = filled(home, 5)
    items = path.read_bytes().split(b"\n")[:-1]
    items[2] = items[2].replace(b"10.0.0.2", b"10.0.0.9")
    path.write_bytes(b"".join(x + b"\n" for x in items))
    code, out, _ = run(capsys, "audit", "verify")
    assert code == 1
    assert "line 3" in out and "hash" in out and "2 records before line 3 verified" in out
    # --file points at any copy; the default one is the same file here
    code, out2, _ = run(capsys, "audit", "verify", "--file", str(path))
    assert code == 1 and out2 == out


def test_verify_names_a_removed_line(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = filled(home, 5)
    items = path.read_bytes().split(b"\n")[:-1]
    path.write_bytes(b"".join(x + b"\n" for x in items[:1] + items[2:]))
    code, out, _ = run(capsys, "audit", "verify")
    assert code == 1 and "line 2" in out and "removed" in out


def test_tail_shows_the_newest_records(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    filled(home, 5)
    code, out, _ = run(capsys, "audit", "tail", "-n", "2")
    assert code == 0
    rows = out.splitlines()
    assert len(rows) == 2
    assert rows[0].startswith("#4  ") and rows[1].startswith("#5  ")
    assert "login" in rows[1] and "address=10.0.0.4" in rows[1] and "method=token" in rows[1]
    assert "pw-1" not in out and "password=[redacted]" in rows[1]
    assert rows[1].split("  ")[1].endswith("Z")


def test_tail_json_is_one_record_per_line(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = filled(home, 3)
    code, out, _ = run(capsys, "audit", "tail", "--json")
    assert code == 0
    recs = [json.loads(x) for x in out.splitlines()]
    assert [r["seq"] for r in recs] == [1, 2, 3]
    assert out.encode() == path.read_bytes()  # exactly the stored canonical lines


def test_audit_without_a_subcommand_prints_help(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "audit")
    assert code == 2 and "tail" in out and "verify" in out


def test_verify_finds_a_cut_tail_and_a_rewritten_file(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The two attacks the chain alone cannot show, through the real command."""
    path = filled(home, 5)
    whole = path.read_bytes()
    path.write_bytes(b"".join(whole.splitlines(keepends=True)[:3]))
    code, out, _ = run(capsys, "audit", "verify")
    assert code == 1 and "the log was cut" in out and "5 records" in out
    recs = [json.loads(x) for x in whole.splitlines()]
    recs[1]["fields"]["address"] = "10.9.9.9"  # rewrite, then recompute the whole SHA chain
    prev, lines = "0" * 64, []
    for rec in recs:
        rec["prev"] = prev
        body = {k: v for k, v in rec.items() if k not in ("hash", "mac")}
        rec["hash"] = prev = hashlib.sha256(canonical(body)).hexdigest()
        lines.append(canonical(rec) + b"\n")
    path.write_bytes(b"".join(lines))
    code, out, _ = run(capsys, "audit", "verify")
    assert code == 1 and "line 2 does not match its MAC" in out
    (home / "credentials" / "audit.anchor").unlink()
    path.write_bytes(whole)
    code, out, _ = run(capsys, "audit", "verify")
    assert code == 1 and "anchor file is missing" in out
