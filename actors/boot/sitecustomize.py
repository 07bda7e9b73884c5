"""Run at the start of every Python process of the tree's Ray nodes: its folder is on their
``PYTHONPATH`` (``actors.ray_lean.boot_env``, in the environment of ``ray start``). In a Ray
worker process (an actor of the tree) it defers the libraries ``ray`` imports but the tree never
uses (``moltbot.deferred_imports``); Ray's own processes are left alone, and
``MOLTBOT_DEFER_IMPORTS=0`` turns it off. Kept tiny and failure-proof: a process must start
even if this cannot do its work."""

import os
import sys

try:
    from moltbot.deferred_imports import install, wanted

    if wanted(os.environ, sys.argv):
        install()
except Exception:  # noqa: S110 - a missed saving, never a failed start
    pass
