"""The CLI writes ``config_change`` and ``secret_read`` records straight into the audit log:
``init``, ``secrets set|rm`` (changes, by name) and ``secrets get`` (a read), never a value."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest

from moltbot import paths
from moltbot.cli.main import main
from moltbot.security.audit import tail, verify
from moltbot.security.vault import PASSPHRASE_ENV, Vault

VALUE = "sk-ant-audit-never-logged-0123456789"
OTHER = "sk-ant-second-value-never-logged-42"


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    h = tmp_path / "home"
    monkeypatch.setenv("MOLTBOT_HOME", str(h))
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    return h


def run(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    *argv: str,
    stdin: str = "",
) -> tuple[int, str, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def records(home: Path) -> list[tuple[str, dict[str, Any]]]:
    return [(r["kind"], r["fields"]) for r in tail(paths.audit_file(home), 1000)]


def test_init_records_the_vault_the_token_and_the_config_it_writes(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run(capsys, monkeypatch, "init")[0] == 0
    cfg = str(paths.config_file(home))
    by = {"by": "cli:init"}
    assert records(home) == [
        ("config_change", {"target": "vault", "action": "create", "key_source": "key file", **by}),
        (
            "config_change",
            {
                "target": "vault",
                "action": "set",
                "secret_name": "gateway_token",
                "replaced": False,
                **by,
            },
        ),
        (
            "config_change",
            {"target": "config", "action": "create", "file": cfg, "json_path": "$", **by},
        ),
    ]
    assert run(capsys, monkeypatch, "init")[0] == 0  # nothing changed: nothing recorded
    assert len(records(home)) == 3
    assert run(capsys, monkeypatch, "init", "--force")[0] == 0
    assert records(home)[3:] == [
        (
            "config_change",
            {
                "target": "config",
                "action": "replace",
                "file": cfg,
                "json_path": "$",
                "backup": cfg + ".bak",
                **by,
            },
        ),
    ]
    token = Vault.open(home).get("gateway_token")
    assert token not in paths.audit_file(home).read_text()
    assert verify(paths.audit_file(home)).records == 4


def test_secret_changes_and_reads_are_recorded_by_name_never_by_value(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run(capsys, monkeypatch, "init")[0] == 0
    start = len(records(home))
    assert run(capsys, monkeypatch, "secrets", "set", "api", stdin=VALUE + "\n")[0] == 0
    assert run(capsys, monkeypatch, "secrets", "set", "api", stdin=OTHER + "\n")[0] == 0
    code, out, _ = run(capsys, monkeypatch, "secrets", "get", "api")
    assert (code, out) == (0, OTHER + "\n")
    assert run(capsys, monkeypatch, "secrets", "list")[0] == 0  # names only: not a read
    assert run(capsys, monkeypatch, "secrets", "rm", "api")[0] == 0
    assert run(capsys, monkeypatch, "secrets", "rm", "api")[0] == 1  # nothing removed
    assert run(capsys, monkeypatch, "secrets", "get", "api")[0] == 1  # nothing read
    assert records(home)[start:] == [
        (
            "config_change",
            {
                "target": "vault",
                "action": "set",
                "secret_name": "api",
                "replaced": False,
                "by": "cli:secrets set",
            },
        ),
        (
            "config_change",
            {
                "target": "vault",
                "action": "set",
                "secret_name": "api",
                "replaced": True,
                "by": "cli:secrets set",
            },
        ),
        ("secret_read", {"secret_name": "api", "reader": "cli:secrets get"}),
        (
            "config_change",
            {"target": "vault", "action": "delete", "secret_name": "api", "by": "cli:secrets rm"},
        ),
    ]
    text = paths.audit_file(home).read_text()
    assert VALUE not in text and OTHER not in text
    assert verify(paths.audit_file(home)).ok


def test_a_damaged_audit_log_stops_changes_and_reads_before_they_happen(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run(capsys, monkeypatch, "init")[0] == 0
    audit = paths.audit_file(home)
    audit.write_bytes(audit.read_bytes() + b"not a record\n")
    code, out, err = run(capsys, monkeypatch, "secrets", "set", "api", stdin=VALUE + "\n")
    assert code == 1 and "audit" in err
    assert "api" not in Vault.open(home)  # refused before the vault changed
    code, out, err = run(capsys, monkeypatch, "secrets", "get", "gateway_token")
    assert code == 1 and out == "" and "audit" in err  # an unrecorded read is refused
    assert VALUE not in audit.read_text()
