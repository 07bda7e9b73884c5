"""The WhatsApp QR on the web page, in a real Chromium against a real gateway: the CLI's login
flow (``moltbot.cli.channels_cmd.login``, with the fake at the WaClient port standing where
neonize stands) publishes each code, ``whatsapp.link`` streams it, the page draws it on a
canvas (checked module by module against segno's encoding of the code); once the phone scans,
the key is in the vault and the page says linked. Attacks: no token, no QR; a path in the
account name; a stale code is not shown."""

from __future__ import annotations

import asyncio
import json
import stat
from pathlib import Path

import pytest
from playwright.async_api import Browser

from moltbot import paths
from moltbot.channels.whatsapp_qr import STALE_S, LinkBoard, rows
from moltbot.channels.whatsapp_session import key_name
from moltbot.cli.channels_cmd import login
from moltbot.security.vault import PASSPHRASE_ENV, Vault
from tests.fakes.whatsapp_web import FakeWhatsApp

from .conftest import MakeGateway, logged_in, open_client
from .echo_backend import EchoBackend
from .test_browser import _login, browser  # noqa: F401  (the Chromium fixture)

pytestmark = pytest.mark.timeout(60)

READ_CANVAS = """() => {
  const c = document.getElementById('wa-qr');
  const n = Number(c.dataset.modules), scale = c.width / (n + 8);
  const px = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
  const out = [];
  for (let y = 0; y < n; y++) {
    let row = '';
    for (let x = 0; x < n; x++) {
      const cx = Math.floor((x + 4.5) * scale), cy = Math.floor((y + 4.5) * scale);
      row += px[(cy * c.width + cx) * 4] < 128 ? '1' : '0';
    }
    out.push(row);
  }
  return out;
}"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    h = tmp_path / "home"
    h.mkdir(mode=0o700)
    monkeypatch.setenv("MOLTBOT_HOME", str(h))
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    Vault.create(h)
    return h


async def test_the_page_draws_the_qr_of_the_cli_login_until_linked(
    home: Path,
    make_gateway: MakeGateway,
    browser: Browser,  # noqa: F811
) -> None:
    gw = await make_gateway(EchoBackend())
    page = await browser.new_page()
    await _login(page, gw.url)
    await page.fill("#wa-account", "home")
    await page.click("#wa-show")
    await page.wait_for_selector("#wa-state[data-state='none']")  # nobody links yet
    assert "channels login whatsapp:home" in (await page.text_content("#wa-state") or "")

    wa = FakeWhatsApp(qr_every_s=0.3)
    vault = Vault.open(home)
    linking = asyncio.create_task(login(wa.client(), "home", vault, LinkBoard()))
    await page.wait_for_selector("#wa-state[data-state='waiting']")
    await page.wait_for_selector("#wa-qr:not([hidden])")
    drawn = await page.evaluate(READ_CANVAS)
    codes = {f"2@fake-qr-{n},abc,def" for n in range(1, 60)}
    assert any(drawn == rows(code) for code in codes)  # exactly a code WhatsApp issued
    assert "fake-qr" not in await page.content()  # modules only, never the text, in the DOM
    assert key_name("home") not in vault  # nothing stored before the scan

    wa.scan()
    assert await linking == "15550001111:7@s.whatsapp.net"
    await page.wait_for_selector("#wa-state[data-state='linked']")
    assert await page.is_hidden("#wa-qr")
    assert key_name("home") in Vault.open(home)  # the CLI put the key in the vault
    board_file = paths.run_dir(home) / "whatsapp-link" / "home.json"
    assert stat.S_IMODE(board_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(board_file.parent.stat().st_mode) == 0o700
    assert json.loads(board_file.read_text())["code"] == ""  # the code is gone once linked


async def test_no_qr_without_the_gateway_token(home: Path, make_gateway: MakeGateway) -> None:
    LinkBoard().publish("home", "waiting", "2@secret-code,abc,def")
    gw = await make_gateway(EchoBackend())
    client = await open_client(gw)
    await client.send(
        {
            "type": "req",
            "id": "1",
            "method": "whatsapp.link",
            "params": {"account": "home", "wait_s": 1},
        }
    )
    frames = []
    try:
        while True:
            frames.append(await client.recv(timeout=5))
    except Exception:  # the socket is closed on us
        pass
    assert not any(f.get("type") == "event" for f in frames)
    assert "secret-code" not in json.dumps(frames)


async def test_an_account_name_with_a_path_is_refused(
    home: Path, make_gateway: MakeGateway, tmp_path: Path
) -> None:
    (tmp_path / "elsewhere.json").write_text('{"state": "waiting", "code": "x", "at": 1e12}')
    gw = await make_gateway(EchoBackend())
    client = await logged_in(gw)
    for bad in ("../../elsewhere", "home/../../x", ".hidden", ""):
        res = await client.call("whatsapp.link", {"account": bad, "wait_s": 0})
        assert not res["ok"] and res["error"]["code"] == "bad_request"
    assert not client.events


async def test_a_stale_code_is_not_shown(home: Path, make_gateway: MakeGateway) -> None:
    board = LinkBoard()
    board.publish("home", "waiting", "2@old,abc,def")
    assert board.read("home").state == "waiting"
    later = board.read("home", now=board.read("home").at + STALE_S + 1)
    assert later.state == "none" and later.code == ""
    gw = await make_gateway(EchoBackend())
    client = await logged_in(gw)
    res = await client.call("whatsapp.link", {"account": "home", "wait_s": 0})
    assert res["ok"] and res["payload"]["state"] == "waiting"
    (ev,) = [e for e in client.events if e["event"] == "whatsapp.qr"]
    assert ev["payload"]["rows"] == rows("2@old,abc,def")


async def test_a_board_that_cannot_be_written_does_not_stop_the_terminal_login(
    home: Path,
) -> None:
    planted = paths.run_dir(home) / "whatsapp-link"
    planted.mkdir(parents=True, mode=0o755)  # not 0700: refused, not trusted, not fixed
    planted.chmod(0o755)
    wa = FakeWhatsApp()
    wa.scan_after = 1
    vault = Vault.open(home)
    assert await login(wa.client(), "home", vault, LinkBoard()) == "15550001111:7@s.whatsapp.net"
    assert key_name("home") in vault and not list(planted.iterdir())
