"""``moltbot doctor`` on WhatsApp accounts: a cloud account is probed live against the fake
Graph API (a good and a refused token); a web account is checked locally (linked or not, the
session decrypts), never connected (that would knock the running device off)."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path
from typing import Any

import pytest

from moltbot import paths
from moltbot.channels.whatsapp_login import link_device
from moltbot.channels.whatsapp_session import SessionFile, decode_key, key_name, new_key
from moltbot.cli.main import main
from moltbot.security.vault import PASSPHRASE_ENV, Vault
from tests.actors.rig import LoopThread
from tests.fakes.whatsapp_api import NUMBER_ID, TOKEN, FakeGraph
from tests.fakes.whatsapp_web import FakeWhatsApp

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    h = tmp_path / "home"
    monkeypatch.setenv("MOLTBOT_HOME", str(h))
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    assert main(["init"]) == 0
    return h


def link(home: Path, account: str) -> None:
    key = new_key()
    session = SessionFile(account, decode_key(key), home=home)
    wa = FakeWhatsApp()
    wa.scan_after = 1
    asyncio.run(link_device(wa.client(), session, lambda _c: None, timeout_s=5))
    Vault.open(home).set(key_name(account), key)


def test_doctor_probes_whatsapp_accounts(home: Path, capsys: Any) -> None:
    loop = LoopThread()
    graph = FakeGraph()
    loop.run(graph.start())
    vault = Vault.open(home)
    for name, value in (("wa_good", TOKEN), ("wa_bad", "revoked"), ("s1", "x"), ("s2", "y")):
        vault.set(name, value)
    link(home, "linked")

    def cloud(account: str, token: str) -> dict[str, Any]:
        return {
            "account": account,
            "mode": "cloud",
            "phone_number_id": NUMBER_ID,
            "access_token": token,
            "app_secret": "secret:s1",
            "verify_token": "secret:s2",
            "api_base": graph.api_base,
        }

    cfg = {
        "channels": {
            "whatsapp": [
                cloud("biz", "secret:wa_good"),
                cloud("old", "secret:wa_bad"),
                {"account": "linked", "mode": "web"},
                {"account": "fresh", "mode": "web"},
            ]
        }
    }
    paths.config_file(home).write_text(json.dumps(cfg))
    try:
        code = main(["doctor"])
    finally:
        loop.run(graph.stop())
        loop.close()
    out = capsys.readouterr().out
    lines = {
        m.group(1): ln
        for ln in out.splitlines()
        if (m := re.search(r"  (channel whatsapp:\w+): ", ln))
    }
    assert code == 1
    assert lines["channel whatsapp:biz"].startswith("ok")
    assert "/hooks/whatsapp/biz" in lines["channel whatsapp:biz"]
    assert lines["channel whatsapp:old"].startswith("FAIL") and "access_token" in out
    assert lines["channel whatsapp:linked"].startswith("ok") and "linked" in out
    assert lines["channel whatsapp:fresh"].startswith("FAIL")
    assert "moltbot channels login whatsapp:fresh" in out
    assert graph.calls["info"] == 2  # the web accounts were not connected
