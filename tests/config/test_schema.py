"""The schema: defaults, the example configs, immutability, constraints."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from moltbot.channels.accounts import policy_for
from moltbot.config import Config, load_config, load_config_text
from moltbot.config.defaults import default_config_text, render_config
from moltbot.config.schema import SupervisorConfig, TelegramAccount
from moltbot.errors import ConfigError
from moltbot.messages import InboundMessage
from moltbot.security.access import Pairing

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_empty_object_is_the_default_config():
    cfg = load_config_text("{}")
    assert cfg == Config()
    assert cfg.gateway.bind == "127.0.0.1"
    assert cfg.gateway.port == 18789
    assert cfg.gateway.auth.token == "secret:gateway_token"
    assert cfg.agent.provider == "offline"
    assert cfg.agent.models == ["claude-sonnet-4-5", "claude-haiku-4-5"]
    assert cfg.channels.telegram == [] and cfg.channels.slack == [] and cfg.channels.signal == []
    assert cfg.tools.bash.policy == "ask" and cfg.tools.bash.network is False
    assert cfg.supervision.agents == SupervisorConfig()
    assert cfg.cluster.address is None and cfg.cluster.namespace == "moltbot"


def test_config_is_frozen():
    cfg = Config()
    with pytest.raises(AttributeError):
        cfg.gateway.port = 1  # type: ignore[misc]


def test_default_text_round_trips():
    text = default_config_text()
    assert "//" in text
    assert load_config_text(text, "default") == Config()


def test_default_json_file_is_plain_json_of_the_defaults():
    raw = (CONFIGS / "default.json").read_text()
    assert "//" not in raw
    msgspec.json.decode(raw)  # plain JSON, no comments
    assert load_config(CONFIGS / "default.json") == Config()
    assert raw == render_config(Config(), comments=False)


def test_homelab_config_validates():
    cfg = load_config(CONFIGS / "homelab.json")
    assert cfg.agent.provider == "anthropic"
    assert cfg.cluster.address is None and cfg.cluster.head_ip == "192.168.1.10"
    assert cfg.cluster.placement["channels/signal:*"].resources == {"signal_box": 1}
    assert cfg.cluster.placement["tools/*"].resources == {"sandbox_box": 0.01}
    assert [a.account for a in cfg.channels.telegram] == ["main"]
    assert cfg.channels.slack[0].bot_token.startswith("secret:")
    assert cfg.media.transcription is not None and cfg.media.transcription.api_key is None
    assert cfg.channels.signal[0].number.startswith("+")
    assert cfg.channels.telegram[0].api_base == "https://api.telegram.org"


def test_hardened_config_validates():
    cfg = load_config(CONFIGS / "hardened.json")
    assert cfg.gateway.bind == "0.0.0.0"
    assert cfg.gateway.auth.token is not None
    assert cfg.gateway.tls is not None and cfg.gateway.tls.self_signed
    assert cfg.tools.bash.policy in ("deny", "allowlist")
    assert cfg.tools.bash.network is False
    for account in [*cfg.channels.telegram, *cfg.channels.signal]:
        assert account.dm_policy == "allowlist" and account.allow_from
    assert cfg.gateway.rate_limit.per_second < Config().gateway.rate_limit.per_second


@pytest.mark.parametrize("name", ["default.json", "hardened.json", "homelab.json"])
def test_example_configs_answer_no_stranger_in_a_group(name: str) -> None:
    """Groups are closed: a group not listed is refused, and in a listed group a sender who
    does not pass the account's policy is refused, in every shipped config."""
    cfg = load_config(CONFIGS / name)
    for acct in [*cfg.channels.telegram, *cfg.channels.slack, *cfg.channels.signal]:
        book = Pairing(policy_for(acct))
        listed = book.policy.group_allow[:1] or ["-1"]
        for chat in ["-999", *listed]:
            msg = InboundMessage(
                id="x",
                channel="telegram",
                account=acct.account,
                chat_id=chat,
                sender_id="stranger",
                text="hi",
                is_group=True,
                mentioned=True,
            )
            assert book.check(msg).action == "deny", (name, acct.account, chat)


def test_platform_default_api_bases():
    cfg = load_config_text(
        '{"channels": {"slack": [{"account": "w", "bot_token": "secret:b", "app_token": "env:A"}],'
        ' "signal": [{"account": "p", "number": "+15551234567"}]}}'
    )
    assert cfg.channels.slack[0].api_base == "https://slack.com/api"
    assert cfg.channels.signal[0].api_base == "http://127.0.0.1:8080"
    assert cfg.channels.signal[0].receive_mode == "websocket"


def test_render_of_a_full_config_round_trips():
    cfg = load_config(CONFIGS / "homelab.json")
    assert load_config_text(render_config(cfg)) == cfg
    assert load_config_text(render_config(cfg, comments=False)) == cfg


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ('{"gateway": {"port": 0}}', "$.gateway.port"),
        ('{"gateway": {"port": 65536}}', "$.gateway.port"),
        ('{"supervision": {"root": {"intensity": -1}}}', "$.supervision.root.intensity"),
        ('{"supervision": {"tools": {"period": 0}}}', "$.supervision.tools.period"),
        ('{"agent": {"models": []}}', "$.agent.models"),
        ('{"version": 2}', "$.version"),
    ],
)
def test_constraints_catch_mistakes(text, path):
    with pytest.raises(ConfigError) as info:
        load_config_text(text)
    assert info.value.path == path


def test_telegram_account_requires_a_token_ref():
    with pytest.raises(TypeError):
        TelegramAccount(account="main")  # type: ignore[call-arg]


def test_a_web_session_may_last_a_fraction_of_a_minute_but_not_none():
    text = '{"gateway": {"web_session": {"idle_minutes": 0.5}}}'
    assert load_config_text(text).gateway.web_session.idle_minutes == 0.5
    with pytest.raises(ConfigError, match="idle_minutes"):
        load_config_text('{"gateway": {"web_session": {"idle_minutes": 0}}}')
