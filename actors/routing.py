"""Finding the actors a message goes through, by their stable names, across restarts.

Handles are looked up by name on each use (a restarted actor is a new process with the same
name), and ``call`` rides through a restart: it retries while the target is dead or not yet
back, with backoff, until a deadline. Only use ``call`` for idempotent requests (the store's
journal dedups by message id; an agent turn is keyed by message id).

It is also the one place Ray's errors are read: ``ActorDied`` (the actor's process is gone),
``RemoteFailed`` (the remote method raised; ``cause_of`` gives what it raised),
``TimedOut``, and ``raise_remote`` to re-raise a failed call in moltbot's terms.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, NoReturn

from ray.exceptions import (
    ActorDiedError,
    ActorUnavailableError,
    GetTimeoutError,
    RayActorError,
    RayTaskError,
)

from actors import pipes
from actors.registry import lookup
from moltbot.agent.sessions import shard_for
from moltbot.backoff import delay as backoff_delay
from moltbot.errors import Dormant, MoltbotError, PipeClosed, Unavailable

RETRYABLE = (RayActorError, ActorDiedError, ActorUnavailableError, ValueError, PipeClosed)
ActorDied = RayActorError  # the actor's process died (before or during the call)
RemoteFailed = RayTaskError  # the remote method raised; ``cause_of`` gives what
TimedOut = (TimeoutError, GetTimeoutError)  # no answer in time (asyncio or ``ray.get``)


def cause_of(exc: BaseException | None) -> BaseException | None:
    """What the remote method raised, out of Ray's ``RayTaskError`` wrapper; else ``exc``."""
    if isinstance(exc, RayTaskError) and getattr(exc, "cause", None) is not None:
        return exc.cause
    return exc


def raise_remote(exc: BaseException, fallback: MoltbotError | None = None) -> NoReturn:
    """Re-raise a failed remote call in moltbot's terms: a moltbot error the remote method
    raised as itself (it pickles whole), anything else as ``fallback`` (or unchanged)."""
    cause = cause_of(exc)
    if isinstance(cause, MoltbotError):
        raise cause from None
    if fallback is not None:
        raise fallback from None
    raise exc


_HANDLES: dict[tuple[str, str], Any] = {}  # bounded by the tree's size


def handle(namespace: str, path: str) -> Any:
    """The actor at ``path`` (e.g. ``store``, ``agents/agent-1``); ValueError if absent.

    Handles are cached (a name lookup is a blocking round trip to Ray's GCS); ``forget``
    drops one when a call finds its actor dead, so the next call looks the restarted one up.
    """
    key = (namespace, path)
    found = _HANDLES.get(key)
    if found is None:
        found = _HANDLES[key] = lookup(path, namespace)
    return found


def forget(namespace: str, path: str) -> None:
    _HANDLES.pop((namespace, path), None)
    pipes.forget(namespace, path)


def agent_path(session_key: str, workers: int) -> str:
    return f"agents/agent-{shard_for(session_key, workers)}"


def sandbox_path(session_key: str, workers: int) -> str:
    return f"tools/sandbox-{shard_for(session_key, workers)}"


def plugin_path(plugin: str) -> str:
    return f"plugins/plugin:{plugin}"


async def call(
    namespace: str,
    path: str,
    method: str,
    *args: Any,
    deadline_s: float = 60.0,
    wake: bool = False,
    **kwargs: Any,
) -> Any:
    """Call ``method`` on the actor at ``path``, waiting through its restarts: over its
    local pipe when it serves ``method`` on this node (``actors.pipes``), else through Ray.
    Over a pipe a remote moltbot error comes back as itself (through Ray: wrapped in a
    ``RayTaskError`` that is also an instance of it), anything else as ``Unavailable``.

    ``wake``: the actor may be a child started on demand (an agent): absent, or refusing the
    call as it ends idle (``Dormant``: nothing ran), its supervisor is asked to start it and
    the call is sent again at once."""
    end = time.monotonic() + deadline_s
    attempt = 0
    while True:
        try:
            target = handle(namespace, path)
            pipe = await pipes.route(namespace, path, method, target)
            if pipe is not None:
                return await pipe.call(method, *args, **kwargs)
            return await getattr(target, method).remote(*args, **kwargs)
        except RETRYABLE as exc:
            forget(namespace, path)
            attempt += 1
            if time.monotonic() >= end:
                raise Unavailable(f"{path} is not available right now") from None
            if wake and isinstance(exc, ValueError):  # asleep (or between incarnations)
                if await _wake(namespace, path, end) == RUNNING:
                    continue
            await asyncio.sleep(
                backoff_delay(attempt - 1, base=0.1, cap=2.0, jitter=0.5, kind="around")
            )
        except Dormant:
            if not wake or time.monotonic() >= end:
                raise
            forget(namespace, path)  # the incarnation ending: its supervisor starts the next
            attempt += 1
            await asyncio.sleep(backoff_delay(attempt - 1, base=0.05, cap=1.0, kind="around"))


RUNNING = "running"


async def _wake(namespace: str, path: str, end: float) -> str:
    """Ask the supervisor of the on-demand child at ``path`` to start it; its state after
    (``running``; anything else, e.g. restarting: the caller waits as for any restart)."""
    parent, child_id = path.rsplit("/", 1)
    left = max(end - time.monotonic(), 1.0)
    found: dict[str, Any] = await call(namespace, parent, "wake", child_id, deadline_s=left)
    return str(found.get("state", ""))


async def live(namespace: str, path: str, deadline_s: float = 60.0) -> Any:
    """A handle of the actor at ``path`` that answered ``ready`` (waits through a restart).

    For a request that must be sent at most once (a tool call, a plugin method): find the
    actor with this (safe to retry), then call it once and handle its death yourself.
    """
    await call(namespace, path, "ready", deadline_s=deadline_s)
    return handle(namespace, path)


async def awake(namespace: str, path: str, deadline_s: float = 60.0) -> Any:
    """``live`` for a child started on demand (a sandbox): its supervisor is asked to
    ``wake`` it first (nothing to do when it runs, or is restarting)."""
    await _wake(namespace, path, time.monotonic() + deadline_s)
    return await live(namespace, path, deadline_s)


async def call_running(
    namespace: str, path: str, method: str, *args: Any, deadline_s: float = 10.0
) -> Any:
    """``call``, or None at once when no actor is at ``path`` now (an on-demand child asleep,
    or one between incarnations): for questions only a running actor can have an answer to,
    such as the approvals a sandbox holds in memory."""
    forget(namespace, path)  # a cached handle may be of an incarnation that ended
    try:
        handle(namespace, path)
    except ValueError:
        return None
    return await call(namespace, path, method, *args, deadline_s=deadline_s)
