"""Which Ray actor class runs a ``ChildSpec.kind``. Imported lazily so each kind's deps load
only in the processes that need them."""

from __future__ import annotations

import importlib
from typing import Any

KINDS: dict[str, tuple[str, str]] = {
    "supervisor": ("actors.supervisor", "Supervisor"),
    "placeholder": ("actors.placeholder", "Placeholder"),
    "worker": ("actors.placeholder", "Worker"),
    "store": ("actors.store", "StoreActor"),
    "agent": ("actors.agent", "AgentActor"),
    "sandbox": ("actors.tools", "SandboxActor"),
    "gateway": ("actors.gateway", "GatewayActor"),
    "channel": ("actors.channel", "ChannelActor"),
    "plugin": ("actors.plugin", "PluginActor"),
}


def actor_class(kind: str) -> Any:
    try:
        module, name = KINDS[kind]
    except KeyError:
        known = ", ".join(sorted(KINDS))
        raise ValueError(f"unknown actor kind {kind!r}; known: {known}") from None
    return getattr(importlib.import_module(module), name)


def actor_name(path: str) -> str:
    """The Ray actor name shown in the dashboard: ``moltbot.<path>`` with '/' as '.'."""
    return "moltbot" if not path else "moltbot." + path.replace("/", ".")
