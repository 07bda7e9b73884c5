"""Pool supervisors, the store and the scheduler inside the root's process.

A supervisor is pure decision logic: a Ray worker process per pool (about 60 MB each) bought
nothing; nor did one for the store (its file I/O runs off the loop, in threads) or the
scheduler (a timer). Each runs as an object on the root actor's event loop (the kinds of
``actors.registry.IN_PROCESS``), and its parent holds it through a :class:`LocalChild`,
which answers the calls a parent makes on a Ray handle (``handle.ready.remote()`` ... give
awaitables; ``run`` gives a ref-like awaitable that settles when the child ends) so the
supervisor's code is the same for both kinds of child. ``kill_child`` is ``ray.kill`` for
both: for a local child it cancels its run.

What differs from a process, on purpose:
- A Ray actor dies with its owner's process; a cancelled supervisor object takes nothing with
  it. So a supervisor kills its own children whenever its run ends, however it ends
  (``SupervisorCore.main``): an escalating or killed pool leaves no orphan, and the pool its
  parent starts again finds its children's names free.
- An in-process child has no memory of its own to cap (``max_memory_mb`` of its spec is not
  measured: it would be the root's), and ``crash`` never ends or blocks the shared process:
  ``exit``/``kill`` end that child alone (reason ``killed``), ``hang`` makes it stop answering
  its parent's ping, which then kills and restarts it as it would a stuck process.
- Callers outside the root reach an in-process child through the root (``call_in``, below;
  ``actors.registry.lookup`` hands out an ``Inside`` for its path).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Callable, Generator
from typing import TYPE_CHECKING, Any, cast

import ray

from actors.exits import ChildKilled, ChildRaised

if TYPE_CHECKING:
    from actors.base import ChildBase

HIDDEN = frozenset({"run", "start_detached", "wait", "call_in", "kill"})  # not through call_in


class _Ref:
    """What ``run.remote()`` gives: awaitable any number of times (each await a new wait, as
    an ObjectRef), and cancelling one await leaves the supervisor running."""

    def __init__(self, ended: asyncio.Future[str]) -> None:
        self._ended = ended

    def __await__(self) -> Generator[Any, None, str]:
        return asyncio.shield(self._ended).__await__()


class _Method:
    def __init__(self, fn: Callable[..., Any]) -> None:
        self._fn = fn

    def remote(self, *args: Any, **kw: Any) -> Any:
        return _invoke(self._fn, args, kw)


async def _invoke(fn: Callable[..., Any], args: tuple[Any, ...], kw: dict[str, Any]) -> Any:
    out = fn(*args, **kw)
    return await out if inspect.isawaitable(out) else out


class _Run:
    def __init__(self, child: LocalChild) -> None:
        self._child = child

    def remote(self, incarnation: int | None = None) -> _Ref:
        return self._child.start(incarnation)


class LocalChild:
    """A supervisor running in this process, held by its parent as a Ray handle is.

    Its life is one task in the parent's TaskGroup (``_drive``), which never raises into that
    group: how the supervisor ended (its result, ``ChildRaised`` or ``ChildKilled``) is set on
    the future its parent awaits."""

    def __init__(self, core: ChildBase, tg: asyncio.TaskGroup) -> None:
        self.core = core
        self._tg = tg
        self._launched = False
        self._inner: asyncio.Task[str] | None = None  # the supervisor's run
        self._ended: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._ended.add_done_callback(_seen)  # how it ended is in its parent's status anyway
        self._hung = False
        self.run = _Run(self)
        self.ping = _Method(self._ping)
        self.crash = _Method(self._crash)

    def __getattr__(self, name: str) -> _Method:
        if name.startswith("_"):
            raise AttributeError(name)
        return _Method(getattr(self.core, name))

    def start(self, incarnation: int | None) -> _Ref:
        if not self._launched and not self._ended.done():
            self._launched = True
            self._tg.create_task(self._drive(incarnation), name=f"drive {self.core.path}")
        return _Ref(self._ended)

    async def _drive(self, incarnation: int | None) -> None:
        if self._ended.done():  # killed before it ran
            return
        inner = self._inner = asyncio.get_running_loop().create_task(
            self.core.run(incarnation=incarnation), name=f"supervisor {self.core.path}"
        )
        try:
            await asyncio.wait({inner})
        except asyncio.CancelledError:  # the parent itself is ending: so does its child
            inner.cancel()
            await asyncio.wait({inner})
        if self._ended.done():
            return
        if inner.cancelled():
            self._ended.set_exception(ChildKilled(self.core.path))
        elif (failed := inner.exception()) is not None:
            self._ended.set_exception(ChildRaised(failed))
        else:
            self._ended.set_result(inner.result())

    def kill(self) -> None:
        """As ``ray.kill``: the supervisor ends now (its run's ``finally`` kills its children)."""
        if self._inner is None:
            if not self._ended.done():
                self._ended.set_exception(ChildKilled(self.core.path))
        elif not self._inner.done():
            self._inner.cancel()

    async def _ping(self, max_memory_mb: int = 0) -> dict[str, Any]:
        if self._hung:
            await asyncio.Event().wait()  # a stuck pool: its parent's ping times out
        return await self.core.ping(0)  # the process is the root's: no ceiling of its own

    def _crash(self, how: str = "raise") -> str:
        if how in ("exit", "kill"):
            self.kill()
        elif how == "hang":
            self._hung = True
        else:
            cast(Any, self.core).crash("raise")  # ray.method's typing hides the function
        return how


def _seen(ended: asyncio.Future[str]) -> None:
    if not ended.cancelled():
        ended.exception()  # retrieved: a child killed before it ran is no unhandled error


def kill_child(handle: Any) -> None:
    """End a child now: ``ray.kill`` for an actor, cancelling its run for a local supervisor."""
    if isinstance(handle, LocalChild):
        handle.kill()
    else:
        ray.kill(handle, no_restart=True)


async def end_child(handle: Any) -> None:
    """``kill_child`` off the event loop: ``ray.kill`` is a blocking call to the GCS (1-10 ms),
    and the root's loop also serves the store every channel journals to."""
    if isinstance(handle, LocalChild):
        handle.kill()
    else:
        await asyncio.to_thread(ray.kill, handle, no_restart=True)


class InProcessPools:
    """Mixed into the supervisor: reaching its in-process supervisors by path."""

    records: list[Any]

    async def call_in(self, path: str, method: str, *args: Any, **kw: Any) -> Any:
        """``method`` of the in-process supervisor at ``path`` (``channels``), called as its
        Ray handle would be. ValueError when none runs there now, as a name lookup's."""
        target = self._local_at(path)
        if method.startswith("_") or method in HIDDEN:
            raise ValueError(f"{method!r} is not called from outside")
        return await getattr(target, method).remote(*args, **kw)

    def _local_at(self, path: str) -> LocalChild:
        here: Any = self
        found: LocalChild | None = None
        for part in path.split("/"):
            rec = next((r for r in here.records if r.spec.id == part), None)
            handle = None if rec is None else (rec.handle or rec.launching)
            if not isinstance(handle, LocalChild):
                raise ValueError(f"nothing runs at {path!r} in this process now")
            found, here = handle, handle.core
        assert found is not None
        return found
