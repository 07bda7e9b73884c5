"""The supervisor actor: carries out what ``moltbot.supervision.policy.decide`` says.

It starts its children in order (each must answer ``ready`` in time), watches each one by
awaiting its ``run()`` ref and pinging it, and on an exit asks the pure policy what to do:
restart (with backoff), remove, ignore, or escalate by raising out of its own ``run()``.

The root is a Ray actor (``Supervisor``, detached, named ``moltbot``); every supervisor below it
is a ``SupervisorCore`` on the root's event loop (``actors.supervisor_local``), and so are the
store and the scheduler (``actors.registry.IN_PROCESS``). A ``host`` is a supervisor in a Ray
worker process of its own whose children all run inside it (the accounts of one channel type).
Every other child (the gateway, each agent, sandbox and plugin) is a Ray actor of its own.
A child ``on_demand`` (sandboxes, agents, the gateway: ``actors.activation``) sleeps until used.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import deque
from typing import TYPE_CHECKING, Any

import ray

from actors import metrics, metrics_sweep, routing
from actors.activation import Activations
from actors.audit import AuditForwarder
from actors.base import CHILD_OPTIONS, ChildBase
from actors.child_record import IDLE, Record
from actors.exits import hint_of, reason_of, start_error_of
from actors.reaper import reap
from actors.registry import (
    actor_class,
    actor_name,
    clear_alias,
    core_class,
    in_process,
    inside,
    set_alias,
)
from actors.standby import Standbys, wanted
from actors.supervisor_local import InProcessPools, LocalChild, end_child, kill_child
from actors.supervisor_status import SupervisorStatus
from moltbot.errors import ChildStartError, EscalationError, NotFound, SupervisionError
from moltbot.supervision.backoff import delay as backoff_delay
from moltbot.supervision.memory import memory_exit
from moltbot.supervision.policy import Action, consecutive_restarts, decide
from moltbot.supervision.spec import ChildSpec, Exit, ExitKind, SupervisorFlags
from moltbot.supervision.tree import is_placement

log = logging.getLogger("moltbot.supervisor")
NAME_RETRY_S = 10.0
EVENTS_KEPT = 200


class SupervisorCore(InProcessPools, SupervisorStatus, Standbys, Activations, ChildBase):
    """A supervisor: the root as a Ray actor (``Supervisor``), the pools inside it, and each
    channel type's ``host`` (``ProcessHost``) as a Ray actor of its own."""

    def __init__(
        self,
        *,
        path: str = "",
        flags: SupervisorFlags | None = None,
        children: list[ChildSpec] | None = None,
        namespace: str = "moltbot",
        host: bool = False,
        owner: str | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(path=path, namespace=namespace, env=kw.get("env"))
        # host: every child runs inside this process, not only the IN_PROCESS kinds
        self.host = host
        # the path of the actor whose process this runs in (an actor: its own)
        self.owner = path if owner is None else owner
        self.flags = flags or SupervisorFlags()
        self.records = [Record(c) for c in (children or [])]
        self.history: tuple[float, ...] = ()
        self.events: deque[dict[str, Any]] = deque(maxlen=EVENTS_KEPT)
        self.seq = 0
        self._inbox: asyncio.Queue[tuple[str, int, Exit]] = asyncio.Queue(maxsize=1024)
        self._audit = AuditForwarder(namespace, path)  # supervision events, never waited for
        self._tg: asyncio.TaskGroup | None = None
        self._main_task: asyncio.Task[str] | None = None
        self._standby_seq = 0
        self._up = asyncio.Event()  # every child started
        self._waking: dict[str, asyncio.Lock] = {}  # one start at a time per on-demand child

    # --- life --------------------------------------------------------------------------------
    async def main(self) -> None:
        try:
            async with asyncio.TaskGroup() as tg:
                self._tg = tg
                for rec in self.records:
                    if rec.spec.on_demand:  # started by ``wake``, on first use
                        rec.state = IDLE
                self._activate(tg)  # the ports of socket-activated children: bound first
                boot = [r.spec.id for r in self.records if not r.spec.on_demand]
                first, together = self.flags.start_groups(boot)
                for rec in map(self._find, first):
                    assert rec is not None
                    await self._start(rec)
                async with asyncio.TaskGroup() as starting:  # one failure cancels the rest
                    for rec in map(self._find, together):
                        assert rec is not None
                        starting.create_task(self._start(rec))
                self._up.set()
                while True:
                    child_id, gen, exit = await self._inbox.get()
                    await self._handle(child_id, gen, exit)
        finally:
            # However this run ends (stopped, escalating, killed, a bug), no child outlives
            # it: an in-process supervisor's actors are owned by the root's process, not by it
            self._kill_all()
            # what is still queued goes with this incarnation, as it always did
            await self._audit.aclose(grace_s=0)

    async def ready(self) -> dict[str, Any]:
        """Once every child has started (``main`` starts them); a run that ended first raises."""
        run = await self._until(self._up)
        if not self._up.is_set():  # the run ended first: its failure, or it was stopped
            failed = None if run.cancelled() else run.exception()
            raise failed or SupervisionError(f"{actor_name(self.path)} stopped")
        return self.info()

    async def start_detached(self) -> bool:
        """Root only: run the tree inside this actor, independent of the caller's lifetime
        (and read the nodes' metrics endpoints each minute: ``actors.metrics_sweep``)."""
        if self._main_task is None or self._main_task.done():
            self._main_task = asyncio.get_running_loop().create_task(self.run())
        return metrics_sweep.start()

    async def wait(self) -> str:
        """Root only: until the tree stops; returns how it ended."""
        if self._main_task is None:
            return "not started"
        try:
            return await asyncio.shield(self._main_task)
        except Exception as exc:
            return f"failed: {type(exc).__name__}: {exc}"

    async def stop(self) -> None:
        """Stop children in reverse start order (each within its shutdown time), then exit."""
        self._stopping = True
        for rec in self.records:
            self._drop_standby(rec)
        await self._stop_all([r.spec.id for r in reversed(self.records)])
        await super().stop()

    async def wake(self, child_id: str) -> dict[str, Any]:
        """Start an on-demand child that sleeps (never started, or ended idle), as OTP's
        ``restart_child`` starts a terminated one; returns its state. Any other child is left
        as it is (running, or restarting: callers wait for it as for any restart)."""
        await self._until(self._up)
        rec = self._find(child_id)
        if rec is None:
            raise NotFound(f"{self.path or 'root'} has no child {child_id}")
        async with self._waking.setdefault(child_id, asyncio.Lock()):
            if rec.spec.on_demand and rec.state == IDLE and not self._stopping:
                try:
                    await self._start(rec)
                except ChildStartError:
                    rec.state = IDLE  # the next use tries again
                    raise
                self._event("woken", rec)
        return {"state": rec.state}

    # --- children ----------------------------------------------------------------------------
    def _child_path(self, rec: Record) -> str:
        """Where the child is addressed. A host is left out of its children's paths: an
        account inside ``channels/telegram`` is ``channels/telegram:main``, as it would be
        under ``channels`` itself (``moltbot status`` shows it inside its host)."""
        base = self.path
        if self.host:
            base = base.rsplit("/", 1)[0] if "/" in base else ""
        return f"{base}/{rec.spec.id}" if base else rec.spec.id

    def _options(self, rec: Record) -> dict[str, Any]:
        opts: dict[str, Any] = {
            "name": actor_name(self._child_path(rec)),
            "namespace": self.namespace,
            "max_restarts": 0,
            "max_task_retries": 0,
            "num_cpus": rec.spec.num_cpus,
        }
        if rec.spec.resources:
            opts["resources"] = dict(rec.spec.resources)
        return opts

    def _args(self, rec: Record) -> dict[str, Any]:
        args = {**rec.spec.args, "path": self._child_path(rec), "namespace": self.namespace}
        args["incarnation"] = rec.gen  # a restarted child imports at low priority
        args["env"] = self.env  # the tree's environment, handed down (``ChildBase``)
        return {**args, **self._activation_args(rec)}

    def preload_modules(self) -> tuple[str, ...]:
        """A host's: what its children will import (a warm standby host does it ahead)."""
        if not self.host:
            return ()
        out: list[str] = []
        for rec in self.records:
            out += core_class(rec.spec.kind).modules_for(rec.spec.args)
        return tuple(dict.fromkeys(out))

    def _here(self, rec: Record) -> bool:
        """Whether ``rec`` runs inside this process (a host's children, the IN_PROCESS kinds)."""
        return self.host or in_process(rec.spec.kind)

    async def _create(self, rec: Record) -> Any:
        args = self._args(rec)
        path = self._child_path(rec)
        rec.name = actor_name(path)
        if self._here(rec):  # an object on this loop, found through this process's actor
            # its path from that actor: a host's child is its own record there; the root's
            # walks down from the root's records
            rel = rec.spec.id if self.host else path.removeprefix(self.owner).lstrip("/")
            set_alias(self.namespace, path, inside(self.owner, rel))
            assert self._tg is not None
            return LocalChild(core_class(rec.spec.kind)(**args, owner=self.owner), self._tg)
        cls = actor_class(rec.spec.kind)
        if self.flags.standby:  # lookups by path find this incarnation by its own name again
            await asyncio.to_thread(clear_alias, self.namespace, self._child_path(rec))
        deadline = time.monotonic() + NAME_RETRY_S
        while True:
            try:  # a blocking GCS call of 3-60 ms: off the loop the in-process store is on
                return await asyncio.to_thread(cls.options(**self._options(rec)).remote, **args)
            except ValueError:  # the dead incarnation still holds the name for a moment
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)

    async def _start(self, rec: Record) -> None:
        rec.state = "starting"
        rec.started_at = time.time()  # a start that fails counts as no uptime (backoff grows)
        rec.mem_mb = 0.0
        rec.gen += 1
        spare = self._take_standby(rec)
        if spare is not None:
            await asyncio.to_thread(set_alias, self.namespace, self._child_path(rec), spare.name)
            rec.name = spare.name
            try:
                await self._launch(rec, spare.handle)
                self._event("promoted", rec, standby=spare.name)
                return
            except ChildStartError:  # the spare died meanwhile: start a new process instead
                log.warning("standby %s did not take over; starting a new process", spare.name)
                rec.gen += 1
        await self._launch(rec, await self._create(rec))

    async def _launch(self, rec: Record, handle: Any) -> None:
        rec.launching = handle
        try:
            await self._launch_and_wait(rec, handle)
        finally:
            rec.launching = None

    async def _launch_and_wait(self, rec: Record, handle: Any) -> None:
        run_ref = handle.run.remote(incarnation=rec.gen)
        ready = asyncio.ensure_future(handle.ready.remote())
        ran = asyncio.ensure_future(run_ref)
        if any(is_placement(name) for name in rec.spec.resources):
            # Placed on a node by custom resources: it may wait for that node to (re)join. It
            # is "waiting", not failed, and does not hold up its later siblings.
            rec.handle, rec.run_ref, rec.state = handle, run_ref, "waiting"
            rec.info = {}  # no node, no process yet (not those of a node that left)
            assert self._tg is not None
            self._tg.create_task(self._settle(rec, rec.gen, ready, ran))
            return
        try:
            done, _ = await asyncio.wait(
                {ready, ran}, timeout=rec.spec.ready_timeout, return_when=asyncio.FIRST_COMPLETED
            )
            if ready in done and ready.exception() is None:
                rec.info = ready.result()
            else:
                failed = ran.exception() if ran.done() else None
                if failed is None and ready in done:  # a supervisor's ready raises its failure
                    failed = ready.exception()
                deeper = start_error_of(failed)
                if deeper is not None:  # a supervisor whose child did not start: name that one
                    raise ChildStartError(deeper.user_message, hint=deeper.hint)
                why = reason_of(failed) if done else "ready timeout"
                raise ChildStartError(
                    f"{self._child_path(rec)} did not start: {why}", hint=hint_of(failed)
                )
        except BaseException:
            ready.cancel()
            ran.cancel()
            kill_child(handle)
            rec.state = "failed"
            raise
        finally:
            ready.cancel()
        rec.handle, rec.run_ref = handle, run_ref
        self._running(rec, ran)

    def _running(self, rec: Record, ran: asyncio.Future[Any]) -> None:
        rec.state = "running"
        rec.started_at = time.time()
        self._event("started", rec)
        assert self._tg is not None
        self._tg.create_task(self._watch(rec, rec.gen, ran))
        if wanted(self.flags, rec.spec) and not self._here(rec) and rec.standby is None:
            self._tg.create_task(self._spawn_standby(rec, rec.gen))

    def _remove(self, ids: tuple[str, ...] | list[str]) -> None:
        for r in self.records:
            if r.spec.id in ids:
                self._drop_standby(r)
        self.records = [r for r in self.records if r.spec.id not in ids]

    async def _settle(
        self, rec: Record, gen: int, ready: asyncio.Future[Any], ran: asyncio.Future[Any]
    ) -> None:
        """A placed child: running once its node takes it, an exit if it dies first."""
        try:
            await asyncio.wait({ready, ran}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            ready.cancel()
        if rec.gen != gen:
            return
        if ready.done() and not ready.cancelled() and ready.exception() is None:
            rec.info = ready.result()
            self._running(rec, ran)
            return
        exc = ran.exception() if ran.done() and not ran.cancelled() else None
        exit = Exit(kind=ExitKind.ABNORMAL, reason=reason_of(exc))
        await self._inbox.put((rec.spec.id, gen, exit))

    async def _watch(self, rec: Record, gen: int, ran: asyncio.Future[Any]) -> None:
        pinger = asyncio.ensure_future(self._ping_until_stuck(rec, gen))
        try:
            done, _ = await asyncio.wait({ran, pinger}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            pinger.cancel()
        if ran in done:
            exc = ran.exception()
            if exc is None:
                kind = ExitKind.SHUTDOWN if ran.result() == "shutdown" else ExitKind.NORMAL
                exit = Exit(kind=kind)
            else:
                exit = Exit(kind=ExitKind.ABNORMAL, reason=reason_of(exc))
        else:
            ran.cancel()
            exit = pinger.result()
        await self._inbox.put((rec.spec.id, gen, exit))

    async def _ping_until_stuck(self, rec: Record, gen: int) -> Exit:
        while True:
            await asyncio.sleep(self.flags.ping_interval_s)
            if rec.gen != gen:
                await asyncio.Event().wait()  # superseded; the run ref will settle it
            ceiling = rec.spec.max_memory_mb
            try:
                answer = await asyncio.wait_for(
                    asyncio.ensure_future(rec.handle.ping.remote(ceiling)),
                    self.flags.ping_timeout_s,
                )
            except routing.TimedOut:
                return Exit(kind=ExitKind.ABNORMAL, reason="no answer to ping")
            except (routing.ActorDied, routing.RemoteFailed):
                continue  # the run ref reports the death itself
            if not answer.get("ok", False):
                return Exit(kind=ExitKind.ABNORMAL, reason=f"stuck: {answer.get('problem')}")
            rec.mem_mb = float(answer.get("mem_mb", 0.0))
            over = memory_exit(ceiling, rec.mem_mb)
            if over is not None:
                return over

    async def _handle(self, child_id: str, gen: int, exit: Exit) -> None:
        rec = self._find(child_id)
        if rec is None or rec.gen != gen or self._stopping:
            return  # an exit of an older incarnation, or we are shutting down
        rec.last_exit = exit.reason or exit.kind.value
        self._event("exited", rec, exit=exit.kind.value, reason=exit.reason)
        specs = [r.spec for r in self.records]
        d = decide(self.flags, specs, child_id, exit, self.history, time.monotonic())
        self.history = d.history
        if d.action == Action.IGNORE:
            await self._kill(rec)
            self._drop_standby(rec)
            rec.state = IDLE if rec.spec.on_demand else "stopped"  # idle: ``wake`` starts it
            return
        if d.action == Action.REMOVE:
            await self._kill(rec)
            self._remove(d.remove)
            return
        if d.action == Action.ESCALATE:
            await self._kill(rec)
            for r in self.records:
                self._drop_standby(r)
            rec.state = "failed"
            self._event("escalate", rec, reason=d.reason)
            await self._stop_all(list(d.stop))
            raise EscalationError(f"{self.path or 'root'}: {d.reason}")
        asleep = {r.spec.id for r in self.records if r.state == IDLE}  # stay asleep
        await self._kill(rec)
        await self._stop_all(list(d.stop))
        self._remove(d.remove)
        uptime = time.time() - rec.started_at
        rec.consecutive = consecutive_restarts(rec.consecutive, uptime, self.flags.period)
        wait = backoff_delay(self.flags.backoff, rec.consecutive, random.random())
        self._event("restarting", rec, backoff=round(wait, 3), consecutive=rec.consecutive)
        to_start = [r for r in self.records if r.spec.id in d.start and r.spec.id not in asleep]
        for r in to_start:
            r.state = "restarting"
        assert self._tg is not None
        self._tg.create_task(self._restart_later(to_start, wait))

    async def _restart_later(self, recs: list[Record], wait: float) -> None:
        await asyncio.sleep(wait)
        for rec in recs:
            if self._stopping:
                return
            rec.restarts += 1
            metrics.restart(self._child_path(rec))
            try:
                await self._start(rec)
                self._event("restarted", rec, backoff=round(wait, 3))
            except Exception as exc:  # a failed start counts as another abnormal exit
                await self._inbox.put(
                    (rec.spec.id, rec.gen, Exit(kind=ExitKind.ABNORMAL, reason=reason_of(exc)))
                )
                return

    async def _stop_all(self, ids: list[str]) -> None:
        """Stop ``ids`` (given in stop order): children that started together stop together,
        as OTP's simple_one_for_one does (no order among them: a stop takes one shutdown, not
        one per child), then those started in order, in reverse."""
        first, _together = self.flags.start_groups([r.spec.id for r in self.records])
        together = [r for r in map(self._find, ids) if r is not None and r.spec.id not in first]
        await asyncio.gather(*(self._stop_child(r) for r in together))
        for rec in map(self._find, [i for i in ids if i in first]):
            if rec is not None:
                await self._stop_child(rec)

    async def _stop_child(self, rec: Record) -> None:
        if rec.handle is None:
            return
        rec.gen += 1  # whatever its watcher reports now is stale
        placed = rec.state != "waiting"  # a waiting child has no process to ask: just kill it
        rec.state = "stopping"
        if rec.spec.shutdown > 0 and placed:
            try:
                stopped = asyncio.ensure_future(rec.handle.stop.remote())
                await asyncio.wait_for(stopped, rec.spec.shutdown)
                await asyncio.wait_for(asyncio.ensure_future(rec.run_ref), rec.spec.shutdown)
            except Exception:  # noqa: S110 - timeout or already dead: killed below either way
                pass
        await self._kill(rec)
        rec.state = "stopped"
        self._event("stopped", rec)

    async def _kill(self, rec: Record) -> None:
        """End the child now, and wait until its process has exited (``actors.reaper``):
        nothing it still had in hand goes out beside its next incarnation."""
        if rec.handle is not None:
            await end_child(rec.handle)
            rec.handle = None
            if not self._here(rec):
                await reap(rec.info)

    def _kill_all(self) -> None:
        """Every child (running, starting, and spares) ended now, without waiting."""
        for rec in self.records:
            self._drop_standby(rec)
            for handle in {id(h): h for h in (rec.handle, rec.launching) if h is not None}.values():
                kill_child(handle)
                rec.state = "stopped"
            rec.handle = rec.launching = None

    def _find(self, child_id: str) -> Record | None:
        return next((r for r in self.records if r.spec.id == child_id), None)

    def _event(self, what: str, rec: Record, **extra: Any) -> None:
        self.seq += 1
        ev = {"seq": self.seq, "t": time.time(), "event": what, "child": self._child_path(rec)}
        ev.update(extra)
        self.events.append(ev)
        log.info("supervision %s %s %s", what, ev["child"], extra or "")
        # to the audit log, in order; supervision never waits for it (a full queue drops)
        self._audit.record("supervision", {"supervisor": actor_name(self.path), **ev})


class ProcessHost(SupervisorCore):
    """A supervisor in a process of its own whose children all run inside it (kind ``host``:
    the accounts of one channel type). A class of its own so the dashboard and ``ps`` tell it
    from the root."""

    def __init__(self, **kw: Any) -> None:
        super().__init__(**{**kw, "host": True})


if TYPE_CHECKING:  # typed as the class, as the decorated class was
    Supervisor = SupervisorCore
    Host = ProcessHost
else:  # the root, and the hosts: Ray actors
    Supervisor = ray.remote(**CHILD_OPTIONS)(SupervisorCore)
    Host = ray.remote(**CHILD_OPTIONS)(ProcessHost)
