import io
import os
import stat

import pytest

from moltbot import paths
from moltbot.cli.main import main
from moltbot.security.vault import PASSPHRASE_ENV, Vault


@pytest.fixture
def home(tmp_path, monkeypatch):
    h = tmp_path / "home"
    monkeypatch.setenv("MOLTBOT_HOME", str(h))
    monkeypatch.delenv(PASSPHRASE_ENV, raising=False)
    return h


def mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


def run(capsys, *argv, stdin=None, monkeypatch=None):
    if stdin is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_init_creates_everything_and_hides_token(home, capsys):
    code, out, err = run(capsys, "init")
    assert code == 0, err
    assert mode(home) == 0o700
    for sub in ("credentials", "sessions", "state", "workspace", "run", "audit"):
        assert mode(home / sub) == 0o700, sub
    cfg = paths.config_file(home)
    assert mode(cfg) == 0o600
    assert cfg.read_text().strip()
    assert mode(paths.key_file(home)) == 0o600
    token = Vault.open(home).get("gateway_token")
    assert len(token) >= 43
    assert token not in out and token not in err
    assert "moltbot secrets get gateway_token" in out
    assert "moltbot up" in out
    assert "moltbot secrets set anthropic_api_key" in out


def test_init_is_idempotent(home, capsys):
    assert run(capsys, "init")[0] == 0
    token = Vault.open(home).get("gateway_token")
    cfg = paths.config_file(home)
    cfg.write_text('{"mine": true}')
    code, out, _ = run(capsys, "init")
    assert code == 0
    assert "kept" in out
    assert Vault.open(home).get("gateway_token") == token
    assert cfg.read_text() == '{"mine": true}'


def test_init_force_rewrites_config_keeps_token(home, capsys):
    assert run(capsys, "init")[0] == 0
    token = Vault.open(home).get("gateway_token")
    cfg = paths.config_file(home)
    cfg.write_text('{"mine": true}')
    assert run(capsys, "init", "--force")[0] == 0
    assert cfg.read_text() != '{"mine": true}'
    assert cfg.with_name("config.json.bak").read_text() == '{"mine": true}'
    assert Vault.open(home).get("gateway_token") == token


def test_init_with_explicit_config_path(home, tmp_path, capsys):
    target = tmp_path / "elsewhere" / "cfg.json"
    assert run(capsys, "--config", str(target), "init")[0] == 0
    assert mode(target) == 0o600
    assert not paths.config_file(home).exists()


def test_init_passphrase_stdin(home, capsys, monkeypatch):
    code, out, err = run(
        capsys, "init", "--passphrase-stdin", stdin="pw-123\n", monkeypatch=monkeypatch
    )
    assert code == 0, err
    assert not paths.key_file(home).exists()
    assert (paths.credentials_dir(home) / "vault.salt").exists()
    assert "pw-123" not in out + err
    monkeypatch.setenv(PASSPHRASE_ENV, "pw-123")
    code, out, err = run(capsys, "secrets", "list")
    assert code == 0, err
    assert out.split() == ["gateway_token"]


def test_secrets_set_list_get_rm(home, capsys, monkeypatch):
    assert run(capsys, "init")[0] == 0
    code, out, err = run(
        capsys, "secrets", "set", "anthropic_api_key", stdin="sk-ant-xyz\n", monkeypatch=monkeypatch
    )
    assert code == 0, err
    assert "sk-ant-xyz" not in out + err
    code, out, _ = run(capsys, "secrets", "list")
    assert code == 0
    assert out.split() == ["anthropic_api_key", "gateway_token"]
    code, out, _ = run(capsys, "secrets", "get", "anthropic_api_key")
    assert code == 0
    assert out == "sk-ant-xyz\n"
    code, out, _ = run(capsys, "secrets", "rm", "anthropic_api_key")
    assert code == 0
    code, out, err = run(capsys, "secrets", "get", "anthropic_api_key")
    assert code == 1
    assert "anthropic_api_key" in err
    code, _, err = run(capsys, "secrets", "rm", "anthropic_api_key")
    assert code == 1


def test_secrets_set_strips_exactly_one_newline(home, capsys, monkeypatch):
    assert run(capsys, "init")[0] == 0
    run(capsys, "secrets", "set", "multi", stdin="a\nb\n\n", monkeypatch=monkeypatch)
    assert Vault.open(home).get("multi") == "a\nb\n"


def test_secrets_set_refuses_empty_and_argv_value(home, capsys, monkeypatch):
    assert run(capsys, "init")[0] == 0
    code, _, err = run(capsys, "secrets", "set", "k", stdin="\n", monkeypatch=monkeypatch)
    assert code == 1 and "empty" in err
    code, out, err = run(
        capsys, "secrets", "set", "k", "sk-leaked", stdin="x\n", monkeypatch=monkeypatch
    )
    assert code == 1
    assert "sk-leaked" not in out + err
    assert "k" not in Vault.open(home)


def test_secrets_set_bad_name(home, capsys, monkeypatch):
    assert run(capsys, "init")[0] == 0
    code, _, err = run(capsys, "secrets", "set", "../evil", stdin="x\n", monkeypatch=monkeypatch)
    assert code == 1 and "invalid secret name" in err


def test_secrets_without_vault_says_init(home, capsys):
    code, _, err = run(capsys, "secrets", "list")
    assert code == 1
    assert "moltbot init" in err


def test_secrets_without_action_prints_help(home, capsys):
    code, out, _ = run(capsys, "secrets")
    assert code == 2
    assert "set" in out and "list" in out


def test_init_config_loads_and_token_resolves(home, capsys):
    from moltbot.config.loader import load_config
    from moltbot.config.refs import resolve_secret

    assert run(capsys, "init")[0] == 0
    cfg = load_config(paths.config_file(home))
    vault = Vault.open(home)
    assert cfg.gateway.auth.token is not None
    assert resolve_secret(cfg.gateway.auth.token, vault.get) == vault.get("gateway_token")
