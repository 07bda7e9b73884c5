"""Heavy imports of a starting actor, on a low-priority thread of their own.

A restarted child pays for its imports again (a model SDK, aiogram's models: seconds of
CPU). On a small machine that CPU is taken from the siblings that are answering messages, which
is exactly what isolation must not allow. Like systemd's ``StartupCPUWeight``, a restarting
child does its heavy imports at a lower priority: on a short-lived thread at nice 19 under
Linux's idle policy (``moltbot.quiet_imports``; both are per thread on Linux, and going down
needs no privilege), as its process's boot already did with ``ray`` (``actors/boot``). The
event loop thread keeps its priority, and on an idle machine nothing is slower. The crash
benchmark chose 19 over the +5 this used to be: the siblings' p99 during a crash storm was
within 1.2x of calm in 4 of 5 runs, against 1 of 11 before (README, Performance). When other
programs keep every core busy, the thread takes +5 instead (``quiet_nice``): at 19 a restart
there took over two minutes.
"""

from __future__ import annotations

import asyncio

from moltbot.quiet_imports import BOOT_NICE, Modules, not_imported, on_quiet_thread

STANDBY_NICE = BOOT_NICE  # a standby's imports: nobody waits for them


async def preload(modules: Modules, nice: int | None = None) -> None:
    """Import ``modules`` (those not imported yet) on a fresh low-priority thread (by ``nice``,
    or ``quiet_nice``'s choice: 19 when a core is free); an import error is raised here, as the
    import itself would have raised it. ``modules`` may be a function naming them, called on
    that thread (``quiet_imports.on_quiet_thread``)."""
    missing = modules if callable(modules) else not_imported(modules)
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

    def finished(error: BaseException | None) -> None:
        loop.call_soon_threadsafe(settle, error)

    on_quiet_thread(missing, nice, finished)
    await done
