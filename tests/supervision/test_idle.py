"""``IdleWatch``: a child started on demand ends once idle for ``idle_stop_s`` with nothing
running or held, then refuses calls (``Dormant``) before they run; 0 never ends."""

from __future__ import annotations

import asyncio

import pytest

from moltbot.errors import Dormant, Unavailable
from moltbot.supervision.idle import IdleWatch

IDLE_S = 0.2


async def test_it_ends_after_idle_and_refuses_calls_from_then() -> None:
    watch = IdleWatch("agents/agent-0", IDLE_S)
    ended = asyncio.create_task(watch.wait_idle(check_s=0.05))
    await asyncio.sleep(IDLE_S / 2)
    with watch.call():  # a call resets the clock
        pass
    await asyncio.sleep(IDLE_S * 0.75)
    assert not ended.done()  # 0.175 s after start, but only 0.075 s after the call
    await asyncio.wait_for(ended, IDLE_S * 3)
    assert watch.ending
    ran = []
    with pytest.raises(Dormant) as refused:
        with watch.call():
            ran.append(1)
    assert ran == [] and watch.calls == 0
    assert isinstance(refused.value, Unavailable)  # callers that only know Unavailable retry
    assert "agents/agent-0" in str(refused.value)


async def test_a_running_call_or_a_hold_keeps_it() -> None:
    watch = IdleWatch("tools/sandbox-0", IDLE_S)
    gate = asyncio.Event()

    async def long_call() -> None:
        with watch.call():
            await gate.wait()

    running = asyncio.create_task(long_call())
    held = {"on": True}
    ended = asyncio.create_task(watch.wait_idle(held=lambda: held["on"], check_s=0.05))
    await asyncio.sleep(IDLE_S * 3)
    assert watch.calls == 1 and watch.idle_for() == 0.0
    assert not ended.done()  # a call runs
    gate.set()
    await running
    await asyncio.sleep(IDLE_S * 3)
    assert not ended.done() and not watch.ending  # idle long enough, but held
    held["on"] = False
    await asyncio.wait_for(ended, IDLE_S * 3)
    assert watch.ending


async def test_zero_never_ends() -> None:
    watch = IdleWatch("agents/agent-0", 0.0)
    ended = asyncio.create_task(watch.wait_idle(check_s=0.01))
    await asyncio.sleep(0.2)
    assert not ended.done() and not watch.ending
    with watch.call():
        pass
    ended.cancel()
    with pytest.raises(asyncio.CancelledError):
        await ended
