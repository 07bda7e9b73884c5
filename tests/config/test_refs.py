"""Secret references: resolution from the vault and the environment, errors without values."""

from __future__ import annotations

import pytest

from moltbot.config import iter_secret_refs, load_config_text, parse_ref, resolve_secret
from moltbot.errors import NotFound, SecretRefError

VAULT = {"telegram_token": "123456:very-secret-value"}


def vault_get(name: str) -> str:
    return VAULT[name]


def test_secret_ref_reads_the_vault():
    assert resolve_secret("secret:telegram_token", vault_get) == "123456:very-secret-value"


def test_env_ref_reads_the_environment(monkeypatch):
    monkeypatch.setenv("MOLTBOT_TEST_KEY", "from-env")
    assert resolve_secret("env:MOLTBOT_TEST_KEY", vault_get) == "from-env"


def test_env_ref_with_explicit_environ():
    assert resolve_secret("env:K", vault_get, environ={"K": "v"}) == "v"


def test_missing_secret_names_the_key_and_the_fix():
    with pytest.raises(SecretRefError) as info:
        resolve_secret("secret:slack_bot_token", vault_get, at="$.channels.slack[0].bot_token")
    err = info.value
    assert "slack_bot_token" in err.problem
    assert err.fix == "run `moltbot secrets set slack_bot_token`"
    assert err.path == "$.channels.slack[0].bot_token"
    assert err.code == "secret_missing"


@pytest.mark.parametrize("error", [KeyError("x"), NotFound("no such secret")])
def test_lookup_errors_become_secret_ref_errors(error):
    def lookup(name: str) -> str:
        raise error

    with pytest.raises(SecretRefError) as info:
        resolve_secret("secret:x", lookup)
    assert info.value.path == "secret:x"


def test_empty_vault_value_counts_as_missing():
    with pytest.raises(SecretRefError):
        resolve_secret("secret:x", lambda name: "")


def test_missing_env_says_export(monkeypatch):
    monkeypatch.delenv("MOLTBOT_NOT_SET", raising=False)
    with pytest.raises(SecretRefError) as info:
        resolve_secret("env:MOLTBOT_NOT_SET", vault_get)
    assert "MOLTBOT_NOT_SET" in info.value.problem
    assert "export MOLTBOT_NOT_SET=..." in info.value.fix


def test_a_literal_is_refused_without_echoing_it():
    with pytest.raises(SecretRefError) as info:
        resolve_secret("sk-ant-literal-value", vault_get)
    assert "sk-ant" not in str(info.value)
    assert "moltbot secrets set" in info.value.fix


def test_errors_never_contain_the_value(monkeypatch):
    monkeypatch.setenv("EMPTY_ONE", "")
    with pytest.raises(SecretRefError) as info:
        resolve_secret("env:EMPTY_ONE", vault_get)
    assert "very-secret-value" not in repr(info.value)


def test_parse_ref():
    assert parse_ref("secret:a.b-c_d") == ("secret", "a.b-c_d")
    assert parse_ref("env:HOME") == ("env", "HOME")
    with pytest.raises(SecretRefError):
        parse_ref("vault:x")


def test_iter_secret_refs_lists_every_reference():
    cfg = load_config_text(
        '{"channels": {"slack": [{"account": "w", "bot_token": "secret:b", "app_token": "env:A"}],'
        ' "telegram": [{"account": "off", "enabled": false, "token": "secret:t"}]},'
        ' "plugins": [{"name": "p", "module": "m", "secrets": ["matrix_token"]}]}'
    )
    refs = dict(iter_secret_refs(cfg))
    assert refs == {
        "$.gateway.auth.token": "secret:gateway_token",
        "$.agent.api_key": "secret:anthropic_api_key",
        "$.channels.telegram[0].token": "secret:t",
        "$.channels.slack[0].bot_token": "secret:b",
        "$.channels.slack[0].app_token": "env:A",
        "$.plugins[0].secrets[0]": "secret:matrix_token",
    }
    in_use = dict(iter_secret_refs(cfg, in_use_only=True))
    assert "$.agent.api_key" not in in_use  # offline provider
    assert "$.channels.telegram[0].token" not in in_use  # disabled account
    assert in_use["$.channels.slack[0].app_token"] == "env:A"


def test_resolves_against_the_real_vault(tmp_path):
    from moltbot.security.vault import Vault

    vault = Vault.create(tmp_path, None)
    vault.set("gateway_token", "tok-value-123")
    assert resolve_secret("secret:gateway_token", vault.get) == "tok-value-123"
    with pytest.raises(SecretRefError) as info:
        resolve_secret("secret:not_there", vault.get, at="$.gateway.auth.token")
    assert info.value.fix == "run `moltbot secrets set not_there`"
    assert info.value.path == "$.gateway.auth.token"
