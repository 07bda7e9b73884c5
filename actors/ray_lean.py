"""``ray start`` flags that leave out Ray's optional processes the tree never uses (issue 21:
idle memory). The idle workers Ray would start ahead of need are turned off in ``actors``'s
``__init__`` (they are read from the environment, before Ray is imported).

Left out: the log monitor (it copies every worker's log to the drivers; ours connect with
``log_to_driver`` off, and the dashboard reads log files through its agent; 43 MB per node)
and, on the head, the autoscaler monitor (there is no autoscaler: nodes join with ``moltbot
node join``; 46 MB). The dashboard, its agent and the runtime-env agent stay.
"""

from __future__ import annotations

import os
from pathlib import Path

NODE_FLAGS = ("--disable-usage-stats", "--include-log-monitor=false")
HEAD_FLAGS = (*NODE_FLAGS, "--no-monitor")


def head_flags() -> list[str]:
    """For ``ray start --head``."""
    return list(HEAD_FLAGS)


def node_flags() -> list[str]:
    """For ``ray start --address`` (a node joining the head)."""
    return list(NODE_FLAGS)


BOOT_DIR = Path(__file__).resolve().parent / "boot"


def boot_env() -> dict[str, str]:
    """For the environment of ``ray start`` (``control.worker_env``), which every worker
    inherits: ``actors/boot`` first on ``PYTHONPATH``, so every actor process runs its
    ``sitecustomize`` at start and defers the libraries ``ray`` imports but the tree never
    uses (``moltbot.deferred_imports``: about 10 MB and 0.1 s per process)."""
    given = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    rest = [p for p in given if p and p != str(BOOT_DIR)]  # once, however often handed on
    return {"PYTHONPATH": os.pathsep.join([str(BOOT_DIR), *rest])}
