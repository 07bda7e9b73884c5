"""Config: the strict schema, the loader with clear errors, secret references, the default file."""

from __future__ import annotations

from moltbot.config.defaults import default_config_text, render_config
from moltbot.config.loader import check_config, load_config, load_config_text
from moltbot.config.refs import is_secret_ref, iter_secret_refs, parse_ref, resolve_secret
from moltbot.config.schema import (
    AccountConfig,
    AgentConfig,
    ClusterConfig,
    Config,
    DiscordAccount,
    GatewayConfig,
    Placement,
    PluginConfig,
    SignalAccount,
    SlackAccount,
    SupervisionConfig,
    SupervisorConfig,
    TelegramAccount,
    ToolsConfig,
)

__all__ = [
    "AccountConfig",
    "AgentConfig",
    "ClusterConfig",
    "Config",
    "DiscordAccount",
    "GatewayConfig",
    "Placement",
    "PluginConfig",
    "SignalAccount",
    "SlackAccount",
    "SupervisionConfig",
    "SupervisorConfig",
    "TelegramAccount",
    "ToolsConfig",
    "check_config",
    "default_config_text",
    "is_secret_ref",
    "iter_secret_refs",
    "load_config",
    "load_config_text",
    "parse_ref",
    "render_config",
    "resolve_secret",
]
