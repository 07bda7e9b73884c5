"""SessionGate: one turn per session, sessions in parallel, bounded waiting; stable sharding."""

from __future__ import annotations

import asyncio

import pytest

from moltbot.agent.sessions import SessionGate, shard_for
from moltbot.errors import RateLimited


async def test_turns_of_one_session_are_serialized_in_order() -> None:
    gate = SessionGate(queue_size=5)
    log: list[str] = []

    async def turn(n: int) -> None:
        async with gate.hold("s1"):
            log.append(f"start{n}")
            await asyncio.sleep(0.01)
            log.append(f"end{n}")

    async with asyncio.TaskGroup() as tg:
        for n in range(4):
            tg.create_task(turn(n))
            await asyncio.sleep(0)
    assert log == [x for n in range(4) for x in (f"start{n}", f"end{n}")]
    assert gate.active_sessions() == 0


async def test_different_sessions_run_concurrently() -> None:
    gate = SessionGate(queue_size=1)
    inside = 0
    peak = 0
    both_in = asyncio.Event()

    async def turn(session: str) -> None:
        nonlocal inside, peak
        async with gate.hold(session):
            inside += 1
            peak = max(peak, inside)
            if inside == 2:
                both_in.set()
            await asyncio.wait_for(both_in.wait(), 2)
            inside -= 1

    async with asyncio.TaskGroup() as tg:
        tg.create_task(turn("a"))
        tg.create_task(turn("b"))
    assert peak == 2


async def test_queue_over_its_bound_raises_rate_limited() -> None:
    gate = SessionGate(queue_size=2)
    release = asyncio.Event()
    entered: list[int] = []

    async def turn(n: int) -> None:
        async with gate.hold("busy"):
            entered.append(n)
            await release.wait()

    async with asyncio.TaskGroup() as tg:
        for n in range(3):  # one running, two waiting
            tg.create_task(turn(n))
        await asyncio.sleep(0.01)
        assert gate.busy("busy") and gate.waiting("busy") == 2
        with pytest.raises(RateLimited) as info:
            async with gate.hold("busy"):
                pass
        assert "waiting" in info.value.user_message and info.value.retry_after > 0
        async with gate.hold("other"):  # other sessions are not affected
            pass
        release.set()
    assert entered == [0, 1, 2]


async def test_cancelled_waiter_frees_its_place() -> None:
    gate = SessionGate(queue_size=1)
    release = asyncio.Event()

    async def hold_until_released() -> None:
        async with gate.hold("s"):
            await release.wait()

    async def wait_forever() -> None:
        async with gate.hold("s"):
            pass

    async with asyncio.TaskGroup() as tg:
        tg.create_task(hold_until_released())
        await asyncio.sleep(0)
        waiter = tg.create_task(wait_forever())
        await asyncio.sleep(0.01)
        assert gate.waiting("s") == 1
        waiter.cancel()
        await asyncio.sleep(0)
        assert gate.waiting("s") == 0
        release.set()
    assert gate.active_sessions() == 0


def test_shard_for_is_stable_and_spreads() -> None:
    assert shard_for("telegram:main:dm:42", 4) == shard_for("telegram:main:dm:42", 4)
    # pinned value: must not change between releases, processes or PYTHONHASHSEED
    assert shard_for("telegram:main:dm:42", 1000) == 352
    counts = [0] * 4
    for n in range(400):
        counts[shard_for(f"slack:w:dm:U{n}", 4)] += 1
    assert all(60 < c < 140 for c in counts)
    assert shard_for("x", 1) == 0
    with pytest.raises(ValueError):
        shard_for("x", 0)
