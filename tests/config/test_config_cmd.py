"""`moltbot config validate | path | show` through the real entry point."""

from __future__ import annotations

import json
import secrets

import pytest

from moltbot.cli.main import main
from moltbot.security.vault import Vault


def test_validate_ok(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MOLTBOT_HOME", str(tmp_path))
    Vault.create(tmp_path).set("gateway_token", secrets.token_urlsafe(32))
    (tmp_path / "config.json").write_text("// mine\n{}\n")
    assert main(["config", "validate"]) == 0
    assert capsys.readouterr().out.strip() == f"config OK: {tmp_path / 'config.json'}"


@pytest.mark.parametrize(
    ("config", "value", "path"),
    [
        ("{}", "short-but-not-32-chars", "$.gateway.auth.token"),
        (
            '{"gateway": {"auth": {"token": null, "password": "secret:pw"}}}',
            "hunter2",
            "$.gateway.auth.password",
        ),
        ('{"gateway": {"auth": {"token": null}}}', "", "$.gateway.auth"),
    ],
)
def test_validate_refuses_a_gateway_without_a_strong_secret(
    tmp_path, monkeypatch, capsys, config, value, path
):
    monkeypatch.setenv("MOLTBOT_HOME", str(tmp_path))
    vault = Vault.create(tmp_path)
    if value:
        vault.set("gateway_token", value)
        vault.set("pw", value)
    (tmp_path / "config.json").write_text(config)
    assert main(["config", "validate"]) == 1
    err = capsys.readouterr().err
    assert f"config error at {path}:" in err and "fix:" in err
    assert not value or value not in err  # never the secret itself


def test_validate_warns_when_the_secret_cannot_be_read_here(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MOLTBOT_HOME", str(tmp_path))
    (tmp_path / "config.json").write_text("{}")  # no vault in this home
    assert main(["config", "validate"]) == 0
    out = capsys.readouterr().out
    assert "config OK" in out and "warning: the gateway's secret could not be checked" in out


def test_validate_prints_the_error_and_returns_1(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MOLTBOT_HOME", str(tmp_path))
    (tmp_path / "config.json").write_text('{"gateway": {"prot": 1}}')
    assert main(["config", "validate"]) == 1
    err = capsys.readouterr().err
    assert "$.gateway.prot" in err
    assert "did you mean 'port'?" in err


def test_validate_missing_file_says_init(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MOLTBOT_HOME", str(tmp_path))
    assert main(["config", "validate"]) == 1
    assert "moltbot init" in capsys.readouterr().err


def test_global_config_option_wins(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MOLTBOT_HOME", str(tmp_path / "home"))
    other = tmp_path / "other.json"
    other.write_text('{"gateway": {"port": 9999}}')
    assert main(["--config", str(other), "config", "validate"]) == 0
    assert str(other) in capsys.readouterr().out
    assert main(["--config", str(other), "config", "path"]) == 0
    assert capsys.readouterr().out.strip() == str(other)


def test_path_defaults_to_moltbot_home(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MOLTBOT_HOME", str(tmp_path))
    assert main(["config", "path"]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "config.json")


def test_show_prints_effective_config_with_refs_unresolved(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("MOLTBOT_HOME", str(tmp_path))
    monkeypatch.setenv("TG_TOKEN", "123:real-token-value")
    (tmp_path / "config.json").write_text(
        '{"channels": {"telegram": [{"account": "main", "token": "env:TG_TOKEN"}]}}'
    )
    assert main(["config", "show"]) == 0
    out = capsys.readouterr().out
    shown = json.loads(out)
    assert shown["channels"]["telegram"][0]["token"] == "env:TG_TOKEN"
    assert shown["gateway"]["port"] == 18789  # defaults filled in
    assert "real-token-value" not in out
