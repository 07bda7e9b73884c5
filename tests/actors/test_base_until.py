"""``ChildBase._until``: what ``Supervisor.ready`` waits with (plain asyncio, no Ray)."""

from __future__ import annotations

import asyncio

import pytest

from actors.base import ChildBase, CrashRequested


async def test_until_wakes_when_the_event_is_set_while_run_goes_on() -> None:
    child = ChildBase(path="t")
    event = asyncio.Event()
    waiting = asyncio.ensure_future(child._until(event))
    await asyncio.sleep(0.05)
    assert not waiting.done()  # run() not called yet: it waits for that first
    run = asyncio.ensure_future(child.run())
    await asyncio.sleep(0.05)
    assert not waiting.done()  # running, event not set
    event.set()
    assert await asyncio.wait_for(waiting, 2) is run and not run.done()
    await child.stop()
    assert await run == "shutdown"


async def test_until_wakes_when_run_ends_first_and_hands_back_its_failure() -> None:
    child = ChildBase(path="t")
    run = asyncio.ensure_future(child.run())
    event = asyncio.Event()
    waiting = asyncio.ensure_future(child._until(event))
    await asyncio.sleep(0.05)
    child._crash.set()
    task = await asyncio.wait_for(waiting, 2)
    assert task is run and not event.is_set()
    with pytest.raises(CrashRequested):
        task.result()
