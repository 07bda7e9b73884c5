"""``moltbot doctor``: each check against a real home folder, vault, socket and bubblewrap."""

import json
import os
import re
import socket
import subprocess
import sys

import pytest

from moltbot import paths
from moltbot.cli import doctor_cmd as doctor
from moltbot.cli.main import main
from moltbot.config.loader import load_config_text
from moltbot.security.vault import PASSPHRASE_ENV, Vault

TELEGRAM = '{"channels": {"telegram": [{"account": "main", "token": "secret:telegram_token"}]}}'


@pytest.fixture
def home(tmp_path, monkeypatch):
    h = tmp_path / "home"
    monkeypatch.setenv("MOLTBOT_HOME", str(h))
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    return h


@pytest.fixture
def initialized(home, capsys):
    assert main(["init"]) == 0
    capsys.readouterr()
    return home


def doctor_run(capsys, *argv):
    code = main(["doctor", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def by_name(checks, name):
    return [c for c in checks if c.name == name]


def only(checks, name):
    found = by_name(checks, name)
    assert len(found) == 1, found
    return found[0]


def test_before_init_home_config_and_vault_fail_with_the_init_fix(home, capsys):
    code, out, _ = doctor_run(capsys)
    assert code == 1
    lines = out.splitlines()
    for name in ("home", "config", "vault"):
        line = next(ln for ln in lines if ln.split()[1] == f"{name}:")
        assert line.startswith("FAIL"), line
        assert "fix:" in line and "moltbot init" in line, line
    assert any(ln.startswith("ok") and "python" in ln for ln in lines)


def test_after_init_everything_about_home_is_ok(initialized, capsys):
    checks = doctor.run_checks(initialized, paths.config_file(initialized))
    for name in ("home", "modes", "config", "vault", "secrets", "python", "packages", "sandbox"):
        check = only(checks, name)
        assert check.status == "ok", check
    assert only(checks, "ray").status == "WARN"  # nothing started: a warning, not a failure
    assert "moltbot up" in only(checks, "ray").fix
    code, out, _ = doctor_run(capsys)
    assert not any(ln.startswith("FAIL") for ln in out.splitlines()), out
    # the port is free here unless something else holds 18789; either way no secret is shown
    token = Vault.open(initialized).get("gateway_token")
    assert token not in out
    assert code == (0 if only(checks, "port").status == "ok" else 1)


def test_open_key_file_fails_naming_the_path_and_chmod(initialized, capsys):
    key = paths.key_file(initialized)
    os.chmod(key, 0o644)
    code, out, _ = doctor_run(capsys)
    assert code == 1
    assert f"FAIL  modes: file {key} has mode 0644" in out
    assert f"fix: chmod 600 {key}" in out
    problems = [c for c in doctor.check_modes(initialized) if c.status == "FAIL"]
    assert len(problems) == 1
    assert str(key) in problems[0].detail
    assert problems[0].fix == f"chmod 600 {key}"


def test_open_home_folder_fails(initialized):
    os.chmod(initialized, 0o755)
    fixes = [c.fix for c in doctor.check_modes(initialized) if c.status == "FAIL"]
    assert fixes == [f"chmod 700 {initialized}"]


def test_config_typo_names_the_json_path(initialized, capsys):
    paths.config_file(initialized).write_text('{"gateway": {"prot": 18789}}')
    check, cfg = doctor.check_config(paths.config_file(initialized))
    assert cfg is None
    assert check.status == "FAIL"
    assert check.detail.startswith("$.gateway.prot:")
    assert "port" in check.fix
    code, out, _ = doctor_run(capsys)
    assert code == 1
    assert "$.gateway.prot" in out


def test_missing_referenced_secret_fails_with_the_set_command(initialized, capsys):
    paths.config_file(initialized).write_text(TELEGRAM)
    code, out, _ = doctor_run(capsys)
    assert code == 1
    line = next(ln for ln in out.splitlines() if "telegram_token" in ln)
    assert line.startswith("FAIL") and "$.channels.telegram[0].token" in line
    assert "fix: moltbot secrets set telegram_token" in line
    Vault.open(initialized).set("telegram_token", "123:abc")
    cfg = load_config_text(TELEGRAM)
    check = only(doctor.check_secret_refs(cfg, Vault.open(initialized).names()), "secrets")
    assert check.status == "ok"


def test_secret_refs_env_and_unused_refs():
    cfg = load_config_text(
        '{"channels": {"slack": [{"account": "w", "bot_token": "env:SLACK_BOT",'
        ' "app_token": "secret:slack_app"}, {"account": "off", "enabled": false,'
        ' "bot_token": "secret:unused", "app_token": "secret:unused"}]}}'
    )
    checks = doctor.check_secret_refs(cfg, ["gateway_token", "slack_app"], environ={})
    fix = "export SLACK_BOT=... before moltbot up"
    assert [(c.status, c.fix) for c in checks] == [("FAIL", fix)]
    checks = doctor.check_secret_refs(cfg, ["gateway_token", "slack_app"], {"SLACK_BOT": "x"})
    assert [c.status for c in checks] == ["ok"]
    unopened = doctor.check_secret_refs(cfg, None, {"SLACK_BOT": "x"})
    assert {c.status for c in unopened} == {"WARN"}  # the vault check itself carries the FAIL


def test_vault_that_does_not_open_fails(initialized):
    paths.key_file(initialized).write_bytes(b"\0" * 32)
    check, names = doctor.check_vault(initialized)
    assert names is None
    assert check.status == "FAIL" and "key file" in check.detail and check.fix


def test_bwrap_runs_a_trivial_sandbox_here():
    check = doctor.check_bwrap()
    assert check.status == "ok", check
    assert "bubblewrap works" in check.detail


def test_bogus_bwrap_path_fails_with_the_install_hint(tmp_path):
    check = doctor.check_bwrap(str(tmp_path / "no-such-bwrap"))
    assert check.status == "FAIL"
    assert "apt-get install bubblewrap" in check.fix
    assert doctor.check_bwrap(str(tmp_path / "nope"), required=False).status == "WARN"


def test_bwrap_that_cannot_sandbox_fails(tmp_path):
    fake = tmp_path / "bwrap"
    fake.write_text("#!/bin/sh\necho 'bwrap: No permissions to create new namespace' >&2\nexit 1\n")
    fake.chmod(0o755)
    check = doctor.check_bwrap(str(fake))
    assert check.status == "FAIL"
    assert "No permissions to create new namespace" in check.detail
    assert "apt-get install bubblewrap" in check.fix


def test_port_free_busy_and_held_by_moltbot():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        port = holder.getsockname()[1]
        holder.listen()
        busy = doctor.check_port("127.0.0.1", port)
        assert busy.status == "FAIL" and "in use" in busy.detail and "gateway.port" in busy.fix
        ours = doctor.check_port("127.0.0.1", port, moltbot_running=True)
        assert ours.status == "ok" and "running moltbot" in ours.detail
    assert doctor.check_port("127.0.0.1", port).status == "ok"
    assert doctor.check_port("no-such-host.invalid", port).status == "FAIL"


def test_ray_state_is_a_warning_until_running(home):
    assert doctor.running_head(home) == (None, False)
    assert doctor.check_ray(None, False).status == "WARN"
    assert doctor.check_ray("127.0.0.1:6379", True).status == "ok"
    stale = doctor.check_ray("127.0.0.1:6379", False)
    assert stale.status == "WARN" and "moltbot down" in stale.fix


def test_python_packages_and_disk(tmp_path):
    assert doctor.check_python((3, 11, 0)).status == "ok"
    old = doctor.check_python((3, 10, 12))
    assert old.status == "FAIL" and "3.11" in old.detail
    missing = doctor.check_packages({"msgspec": "msgspec", "no_such_pkg_xyz": "no-such-pkg"})
    assert missing.status == "FAIL" and "no_such_pkg_xyz" in missing.detail
    assert missing.fix == "pip install no-such-pkg"
    assert doctor.check_disk(tmp_path / "not" / "yet").status == "ok"
    low = doctor.check_disk(tmp_path, min_free=1 << 62)
    assert low.status == "WARN" and str(tmp_path) in low.detail


def test_json_output_parses(initialized, capsys):
    code, out, _ = doctor_run(capsys, "--json")
    doc = json.loads(out)
    assert doc["ok"] is (code == 0)
    names = {c["name"] for c in doc["checks"]}
    assert {"python", "packages", "home", "config", "vault", "sandbox", "ray"} <= names
    assert all(c["status"] in ("ok", "WARN", "FAIL") for c in doc["checks"])
    assert all(set(c) == {"name", "status", "detail", "fix"} for c in doc["checks"])


def test_doctor_does_not_import_ray_for_the_checks(initialized):
    # running_head imports actors.control (and so Ray) on purpose; the other checks must not
    code = (
        "import sys; from moltbot.cli import doctor_cmd as d; from pathlib import Path;"
        f"h = Path({str(initialized)!r}); d.check_packages(); d.check_config(h / 'config.json');"
        "d.check_vault(h); d.check_bwrap(); print('ray' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"


def test_every_channel_account_is_probed_live_with_the_fix(initialized, capsys):
    """Real fakes of each platform on 127.0.0.1, driven by the adapters' own SDKs: a good
    Telegram and Discord bot, a refused Slack token, a Signal number signal-cli does not know,
    a wrong BlueBubbles password. Each gets one line; the refused ones say what to do."""
    from tests.actors.rig import LoopThread
    from tests.fakes.bluebubbles_api import FakeBlueBubbles
    from tests.fakes.discord_api import BOT_TOKEN as DISCORD_TOKEN
    from tests.fakes.discord_api import FakeDiscord
    from tests.fakes.signal_api import FakeSignal
    from tests.fakes.slack_api import APP_TOKEN, FakeSlack
    from tests.fakes.telegram_api import DEFAULT_TOKEN, FakeTelegram

    loop = LoopThread()
    fakes = [FakeTelegram(), FakeSlack(), FakeSignal(), FakeDiscord(), FakeBlueBubbles()]
    for fake in fakes:
        loop.run(fake.start())
    tg, slack, sig, dc, bb = fakes
    vault = Vault.open(initialized)
    for name, value in (
        ("tg", DEFAULT_TOKEN),
        ("slack_bot", "xoxb-not-the-right-one"),
        ("slack_app", APP_TOKEN),
        ("dc", DISCORD_TOKEN),
        ("bb", "wrong"),
    ):
        vault.set(name, value)
    cfg = {
        "channels": {
            "telegram": [{"account": "main", "token": "secret:tg", "api_base": tg.api_base}],
            "slack": [
                {
                    "account": "work",
                    "bot_token": "secret:slack_bot",
                    "app_token": "secret:slack_app",
                    "api_base": slack.api_base,
                }
            ],
            "signal": [{"account": "phone", "number": "+15557770000", "api_base": sig.api_base}],
            "discord": [{"account": "main", "token": "secret:dc", "api_base": dc.api_base}],
            "imessage": [{"account": "home", "password": "secret:bb", "api_base": bb.api_base}],
        }
    }
    (initialized / "config.json").write_text(json.dumps(cfg))
    try:
        code, out, _ = doctor_run(capsys)
    finally:
        for fake in fakes:
            loop.run(fake.stop())
        loop.close()
    lines = {
        m.group(1): ln for ln in out.splitlines() if (m := re.search(r"  (channel \w+:\w+): ", ln))
    }
    assert code == 1
    assert (
        lines["channel telegram:main"].startswith("ok")
        and "connected as" in lines["channel telegram:main"]
    )
    assert lines["channel discord:main"].startswith("ok")
    assert lines["channel slack:work"].startswith("FAIL") and "fix:" in lines["channel slack:work"]
    signal = lines["channel signal:phone"]
    assert signal.startswith("FAIL") and "+15557770000 is not registered with signal-cli" in signal
    assert "fix: register or link it first" in signal
    imsg = lines["channel imessage:home"]
    assert imsg.startswith("FAIL") and "password" in imsg and "fix:" in imsg
    assert "xoxb-not-the-right-one" not in out and DEFAULT_TOKEN not in out
