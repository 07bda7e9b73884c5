"""``moltbot channels login|logout`` with the fake at the WaClient port standing where neonize
stands (the CLI's only substitution: WhatsApp's servers cannot be reached from a test)."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from moltbot import paths
from moltbot.channels.whatsapp_session import key_name
from moltbot.cli.main import main
from moltbot.security.audit import tail
from moltbot.security.vault import PASSPHRASE_ENV, Vault
from tests.fakes.whatsapp_web import FakeWhatsApp

pytestmark = pytest.mark.timeout(30)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    h = tmp_path / "home"
    monkeypatch.setenv("MOLTBOT_HOME", str(h))
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    assert main(["init"]) == 0
    cfg: dict[str, Any] = {"channels": {}}
    cfg["channels"]["whatsapp"] = [
        {"account": "home", "mode": "web"},
        {
            "account": "biz",
            "mode": "cloud",
            "phone_number_id": "109876543210",
            "access_token": "secret:a",
            "app_secret": "secret:b",
            "verify_token": "secret:c",
        },
    ]
    paths.config_file(h).write_text(json.dumps(cfg))
    return h


@pytest.fixture
def wa(monkeypatch: pytest.MonkeyPatch) -> FakeWhatsApp:
    fake = FakeWhatsApp()
    fake.scan_after = 2
    monkeypatch.setattr("moltbot.cli.channels_cmd.NeonizeClient", lambda _acct: fake.client())
    return fake


def test_login_shows_a_qr_and_stores_the_key_then_logout_removes_all(
    home: Path, wa: FakeWhatsApp, capsys: Any
) -> None:
    assert main(["channels", "login", "whatsapp:home"]) == 0
    out = capsys.readouterr().out
    assert "Linked devices" in out and ("\u2580" in out or "\u2584" in out)  # the QR blocks
    assert "linked whatsapp:home as 15550001111" in out
    assert key_name("home") in Vault.open(home)
    session = home / "whatsapp" / "home.session"
    assert session.is_file() and b"SQLite" not in session.read_bytes()
    kinds = [r["fields"].get("secret_name") for r in tail(paths.audit_file(home), 5)]
    assert key_name("home") in kinds

    assert main(["channels", "logout", "whatsapp:home"]) == 0
    assert wa.logged_out == 1 and not session.exists()
    assert key_name("home") not in Vault.open(home)


def test_cloud_and_unknown_accounts_are_refused_with_the_fix(
    home: Path, wa: FakeWhatsApp, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    assert main(["channels", "login", "whatsapp:biz"]) != 0
    assert "mode" in capsys.readouterr().err
    assert main(["channels", "login", "whatsapp:nobody"]) != 0
    assert "no WhatsApp account 'nobody'" in capsys.readouterr().err
    assert main(["channels", "login", "telegram:main"]) != 0
    assert wa.qrs_shown == 0
