"""Agent profiles and bindings: which profile answers a message, and what that profile is.

A profile (``agent.profiles.<name>``) is an overlay on ``agent``: its own system prompt,
models or providers, allowed tools, workspace, memory folder and skills. ``default`` is the
``agent`` section itself (overlaid by ``agent.profiles.default`` when given), so a config
without profiles runs exactly as before.

- :func:`resolve`: ``agent.bindings`` in order, the first rule whose every given key
  (channel type, account, chat id, sender id) matches the message wins; none: ``default``.
- :func:`profile_config`: the ``Config`` a profile's turns run with: the agent section
  overlaid, and ``tools.workspace`` set to the profile's own workspace, so the file tools,
  bash and the memory of one profile never see another's folders.
- :func:`agent_path`: the agent actor that runs a session's turns. A profile with
  ``placement`` has its own pool ``agents/profile:<name>-<i>`` (placed by those Ray
  resources, e.g. on the node serving its local model); the others share ``agents/agent-<i>``.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from moltbot.agent.sessions import shard_for
from moltbot.config.profiles import (
    BUILTIN_TOOLS,
    DEFAULT_PROFILE,
    PLUGIN_TOOLS,
    profile_names,
)
from moltbot.config.schema import Binding, Config, ProfileConfig
from moltbot.messages import InboundMessage

__all__ = ["BUILTIN_TOOLS", "DEFAULT_PROFILE", "profile_names"]

GATEWAY_ROUTE_CHANNEL = "web"  # the web page and the CLI, as a binding's "channel"
PROFILES_DIR = "profiles"
SKILLS_DIR = "skills"


class Route(msgspec.Struct, frozen=True, kw_only=True):
    """What a binding is matched against."""

    channel: str
    account: str = ""
    chat: str = ""
    sender: str = ""


def route_of(msg: InboundMessage | None) -> Route:
    """A message's route; None (a chat from the web page or the CLI): channel ``web``."""
    if msg is None:
        return Route(channel=GATEWAY_ROUTE_CHANNEL, account="gateway")
    return Route(channel=msg.channel, account=msg.account, chat=msg.chat_id, sender=msg.sender_id)


def matches(binding: Binding, route: Route) -> bool:
    wanted = (
        (binding.channel, route.channel),
        (binding.account, route.account),
        (binding.chat, route.chat),
        (binding.sender, route.sender),
    )
    return all(want is None or want == got for want, got in wanted)


def resolve(cfg: Config, route: Route) -> str:
    """The profile that answers ``route``: the first matching binding's, else ``default``."""
    for binding in cfg.agent.bindings:
        if matches(binding, route):
            return binding.profile
    return DEFAULT_PROFILE


def settings(cfg: Config, name: str) -> ProfileConfig:
    """The profile's own keys (``ProfileConfig()`` for a ``default`` not written out)."""
    found = cfg.agent.profiles.get(name)
    if found is None and name != DEFAULT_PROFILE:
        raise KeyError(name)
    return found or ProfileConfig()


def workspace(cfg: Config, name: str) -> Path:
    """``workspace`` of the profile, else: default → ``tools.workspace``, any other →
    ``<tools.workspace>/profiles/<name>`` (beside the senders' folders, out of their reach)."""
    own = settings(cfg, name).workspace
    if own is not None:
        return Path(own).expanduser()
    root = cfg.tools.workspace_path()
    return root if name == DEFAULT_PROFILE else root / PROFILES_DIR / name


def skills_folder(cfg: Config, name: str) -> Path:
    own = settings(cfg, name).skills_dir
    return Path(own).expanduser() if own is not None else workspace(cfg, name) / SKILLS_DIR


def profile_config(cfg: Config, name: str) -> Config:
    """The config a turn of profile ``name`` runs with (``cfg`` itself for a plain default)."""
    own = settings(cfg, name)
    if name == DEFAULT_PROFILE and own == ProfileConfig():
        return cfg
    agent = cfg.agent
    changes: dict[str, object] = {}
    if own.system_prompt is not None:
        changes["system_prompt"] = own.system_prompt
    if own.providers:
        changes["providers"] = list(own.providers)
    elif own.models:
        changes["models"] = list(own.models)
    if name != DEFAULT_PROFILE or own.memory_dir is not None:
        changes["memory"] = msgspec.structs.replace(agent.memory, dir=own.memory_dir)
    tools = msgspec.structs.replace(cfg.tools, workspace=str(workspace(cfg, name)))
    return msgspec.structs.replace(
        cfg, agent=msgspec.structs.replace(agent, **changes), tools=tools
    )


def has_own_provider(cfg: Config, name: str) -> bool:
    own = settings(cfg, name)
    return bool(own.providers or own.models)


def allows(cfg: Config, name: str, tool: str, plugin: str | None = None) -> bool:
    """Whether profile ``name`` may use ``tool`` (of ``plugin``, for a plugin's tool)."""
    allowed = settings(cfg, name).tools
    if allowed is None:
        return True
    if plugin is not None:
        return f"{PLUGIN_TOOLS}{plugin}" in allowed
    return tool in allowed


# --- where a profile's turns run ---------------------------------------------------------------
SHARED_POOL = "agents/agent-"


def placed(cfg: Config) -> list[str]:
    """The profiles with a pool of their own (those with ``placement``)."""
    own = cfg.agent.profiles
    return [n for n in profile_names(cfg) if n in own and own[n].placement]


def pool(cfg: Config, name: str) -> tuple[str, int]:
    """(path prefix, workers) of the agent pool that runs profile ``name``'s turns."""
    own = cfg.agent.profiles.get(name)
    if own is not None and own.placement:
        return f"agents/profile:{name}-", own.workers
    return SHARED_POOL, cfg.agent.workers


def agent_path(cfg: Config, session_key: str, name: str) -> str:
    prefix, workers = pool(cfg, name)
    return f"{prefix}{shard_for(session_key, workers)}"


def agent_path_for(cfg: Config, session_key: str, msg: InboundMessage | None) -> str:
    """The agent actor that answers ``msg`` (None: a web/CLI chat of ``session_key``)."""
    return agent_path(cfg, session_key, resolve(cfg, route_of(msg)))


def route_of_session(session_key: str) -> Route:
    """The route of a session key (``channel:account:dm:sender`` or ``...:group:chat``), for
    calls that have only the key (the gateway's ``sessions.reset``). A DM's chat id is not in
    its key: a binding on ``chat`` is matched against the sender id there."""
    channel, _, rest = session_key.partition(":")
    account, _, rest = rest.partition(":")
    kind, _, who = rest.partition(":")
    if kind == "group":
        return Route(channel=channel, account=account, chat=who)
    return Route(channel=channel, account=account, chat=who, sender=who)


def agent_path_for_session(cfg: Config, session_key: str) -> str:
    return agent_path(cfg, session_key, resolve(cfg, route_of_session(session_key)))
