"""Which Ray actor class runs a ``ChildSpec.kind``. Imported lazily so each kind's deps load
only in the processes that need them. A supervisor below the root, the store and the
scheduler are no actors of their own: they run inside the root's process
(``actors.supervisor_local``), and ``lookup`` reaches them through the root."""

from __future__ import annotations

import importlib
from typing import Any

import ray
from ray.experimental import internal_kv

KINDS: dict[str, tuple[str, str]] = {
    "supervisor": ("actors.supervisor", "Supervisor"),
    "worker": ("actors.worker", "Worker"),
    "store": ("actors.store", "StoreActor"),
    "agent": ("actors.agent", "AgentActor"),
    "sandbox": ("actors.tools", "SandboxActor"),
    "gateway": ("actors.gateway", "GatewayActor"),
    "channel": ("actors.channel", "ChannelActor"),
    "plugin": ("actors.plugin", "PluginActor"),
    "scheduler": ("actors.scheduler", "SchedulerActor"),
}


# Kinds a parent runs in its own process (the root's), as plain objects of these classes: the
# supervisors (pure decision logic), the store (file I/O off the loop) and the scheduler (a
# timer). A Ray worker process each cost ~50 MB and ~0.8 s of CPU to start, for nothing these
# need; the channels, agents, tools, gateway and plugins keep a process each (crash isolation).
IN_PROCESS: dict[str, tuple[str, str]] = {
    "supervisor": ("actors.supervisor", "SupervisorCore"),
    "store": ("actors.store", "StoreCore"),
    "scheduler": ("actors.scheduler", "SchedulerCore"),
}


def in_process(kind: str) -> bool:
    """Whether a child of ``kind`` runs inside its parent's process (the root's)."""
    return kind in IN_PROCESS


def core_class(kind: str) -> Any:
    """The plain class an in-process child of ``kind`` is an object of."""
    module, name = IN_PROCESS[kind]
    return getattr(importlib.import_module(module), name)


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


# --- where a promoted standby lives --------------------------------------------------------
# A child restarted from its warm standby (``supervision.<pool>.standby``) keeps the Ray name
# the standby was created with (``<name>@<n>``: Ray cannot rename an actor). Its supervisor
# records that name under the child's path in Ray's KV store, and ``lookup`` follows it.

_ALIAS_PREFIX = "moltbot/alias/"


def _alias_key(path: str) -> str:
    return _ALIAS_PREFIX + path


def set_alias(namespace: str, path: str, name: str) -> None:
    internal_kv._internal_kv_put(_alias_key(path), name, overwrite=True, namespace=namespace)


def clear_alias(namespace: str, path: str) -> None:
    internal_kv._internal_kv_del(_alias_key(path), namespace=namespace)


# A child running in the root's process is recorded under its path with this alias
IN_ROOT = "@root"


def lookup(path: str, namespace: str) -> Any:
    """The live actor at ``path``: by its own name, else by the name of the standby that was
    promoted to it, or (a supervisor inside the root's process) an ``InRoot`` that calls it
    through the root. ValueError if none is there (not started, or dead and not back yet)."""
    try:
        return ray.get_actor(actor_name(path), namespace=namespace)
    except ValueError:
        alias = internal_kv._internal_kv_get(_alias_key(path), namespace=namespace)
        if not alias:
            raise
        if alias.decode() == IN_ROOT:
            return InRoot(ray.get_actor(actor_name(""), namespace=namespace), path)
        return ray.get_actor(alias.decode(), namespace=namespace)


class InRoot:
    """A supervisor inside the root's process, used like its actor handle would be:
    ``handle.status.remote()`` is the root's ``call_in(path, "status")`` (an ObjectRef)."""

    def __init__(self, root: Any, path: str) -> None:
        self.root = root
        self.path = path

    def __getattr__(self, method: str) -> _Through:
        if method.startswith("_"):
            raise AttributeError(method)
        return _Through(self.root, self.path, method)

    def __reduce__(self) -> tuple[Any, ...]:
        return (InRoot, (self.root, self.path))


class _Through:
    def __init__(self, root: Any, path: str, method: str) -> None:
        self.root, self.path, self.method = root, path, method

    def remote(self, *args: Any, **kw: Any) -> Any:
        return self.root.call_in.remote(self.path, self.method, *args, **kw)


def standby_name(path: str, seq: int) -> str:
    """The Ray name of a standby for the child at ``path`` (it keeps it once promoted)."""
    return f"{actor_name(path)}@{seq}"
