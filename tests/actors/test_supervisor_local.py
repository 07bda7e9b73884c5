"""``LocalChild``: a supervisor inside its parent's process, held as a Ray handle is (plain
asyncio: supervisors without worker children). Their ``ready`` reads Ray's runtime context,
which would start a Ray of its own inside the first test (seconds with the loop blocked, and
the session's Ray could not start after it): the session's is started first."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable

import pytest

from actors.exits import ChildKilled, ChildRaised, reason_of
from actors.supervisor import Record, SupervisorCore
from actors.supervisor_local import LocalChild, kill_child
from moltbot.errors import EscalationError
from moltbot.supervision.spec import ChildSpec, ChildType

pytestmark = pytest.mark.usefixtures("ray_cluster")


async def started(tg: asyncio.TaskGroup, path: str) -> tuple[LocalChild, Awaitable[str]]:
    child = LocalChild(SupervisorCore(path=path, children=[]), tg)
    ref = child.run.remote(incarnation=1)
    await asyncio.wait_for(child.core._up.wait(), 2)
    return child, ref


def adopt(parent: SupervisorCore, cid: str, child: LocalChild) -> None:
    rec = Record(ChildSpec(id=cid, kind="supervisor", child_type=ChildType.SUPERVISOR))
    rec.handle, rec.state = child, "running"
    parent.records.append(rec)


async def test_stopped_through_its_handle_it_ends_with_shutdown_awaitable_twice() -> None:
    async with asyncio.TaskGroup() as tg:
        child, ref = await started(tg, "pool")
        assert (await child.ping.remote(512))["ok"] is True
        await child.stop.remote()
        assert await asyncio.wait_for(ref, 2) == "shutdown"
        assert await asyncio.wait_for(ref, 2) == "shutdown"


async def test_killed_it_ends_alone_and_takes_its_own_children_with_it() -> None:
    async with asyncio.TaskGroup() as tg:
        pool, pool_ref = await started(tg, "pool")
        inner, inner_ref = await started(tg, "pool/inner")
        adopt(pool.core, "inner", inner)
        kill_child(pool)
        for ref in (pool_ref, inner_ref):
            with pytest.raises(ChildKilled) as info:
                await asyncio.wait_for(ref, 2)
            assert reason_of(info.value) == "killed"
        assert pool.core.records[0].handle is None and pool.core.records[0].state == "stopped"


async def test_a_cancelled_wait_on_it_leaves_it_running() -> None:
    async with asyncio.TaskGroup() as tg:
        child, ref = await started(tg, "pool")
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(asyncio.ensure_future(ref), 0.1)
        assert (await child.ping.remote())["ok"] is True
        await child.stop.remote()
        assert await ref == "shutdown"


async def test_its_parent_ending_ends_it() -> None:
    refs: list[Awaitable[str]] = []
    with pytest.raises(ExceptionGroup):
        async with asyncio.TaskGroup() as tg:
            _child, ref = await started(tg, "pool")
            refs.append(ref)
            raise RuntimeError("the parent fails")
    with pytest.raises(ChildKilled):
        await refs[0]


async def test_crash_raise_hang_and_exit_never_touch_the_shared_process() -> None:
    async with asyncio.TaskGroup() as tg:
        child, ref = await started(tg, "pool")
        assert await child.crash.remote("raise") == "raise"
        with pytest.raises(ChildRaised) as info:
            await asyncio.wait_for(ref, 2)
        assert reason_of(info.value) == "raised CrashRequested"

        child, ref = await started(tg, "pool")
        assert await child.crash.remote("hang") == "hang"
        with pytest.raises(TimeoutError):  # a stuck pool: no answer to its parent's ping
            await asyncio.wait_for(asyncio.ensure_future(child.ping.remote()), 0.3)
        await asyncio.sleep(0.05)  # while this loop, the process's, goes on
        assert await child.crash.remote("exit") == "exit"
        with pytest.raises(ChildKilled):
            await asyncio.wait_for(ref, 2)


def test_an_escalation_reads_as_its_own_message() -> None:
    assert reason_of(ChildRaised(EscalationError("pool: too many restarts"))) == (
        "pool: too many restarts"
    )


async def test_call_in_reaches_a_pool_by_path_and_only_its_public_calls() -> None:
    async with asyncio.TaskGroup() as tg:
        root = SupervisorCore(path="", children=[])
        pool, _ = await started(tg, "pool")
        inner, _ = await started(tg, "pool/inner")
        adopt(root, "pool", pool)
        adopt(pool.core, "inner", inner)
        assert [s["id"] for s in await root.call_in("pool", "spec_of")] == ["inner"]
        assert await root.call_in("pool/inner", "spec_of") == []
        assert await root.call_in("pool/inner", "recent_events", 0) == []
        for method in ("run", "kill", "call_in", "start_detached", "wait", "_kill_all"):
            with pytest.raises(ValueError, match="not called from outside"):
                await root.call_in("pool", method)
        for path in ("nope", "pool/nope", "", "pool/inner/deeper"):
            with pytest.raises(ValueError, match="nothing runs at"):
                await root.call_in(path, "status")
        kill_child(pool)
        kill_child(inner)
