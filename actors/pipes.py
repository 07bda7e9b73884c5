"""This actor process's local pipes (``moltbot.pipe``), wired to the tree.

Inside its ``run()`` every supervised actor runs ``serve``: a ``PipeHub`` for its own calls
to others and, when its class names ``PIPE_METHODS``, a ``PipeServer`` at
``$MOLTBOT_HOME/run/pipes/<pid>.sock``. ``actors.routing.call`` asks ``route`` first: the
client of the target's pipe when the target serves that method on this node, else None (a
Ray call). What a target serves is asked once (its ``pipe_address``, a Ray call) and kept
until ``forget`` (routing forgets it with the handle when a call finds the target gone).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any, NamedTuple

import ray

from moltbot import paths
from moltbot.errors import PipeClosed
from moltbot.pipe import PipeServer, private_folder, socket_path, sweep
from moltbot.pipe_client import PipeClient, PipeHub

log = logging.getLogger("moltbot.pipe")

ENABLED_ENV = "MOLTBOT_PIPES"  # "0": every call goes through Ray (to compare, or to debug)


class Route(NamedTuple):
    client: PipeClient | None
    methods: frozenset[str]


_NONE = Route(None, frozenset())
_state: dict[str, Any] = {"hub": None, "node": None}
_servers: dict[str, PipeServer] = {}  # by the serving actor's path
_routes: dict[tuple[str, str], Route] = {}


def passed_env() -> dict[str, str]:
    """The pipe switch where ``up`` runs, given on to every actor of the tree."""
    return {ENABLED_ENV: os.environ[ENABLED_ENV]} if ENABLED_ENV in os.environ else {}


def enabled() -> bool:
    return os.environ.get(ENABLED_ENV, "1") != "0"


def folder() -> Path | None:
    """Where this process's socket goes: under the home, or (a path too long for a socket)
    a private folder of this user in the temp dir."""
    for base in (paths.run_dir() / "pipes", Path(tempfile.gettempdir()) / f"moltbot-{os.getuid()}"):
        if socket_path(base, str(os.getpid())) is not None:
            return private_folder(base)
    return None


async def serve(target: object, methods: Iterable[str], name: str) -> None:
    """This process's pipes until cancelled (run in the actor's TaskGroup). Never raises:
    without pipes every call still goes through Ray. The first actor of a process owns its
    hub (the calls it sends); every actor that names ``PIPE_METHODS`` gets a server of its
    own, so the store inside the root's process serves its pipe as it would in its own."""
    if not enabled():
        await asyncio.Event().wait()
    owner = _state["hub"] is None
    hub = PipeHub() if owner else None
    server: PipeServer | None = None
    methods = frozenset(methods)
    where = folder() if methods else None
    if where is not None:
        if owner:
            sweep(where)
        stem = str(os.getpid()) if owner else f"{os.getpid()}-{_slug(name)}"
        path = socket_path(where, stem)
        if path is not None:
            server = PipeServer(target, methods, path, name=name or "root")
    if owner:
        _state.update(hub=hub, node=ray.get_runtime_context().get_node_id())
    if server is not None:
        _servers[name] = server
    try:
        async with asyncio.TaskGroup() as tg:
            if hub is not None:
                tg.create_task(hub.run())
            if server is not None:
                tg.create_task(_serve(server, name))
            await asyncio.Event().wait()
    finally:
        if _servers.get(name) is server:
            _servers.pop(name, None)
        if owner:
            _state.update(hub=None, node=None)
            _routes.clear()


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)[:40] or "actor"


async def _serve(server: PipeServer, name: str) -> None:
    try:
        await server.run()
    except OSError as exc:  # cannot bind: this actor is reached through Ray only
        log.warning("%s: no pipe (%s)", server.name, type(exc).__name__)
        if _servers.get(name) is server:
            _servers.pop(name, None)
        await asyncio.Event().wait()


def address(name: str = "") -> dict[str, Any] | None:
    """What ``route`` needs to reach the server of the actor ``name`` of this process, or
    None (not serving)."""
    server = _servers.get(name)
    if server is None or not server.started.is_set():
        return None
    return {"path": str(server.path), "node": _state["node"], "methods": sorted(server.methods)}


async def route(namespace: str, path: str, method: str, target: Any) -> PipeClient | None:
    """The pipe to send ``method`` to the actor at ``path`` (``target``: its Ray handle)
    over, or None for a Ray call. PipeClosed when the pipe known for it has closed."""
    hub: PipeHub | None = _state["hub"]
    if hub is None or not hub.running:
        return None
    key = (namespace, path)
    found = _routes.get(key)
    if found is None:
        found = _routes[key] = await _lookup(hub, target)
    if found.client is None or method not in found.methods:
        return None
    if found.client.closed:
        raise PipeClosed(f"the pipe to {path} closed")
    return found.client


async def _lookup(hub: PipeHub, target: Any) -> Route:
    try:
        info = await target.pipe_address.remote()
    except AttributeError:  # not a supervised actor
        return _NONE
    if not info or info.get("node") != _state["node"]:
        return _NONE
    client = await hub.client(Path(info["path"]))
    return _NONE if client is None else Route(client, frozenset(info.get("methods", ())))


def figures() -> dict[str, Any]:
    """Requests served over this process's pipes and calls it sent over pipes (``info``)."""
    hub: PipeHub | None = _state["hub"]
    return {
        "serving": any(s.started.is_set() for s in _servers.values()),
        "served": sum(s.requests for s in _servers.values()),
        "calls": hub.calls if hub is not None else 0,
    }


def forget(namespace: str, path: str) -> None:
    with contextlib.suppress(KeyError):
        del _routes[(namespace, path)]
