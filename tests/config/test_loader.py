"""The loader: every mistake becomes a ConfigError naming the JSON path, the problem, the fix."""

from __future__ import annotations

import pytest

from moltbot.config import load_config, load_config_text
from moltbot.errors import ConfigError


def _error(text: str) -> ConfigError:
    with pytest.raises(ConfigError) as info:
        load_config_text(text, "test.json")
    return info.value


def test_typo_names_the_path_and_suggests_the_key():
    err = _error('{"gateway": {"prot": 1}}')
    assert err.path == "$.gateway.prot"
    assert err.problem == "unknown key 'prot'"
    assert "did you mean 'port'?" in err.fix
    assert "bind" in err.fix and "rate_limit" in err.fix  # lists the valid keys
    assert "$.gateway.prot" in str(err)


def test_a_wrong_strategy_lists_the_three():
    err = _error('{"supervision": {"channels": {"strategy": "one_for_some"}}}')
    assert err.path == "$.supervision.channels.strategy"
    assert err.fix == "use one of: 'one_for_one', 'one_for_all', 'rest_for_one'"


def test_a_nice_value_out_of_range_names_the_key():
    err = _error('{"tools": {"bash": {"nice": 20}}}')
    assert err.path == "$.tools.bash.nice"
    assert "19" in err.problem or "19" in err.fix
    assert load_config_text('{"tools": {"bash": {"nice": 19}}}').tools.bash.nice == 19


def test_typo_at_top_level():
    err = _error('{"gatway": {}}')
    assert err.path == "$.gatway"
    assert "did you mean 'gateway'?" in err.fix


def test_unknown_key_without_close_match_lists_valid_keys():
    err = _error('{"zzzz": 1}')
    assert err.path == "$.zzzz"
    assert "did you mean" not in err.fix
    assert "channels" in err.fix


def test_typo_inside_a_list_item():
    err = _error('{"channels": {"telegram": [{"account": "main", "tokn": "secret:t"}]}}')
    assert err.path == "$.channels.telegram[0].tokn"
    assert "did you mean 'token'?" in err.fix


def test_typo_inside_a_dict_value_names_the_key():
    err = _error('{"cluster": {"placement": {"tools/*": {"resourcs": {}}}}}')
    assert err.path == '$.cluster.placement["tools/*"].resourcs'
    assert "did you mean 'resources'?" in err.fix


def test_wrong_type_inside_a_dict_names_the_key():
    err = _error('{"cluster": {"placement": {"a": {}, "b": {"resources": {"gpu": "x"}}}}}')
    assert err.path == '$.cluster.placement["b"].resources["gpu"]'
    assert err.problem == "expected float, got str"


def test_wrong_type_says_expected_and_got():
    err = _error('{"gateway": {"port": "18789"}}')
    assert err.path == "$.gateway.port"
    assert err.problem == "expected int, got str"
    assert "whole number" in err.fix


def test_out_of_range_says_the_bound():
    err = _error('{"gateway": {"port": 70000}}')
    assert err.problem == "expected int <= 65535"


def test_bad_enum_lists_choices():
    err = _error('{"agent": {"provider": "openai"}}')
    assert err.path == "$.agent.provider"
    assert "'offline'" in err.fix and "'anthropic'" in err.fix
    assert "openai" not in str(err)  # values from the file are never echoed


def test_missing_required_key():
    err = _error('{"channels": {"slack": [{"account": "w", "bot_token": "secret:b"}]}}')
    assert err.path == "$.channels.slack[0].app_token"
    assert "missing required key 'app_token'" in err.problem
    assert '"secret:NAME"' in err.fix


def test_bad_json_gives_line_and_column():
    err = _error('{\n  "gateway": {\n    "port": 1,\n  }\n}')
    assert err.path == "$"
    assert "line 4, column 3" in err.problem
    assert "trailing comma" in err.problem
    assert "test.json" in err.problem


def test_bad_json_after_comment_lines_keeps_true_positions():
    err = _error('// a comment\n  // another\n{\n  "gateway": {}\n  "agent": {}\n}')
    assert "line 5, column 3" in err.problem
    assert "expected ','" in err.problem


def test_truncated_and_empty_json():
    assert "ends early" in _error('{"gateway": {').problem
    assert "empty" in _error("  \n").problem


def test_literal_secret_is_refused_without_echoing_it():
    err = _error('{"channels": {"telegram": [{"account": "main", "token": "123456:AAE-secret"}]}}')
    assert err.path == "$.channels.telegram[0].token"
    assert "literal secret" in err.problem
    assert "moltbot secrets set telegram_token" in err.fix
    assert '"secret:telegram_token"' in err.fix
    assert "AAE-secret" not in str(err) and "AAE-secret" not in err.fix


