"""The rules of ``agent.profiles`` and ``agent.bindings`` that span fields (msgspec checks each
field alone): every binding names a known profile, every allowed tool is a real one, paths hold
no ``..``, a profile's ``models`` does not hide beside ``agent.providers``.

``BUILTIN_TOOLS`` are the names of the tools moltbot itself offers (``tests/agent`` checks that
it matches the registry, so a new tool is added here too).
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path

from moltbot.config.schema import CHANNEL_KINDS, Config
from moltbot.errors import ConfigError

DEFAULT_PROFILE = "default"
SKILL_TOOL = "skill"
SEND_FILE_TOOL = "send_file"  # the agent's own, in a turn that answers a chat
SCHEDULE_TOOLS = ("schedule_add", "schedule_list", "schedule_remove")  # the agent actor's own
BUILTIN_TOOLS = (
    "bash",
    "read_file",
    "write_file",
    "edit_file",
    "list_dir",
    "web_fetch",
    "memory_write",
    "memory_search",
    SKILL_TOOL,
    SEND_FILE_TOOL,
    *SCHEDULE_TOOLS,
)
PLUGIN_TOOLS = "plugin:"
PROFILE_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


def profile_names(cfg: Config) -> list[str]:
    """``default`` first, then the configured profiles in config order."""
    return [DEFAULT_PROFILE, *(n for n in cfg.agent.profiles if n != DEFAULT_PROFILE)]


def _did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def check_profiles(cfg: Config) -> None:
    agent = cfg.agent
    names = profile_names(cfg)
    plugins = [p.name for p in cfg.plugins]
    for i, binding in enumerate(agent.bindings):
        if binding.profile not in names:
            raise ConfigError(
                f"$.agent.bindings[{i}].profile",
                f"names no profile{_did_you_mean(binding.profile, names)}",
                f"use one of: {', '.join(names)}, or add it under agent.profiles",
            )
        if binding.channel in CHANNEL_KINDS and binding.account is not None:
            accounts = [a.account for a in getattr(cfg.channels, binding.channel)]
            if binding.account not in accounts:
                raise ConfigError(
                    f"$.agent.bindings[{i}].account",
                    f"names no {binding.channel} account{_did_you_mean(binding.account, accounts)}",
                    f"use one of: {', '.join(accounts) or 'none configured'}, or drop the key",
                )
    for name in agent.profiles:
        if not PROFILE_NAME.match(name):
            raise ConfigError(
                f"$.agent.profiles[{name[:40]!r}]".replace("'", '"'),
                "is not a profile name",
                "name it with lower-case letters, digits, '-' or '_', starting with a letter",
            )
    for name, profile in agent.profiles.items():
        at = f"$.agent.profiles.{name}"
        if profile.models and agent.providers and not profile.providers:
            raise ConfigError(
                f"{at}.models",
                "agent.providers is set, so a profile's models alone would be ignored",
                'give the profile its own "providers" list instead of "models"',
            )
        for j, tool in enumerate(profile.tools or []):
            plugin = tool.removeprefix(PLUGIN_TOOLS) if tool.startswith(PLUGIN_TOOLS) else None
            if plugin is not None and plugin not in plugins:
                raise ConfigError(
                    f"{at}.tools[{j}]",
                    "names a plugin that is not configured",
                    f'configure it under "plugins", or use one of: {", ".join(plugins) or "none"}',
                )
            if plugin is None and tool not in BUILTIN_TOOLS:
                raise ConfigError(
                    f"{at}.tools[{j}]",
                    f"is not a tool{_did_you_mean(tool, list(BUILTIN_TOOLS))}",
                    f'use tool names ({", ".join(BUILTIN_TOOLS)}) or "plugin:<name>"',
                )
        for key in ("workspace", "memory_dir", "skills_dir"):
            value = getattr(profile, key)
            if value is not None and (not value.strip("/") or ".." in Path(value).parts):
                raise ConfigError(
                    f"{at}.{key}",
                    "must be a folder of its own, without `..`",
                    'write a plain path such as "~/moltbot-work", or null for the default',
                )
