"""Run at the start of every Python process of the tree's Ray nodes: its folder is on their
``PYTHONPATH`` (``actors.ray_lean.boot_env``, in the environment of ``ray start``). In a Ray
worker process (an actor of the tree) it defers the libraries ``ray`` imports but the tree never
uses (``moltbot.deferred_imports``), then imports what every actor's process imports first
(``ray``, the actor base) on a thread at the lowest priority while this one waits
(``moltbot.quiet_imports``): a restart's boot must not take the CPU from the siblings at work.
Ray's own processes are left alone, and ``MOLTBOT_DEFER_IMPORTS=0`` turns both off. Kept tiny
and failure-proof: a process must start even if this cannot do its work."""

import os
import sys

BOOT_MODULES = (  # what default_worker.py imports, then the base of every actor of the tree
    "actors",  # first: Ray's settings in the environment before ray reads them
    "ray",
    "ray._private.node",
    "ray.actor",
    "ray._private.parameter",
    "ray._private.ray_logging",
    "ray._private.runtime_env.setup_hook",
    "ray._private.async_compat",
    "actors.base",
    # what Ray's serialization context imports the first time the actor (de)serializes a
    # value, on its event loop thread: every actor gets there (0.1 s of CPU here)
    "ray._common.pydantic_compat",
    "ray._private.arrow_serialization",
    "pydantic.v1.fields",  # last: it may be missing (Ray then skips it, and so does this)
)

try:
    from moltbot.deferred_imports import install, wanted

    if wanted(os.environ, sys.argv):
        install()
        from moltbot.quiet_imports import import_quietly

        import_quietly(BOOT_MODULES)
except Exception:  # noqa: S110 - a missed saving, never a failed start
    pass
