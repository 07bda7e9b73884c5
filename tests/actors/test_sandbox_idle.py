"""A sandbox's own idle end, without Ray: ``SandboxCore`` on this event loop.

It ends normally once ``idle_stop_s`` passed with no call (none while a call runs or an
approval waits) and refuses a call that comes as it ends with ``Dormant``, before the tool
runs. With ``idle_stop_s`` 0 (the tree's ``tools.idle_stop_s: 0``) it never ends by itself.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import msgspec
import pytest

from actors.tools import SandboxCore
from moltbot.config.schema import Config
from moltbot.errors import Dormant

IDLE_S = 0.3


def sandbox(workspace: Path, idle_stop_s: float = IDLE_S) -> SandboxCore:
    cfg = msgspec.convert(
        {"tools": {"workspace": str(workspace), "bash": {"policy": "ask"}}}, Config
    )
    return SandboxCore(path="tools/sandbox-0", config=cfg, idle_stop_s=idle_stop_s)


async def started(core: SandboxCore) -> asyncio.Task[None]:
    await core.setup()
    core._ready.set()
    return asyncio.create_task(core.main())


async def test_it_ends_after_idle_and_refuses_what_comes_then(tmp_path: Path) -> None:
    core = sandbox(tmp_path)
    main = await started(core)
    wrote = await core.call("write_file", {"path": "a.txt", "content": "x"}, "web:s1")
    assert not wrote.is_error
    listed = await core.call("list_dir", {}, "web:s1")
    assert "a.txt" in listed.text
    await asyncio.sleep(IDLE_S / 2)
    assert not main.done()  # the call reset the clock
    await asyncio.wait_for(main, IDLE_S * 4)  # ended by itself, normally
    with pytest.raises(Dormant):
        await core.call("write_file", {"path": "b.txt", "content": "y"}, "web:s1")
    assert list(tmp_path.rglob("a.txt")) and not list(tmp_path.rglob("b.txt"))  # nothing ran


async def test_a_running_call_and_a_pending_approval_keep_it(tmp_path: Path) -> None:
    core = sandbox(tmp_path)
    main = await started(core)
    asked = core.approvals.request("web:s1", "echo hi")
    await asyncio.sleep(IDLE_S * 3)
    assert not main.done()  # an approval waits here: it would be lost
    core.approvals.resolve(asked.id, False, "gateway:test")
    await asyncio.wait_for(main, IDLE_S * 4)

    busy = sandbox(tmp_path)
    main = await started(busy)
    release = asyncio.Event()
    real = busy.registry.call

    async def slow(*args: object, **kw: object) -> object:
        await release.wait()
        return await real(*args, **kw)  # type: ignore[arg-type]

    busy._registry.call = slow  # type: ignore[assignment, union-attr]
    call = asyncio.create_task(busy.call("list_dir", {}, "web:s1"))
    await asyncio.sleep(IDLE_S * 3)
    assert not main.done() and not call.done()  # the call runs longer than idle_stop_s
    release.set()
    assert not (await call).is_error
    await asyncio.wait_for(main, IDLE_S * 4)  # then idle from the call's end


async def test_without_idle_stop_it_runs_until_stopped(tmp_path: Path) -> None:
    core = sandbox(tmp_path, idle_stop_s=0)
    main = await started(core)
    await asyncio.sleep(IDLE_S * 3)
    assert not main.done()
    main.cancel()
    assert not (await core.call("list_dir", {}, "web:s1")).is_error
