"""Work that, once begun, may finish after its caller is cancelled (a stop or a crash).

``within_grace(coro, grace_s)`` awaits ``coro`` in a task of its own. Cancelled meanwhile, the
caller waits up to ``grace_s`` more for it (then cancels it) and is cancelled as asked: a reply
just sent is still marked done, a turn just answered still written to its transcript.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


async def within_grace(coro: Coroutine[Any, Any, T], grace_s: float) -> T:
    task = asyncio.ensure_future(coro)
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        if not task.done():
            await asyncio.wait({task}, timeout=grace_s)
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        raise
