"""Heavy imports of a starting actor, on a low-priority thread of their own.

A restarted child pays for its imports again (a model SDK, aiogram's models: seconds of
CPU). On a small machine that CPU is taken from the siblings that are answering messages, which
is exactly what isolation must not allow. Like systemd's ``StartupCPUWeight``, a restarting
child does its heavy imports at a lower priority: in a short-lived thread whose Linux nice value
is raised by ``STARTUP_NICE`` (niceness is per thread there, and raising it needs no privilege).
The event loop thread keeps its priority, and on an idle machine nothing is slower. The step is
moderate (+5: a quarter of a busy core rather than a tenth), so a restart on a machine loaded by
other programs still finishes well within its ready timeout.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import sys
import threading
from collections.abc import Sequence

log = logging.getLogger("moltbot.startup")

STARTUP_NICE = 5  # CPU weight 335 vs 1024: slower only when the CPU is contended
STANDBY_NICE = 19  # a standby's imports: nobody waits for them (weight 15)


def _lower_own_priority(by: int) -> None:
    try:
        tid = threading.get_native_id()
        os.setpriority(os.PRIO_PROCESS, tid, min(19, os.getpriority(os.PRIO_PROCESS, tid) + by))
    except (OSError, AttributeError):  # not Linux, or not allowed: import at normal priority
        log.debug("could not lower the import thread's priority")


async def preload(modules: Sequence[str], nice: int = STARTUP_NICE) -> None:
    """Import ``modules`` (those not imported yet) on a fresh low-priority thread; an import
    error is raised here, as the import itself would have raised it."""
    missing = [m for m in modules if m not in sys.modules]
    if not missing:
        return
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()

    def settle(error: BaseException | None) -> None:
        if done.done():
            return
        if error is None:
            done.set_result(None)
        else:
            done.set_exception(error)

    def work() -> None:
        _lower_own_priority(nice)
        error: BaseException | None = None
        try:
            for name in missing:
                importlib.import_module(name)
        except BaseException as exc:  # handed to the awaiting task
            error = exc
        loop.call_soon_threadsafe(settle, error)

    threading.Thread(target=work, name="moltbot-preload", daemon=True).start()
    await done
