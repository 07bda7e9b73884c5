"""What every supervised actor has: ``run`` (its life), ``ready``, ``ping``, ``stop``, ``crash``.

The supervisor awaits ``run()``: returning is a normal exit, raising is an abnormal one, the
process dying is an abnormal one. ``ping`` runs in its own concurrency group (its own event
loop thread), so it still answers when the main loop is blocked and can report that it is.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import ray

from actors import memtrim, periodic, pipes
from actors.startup import STANDBY_NICE, preload
from actors.telemetry import configure_tracing
from moltbot import thread_nice
from moltbot.supervision.memory import measure_mb

HEARTBEAT_S = 0.25
RAY_THREADS_EVERY_S = 60.0  # Ray's threads started since, lowered too (``thread_nice``)


class CrashRequested(RuntimeError):
    """Raised inside ``run()`` on purpose (``moltbot kill --how raise``)."""


class ChildBase:
    """Base class of every supervised actor. Subclasses override ``setup`` and ``main``."""

    # methods the tree's actors on this node may call over the local pipe (``actors.pipes``)
    # instead of through Ray: hot, idempotent ones only (``routing.call`` retries them)
    PIPE_METHODS: ClassVar[frozenset[str]] = frozenset()

    def __init__(
        self,
        *,
        path: str = "",
        namespace: str = "moltbot",
        incarnation: int = 1,
        env: Mapping[str, str] | None = None,
        **_: Any,
    ) -> None:
        # the tree's environment (``control.tree_env``), set before anything here reads it; a
        # supervisor hands it on to the children it makes
        self.env = dict(env or {})
        os.environ.update(self.env)
        self.path = path
        self.incarnation = incarnation  # 1 at the first start, then +1 per restart
        self.namespace = namespace  # where the tree's names live (not the job's namespace)
        self._ready = asyncio.Event()
        self._crash = asyncio.Event()
        self._stopping = False
        self._run_task: asyncio.Task[Any] | None = None
        self._started = asyncio.Event()  # run() was called (a standby is parked until then)
        self._heartbeat = time.monotonic()
        self._created = time.time()

    # --- life ------------------------------------------------------------------------------
    async def setup(self) -> None:
        """Acquire what ``main`` needs; the ready handshake completes when this returns."""

    async def main(self) -> None:
        """The child's work; by default wait until stopped."""
        await asyncio.Event().wait()

    def preload_modules(self) -> Sequence[str]:
        """Modules ``setup`` will import that are heavy: imported first at low priority."""
        return self.modules_for(vars(self))

    @classmethod
    def modules_for(cls, args: dict[str, Any]) -> Sequence[str]:
        """``preload_modules`` of a child made with ``args`` (a host asks before making it)."""
        return ()

    def problem(self) -> str | None:
        """A reason this child should be considered stuck (checked by ``ping``), or None."""
        return None

    async def warm(self) -> dict[str, Any]:
        """A standby's only work until it is promoted: its heavy imports, at the lowest
        priority (nothing waits for them; the siblings at work must not notice)."""
        await preload(self.preload_modules, nice=STANDBY_NICE)
        return self.info()

    async def parked(self) -> None:
        """Returns once ``run`` starts: the supervisor's way to notice a spare that died."""
        await self._started.wait()

    async def _until(self, event: asyncio.Event) -> asyncio.Task[Any]:
        """Waits until ``event`` is set or ``run`` has ended, whichever is first (once ``run``
        was called: by the parent, or a root's own start); returns run's task."""
        await self._started.wait()
        assert self._run_task is not None
        waiter = asyncio.ensure_future(event.wait())
        try:
            await asyncio.wait({waiter, self._run_task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            waiter.cancel()
        return self._run_task

    async def run(self, incarnation: int | None = None) -> str:
        """The child's life. ``incarnation``: given when a standby is promoted (it was
        created before anyone knew which incarnation it would be)."""
        if self._run_task is not None:
            raise RuntimeError(f"{self.path}: already running")
        if incarnation is not None:
            self.incarnation = incarnation
        self._run_task = asyncio.current_task()
        self._started.set()
        configure_tracing()  # opt-in (MOLTBOT_OTEL=1), once per process, never raises
        memtrim.start()  # once per process: freed heap pages back to the OS every minute
        # Ray's own threads a step behind the ones that serve messages (once per process, and
        # again every minute for threads started since)
        thread_nice.lower_ray_threads()
        periodic.start_once("moltbot-ray-nice", RAY_THREADS_EVERY_S, thread_nice.lower_ray_threads)
        try:
            async with asyncio.TaskGroup() as tg:
                beat = tg.create_task(self._beat())
                watch = tg.create_task(self._crash_watch())
                pipe = tg.create_task(pipes.serve(self, self.PIPE_METHODS, self.path))
                if self.incarnation > 1:  # a restart must not starve the siblings at work
                    # (its modules named on the quiet thread: a host imports its children's
                    # classes to ask them, 0.2 s of CPU here)
                    await preload(self.preload_modules)
                await self.setup()
                self._ready.set()
                await self.main()
                beat.cancel()
                watch.cancel()
                pipe.cancel()
        except asyncio.CancelledError:
            if self._stopping:
                return "shutdown"
            raise
        except BaseExceptionGroup as group:  # surface the first real cause, not the group
            first: BaseException = group
            while isinstance(first, BaseExceptionGroup):
                first = first.exceptions[0]
            raise first from group
        return "normal"

    async def _beat(self) -> None:
        while True:
            self._heartbeat = time.monotonic()
            await asyncio.sleep(HEARTBEAT_S)

    async def _crash_watch(self) -> None:
        await self._crash.wait()
        raise CrashRequested(f"{self.path}: crash requested")

    # --- the supervisor's calls --------------------------------------------------------------
    async def ready(self) -> dict[str, Any]:
        await self._ready.wait()
        return self.info()

    async def pipe_address(self) -> dict[str, Any] | None:
        """Where this actor serves ``PIPE_METHODS`` (None: call it through Ray)."""
        await self._ready.wait()
        return pipes.address(self.path)

    def info(self) -> dict[str, Any]:
        ctx = ray.get_runtime_context()
        return {
            "pid": os.getpid(),
            "node": ctx.get_node_id(),
            "created": self._created,
            "incarnation": self.incarnation,
        }

    async def figures(self) -> dict[str, Any]:
        """A few cheap figures for ``status`` (in, out, latency ...); none by default."""
        return {}

    def pipe_figures(self) -> dict[str, Any]:
        return pipes.figures()

    async def status_figures(self) -> dict[str, Any]:
        """``figures`` and the requests served (``pipe_in``) and sent (``pipe_out``) over the
        local pipes (``actors.pipes``), what the supervisor's ``status`` shows."""
        pipe = pipes.figures()
        extra = {"pipe_in": pipe["served"], "pipe_out": pipe["calls"]}
        return {**await self.figures(), **{k: v for k, v in extra.items() if v}}

    # No task event: each process child is pinged every ``ping_interval_s``, and Ray keeps
    # the last ``task_events_max_num_task_in_gcs`` tasks in its GCS for the dashboard: the pings
    # filled that list (and grew the GCS by ~37 MB over a 30-minute soak) with nothing to see.
    @ray.method(concurrency_group="ping", enable_task_events=False)
    async def ping(self, max_memory_mb: int = 0) -> dict[str, Any]:
        """Alive and well? With a memory ceiling, also this process tree's size (``mem_mb``)."""
        age = time.monotonic() - self._heartbeat
        problem = self.problem()
        if problem is None and self._ready.is_set() and age > 10 * HEARTBEAT_S + 1.0:
            problem = f"event loop blocked for {age:.1f}s"
        answer: dict[str, Any] = {"ok": problem is None, "problem": problem or ""}
        if max_memory_mb > 0:
            answer["mem_mb"] = measure_mb(os.getpid(), max_memory_mb)
        return answer

    async def stop(self) -> None:
        self._stopping = True
        if self._run_task is not None and not self._run_task.done():
            self._run_task.cancel()

    @ray.method(concurrency_group="ping")
    def crash(self, how: str = "raise") -> str:
        """Crash on purpose: ``raise`` in run(), ``exit`` the process, or ``hang`` the loop."""
        if how == "exit":
            os._exit(1)
        if self._run_task is None:
            raise RuntimeError("not running")
        loop = self._run_task.get_loop()
        if how == "hang":
            loop.call_soon_threadsafe(time.sleep, 3600)
        else:
            loop.call_soon_threadsafe(self._crash.set)
        return how


CHILD_OPTIONS: dict[str, Any] = {"concurrency_groups": {"ping": 2}}
