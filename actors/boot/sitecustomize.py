"""Run at the start of every actor process of the tree: its folder is on their ``PYTHONPATH``
(``actors.boot_env``). It defers the libraries ``ray`` imports but the tree never uses
(``moltbot.deferred_imports``); ``MOLTBOT_DEFER_IMPORTS=0`` leaves them alone. Kept tiny and
failure-proof: a process must start even if this cannot do its work."""

import os

if os.environ.get("MOLTBOT_DEFER_IMPORTS", "1") != "0":
    try:
        from moltbot.deferred_imports import install

        install()
    except Exception:  # noqa: S110 - a missed saving, never a failed start
        pass
