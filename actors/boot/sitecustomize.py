"""Run at the start of every actor process of the tree: its folder is on their ``PYTHONPATH``
(``actors.ray_lean.boot_env``). It defers the libraries ``ray`` imports but the tree never uses
(``moltbot.deferred_imports``); ``MOLTBOT_DEFER_IMPORTS=0`` leaves them alone. Kept tiny and
failure-proof: a process must start even if this cannot do its work."""

import os

try:
    from moltbot.deferred_imports import install, wanted

    if wanted(os.environ):
        install()
except Exception:  # noqa: S110 - a missed saving, never a failed start
    pass
