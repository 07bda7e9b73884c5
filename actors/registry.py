"""Which Ray actor class runs a ``ChildSpec.kind``. Imported lazily so each kind's deps load
only in the processes that need them. A supervisor below the root, the store and the
scheduler are no actors of their own: they run inside the root's process
(``actors.supervisor_local``); a channel account runs inside its type's process (a ``host``
supervisor: ``moltbot.supervision.tree``). ``lookup`` reaches such a child through the actor
whose process it is in."""

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
    "host": ("actors.supervisor", "Host"),  # a supervisor whose children share its process
}


# The plain classes of the kinds that can run inside another actor's process.
CORES: dict[str, tuple[str, str]] = {
    "supervisor": ("actors.supervisor", "SupervisorCore"),
    "store": ("actors.store", "StoreCore"),
    "scheduler": ("actors.scheduler", "SchedulerCore"),
    "channel": ("actors.channel", "ChannelCore"),
}

# Kinds a parent always runs in its own process (the root's), as plain objects: the
# supervisors (pure decision logic), the store (file I/O off the loop) and the scheduler (a
# timer). A Ray worker process each cost ~50 MB and ~0.8 s of CPU to start, for nothing these
# need; the agents, tools, gateway and plugins keep a process each (crash isolation), and the
# accounts of a channel type share one (a ``host``'s children all run inside it).
IN_PROCESS = frozenset({"supervisor", "store", "scheduler"})


def in_process(kind: str) -> bool:
    """Whether a child of ``kind`` runs inside its parent's process whatever the parent."""
    return kind in IN_PROCESS


def core_class(kind: str) -> Any:
    """The plain class an in-process child of ``kind`` is an object of."""
    try:
        module, name = CORES[kind]
    except KeyError:
        raise ValueError(f"a {kind!r} child cannot run inside another process") from None
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


# A child running inside another actor's process is recorded under its path as
# ``@in <owner's path> <its path from the owner>``
_INSIDE = "@in "


def inside(owner: str, rel: str) -> str:
    """The alias of a child at ``rel`` (a path below ``owner``) inside the process of the actor
    at ``owner`` (``""``: the root)."""
    return f"{_INSIDE}{owner} {rel}"


def lookup(path: str, namespace: str) -> Any:
    """The live actor at ``path``: by its own name, else by the name of the standby that was
    promoted to it, or (a child inside another actor's process) an ``Inside`` that calls it
    through that actor. ValueError if none is there (not started, or dead and not back yet)."""
    try:
        return ray.get_actor(actor_name(path), namespace=namespace)
    except ValueError:
        alias = internal_kv._internal_kv_get(_alias_key(path), namespace=namespace)
        if not alias:
            raise
        name = alias.decode()
        if name.startswith(_INSIDE):
            owner, rel = name.removeprefix(_INSIDE).split(" ", 1)
            return Inside(lookup(owner, namespace), rel)
        return ray.get_actor(name, namespace=namespace)


class Inside:
    """A child inside another actor's process (the root's, or a channel type's), used like
    its actor handle would be: ``handle.status.remote()`` is that actor's ``call_in(path,
    "status")`` (an ObjectRef), ``path`` relative to it."""

    def __init__(self, owner: Any, path: str) -> None:
        self.owner = owner
        self.path = path

    def __getattr__(self, method: str) -> _Through:
        if method.startswith("_"):
            raise AttributeError(method)
        return _Through(self.owner, self.path, method)

    def __reduce__(self) -> tuple[Any, ...]:
        return (Inside, (self.owner, self.path))


class _Through:
    def __init__(self, owner: Any, path: str, method: str) -> None:
        self.owner, self.path, self.method = owner, path, method

    def remote(self, *args: Any, **kw: Any) -> Any:
        return self.owner.call_in.remote(self.path, self.method, *args, **kw)


def standby_name(path: str, seq: int) -> str:
    """The Ray name of a standby for the child at ``path`` (it keeps it once promoted)."""
    return f"{actor_name(path)}@{seq}"