def test_literal_gateway_token_suggests_its_usual_name():
    err = _error('{"gateway": {"auth": {"token": "hunter2hunter2"}}}')
    assert err.path == "$.gateway.auth.token"
    assert "moltbot secrets set gateway_token" in err.fix
    assert "hunter2" not in str(err)


def test_bad_phone_number_explains_the_form():
    err = _error('{"channels": {"signal": [{"account": "p", "number": "5551234"}]}}')
    assert err.path == "$.channels.signal[0].number"
    assert "E.164" in err.fix


def test_comments_are_accepted():
    cfg = load_config_text(
        '// top comment\n{\n  // the port\n  "gateway": {\n    // note\n    "port": 9000\n  }\n}\n'
    )
    assert cfg.gateway.port == 9000


def test_comment_marker_inside_a_string_is_kept():
    cfg = load_config_text('{"agent": {"base_url": "http://x//y"}}')
    assert cfg.agent.base_url == "http://x//y"


def test_utf8_bom_is_accepted():
    assert load_config_text("\ufeff{}").gateway.port == 18789


@pytest.mark.parametrize("bind", ["0.0.0.0", "192.168.1.10", "::", "myhost.lan"])
def test_non_loopback_bind_without_tls_is_refused(bind):
    err = _error(f'{{"gateway": {{"bind": "{bind}"}}}}')
    assert err.path == "$.gateway.bind"
    assert "tls" in err.problem
    assert "127.0.0.1" in err.fix and "tls" in err.fix


def test_non_loopback_bind_without_auth_is_refused():
    err = _error(
        '{"gateway": {"bind": "0.0.0.0", "auth": {"token": null}, "tls": {"self_signed": true}}}'
    )
    assert err.path == "$.gateway.bind"
    assert "auth" in err.problem and "tls" not in err.problem


@pytest.mark.parametrize("bind", ["127.0.0.1", "localhost", "::1", "127.0.0.2"])
def test_loopback_bind_needs_no_tls(bind):
    assert load_config_text(f'{{"gateway": {{"bind": "{bind}"}}}}').gateway.bind == bind


def test_non_loopback_bind_with_password_and_cert_is_accepted():
    cfg = load_config_text(
        '{"gateway": {"bind": "0.0.0.0", "auth": {"token": null, "password": "env:GW_PASS"},'
        ' "tls": {"cert": "/c.pem", "key": "/k.pem"}}}'
    )
    assert cfg.gateway.tls is not None and cfg.gateway.tls.cert == "/c.pem"


def test_tls_cert_without_key_is_refused():
    err = _error('{"gateway": {"tls": {"cert": "/c.pem"}}}')
    assert err.path == "$.gateway.tls.key"


def test_empty_tls_is_refused():
    assert _error('{"gateway": {"tls": {}}}').path == "$.gateway.tls"


def test_duplicate_account_ids_are_refused():
    err = _error(
        '{"channels": {"telegram": ['
        '{"account": "main", "token": "secret:a"}, {"account": "main", "token": "secret:b"}]}}'
    )
    assert err.path == "$.channels.telegram[1].account"
    assert "duplicate" in err.problem and "$.channels.telegram[0]" in err.problem


def test_same_account_id_on_different_channels_is_fine():
    cfg = load_config_text(
        '{"channels": {"telegram": [{"account": "main", "token": "secret:a"}],'
        ' "signal": [{"account": "main", "number": "+15551234567"}]}}'
    )
    assert cfg.channels.telegram[0].account == cfg.channels.signal[0].account == "main"


def test_duplicate_plugin_names_are_refused():
    err = _error(
        '{"plugins": [{"name": "matrix", "module": "a"}, {"name": "matrix", "module": "b"}]}'
    )
    assert err.path == "$.plugins[1].name"


def test_anthropic_without_api_key_is_refused():
    err = _error('{"agent": {"provider": "anthropic", "api_key": null}}')
    assert err.path == "$.agent.api_key"


def test_missing_file_says_run_init(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "nope.json")
    assert "moltbot init" in info.value.fix
    assert "nope.json" in info.value.problem


def test_default_path_follows_moltbot_home(tmp_path, monkeypatch):
    monkeypatch.setenv("MOLTBOT_HOME", str(tmp_path))
    (tmp_path / "config.json").write_text('{"gateway": {"port": 1234}}')
    assert load_config().gateway.port == 1234
