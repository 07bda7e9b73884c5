"""Where Ray keeps its sockets, logs and session files for a tree: private folders of ours.

``MOLTBOT_HOME/run/ray`` when that path is short enough for Ray's Unix sockets (a socket path
holds 107 bytes and Ray adds about 65 below its temp dir), else a short
``/tmp/moltbot-<uid>/<tag>`` linked from ``run/ray``. The parent (``run``, or
``/tmp/moltbot-<uid>``) must be ours and 0700 or the start is refused; the folder itself must be
ours and real, whatever its mode (Ray opens it to 0777; the private parent keeps others out).
"""

from __future__ import annotations

import os
from pathlib import Path

from moltbot import paths
from moltbot.security.fsmodes import owned_private_dir, short_private_base

RAY_TEMP_MAX = 40  # characters: Ray's socket paths below it must stay within 107 bytes


def ray_temp_dir(home: Path, tag: str) -> str:
    """Ray's temp dir: ``MOLTBOT_HOME/run/ray`` (0700, ours, else refused). When that path is
    too long for Ray's Unix sockets, a short ``/tmp/moltbot-<uid>/<tag>`` (0700, ours) with
    ``run/ray`` a symlink to it."""
    run = owned_private_dir(paths.run_dir(home))
    here = run / "ray"
    # the folder itself: ours and real; Ray opens its modes, the private parent keeps others out
    if len(str(here)) <= RAY_TEMP_MAX:
        return str(owned_private_dir(here, any_mode=True))
    short = owned_private_dir(short_private_base() / tag, any_mode=True)
    if here.is_symlink() and os.readlink(here) != str(short):
        here.unlink()
    if not here.exists() and not here.is_symlink():
        here.symlink_to(short)
    return str(short)


def node_temp_dir(tag: str) -> str:
    """The temp dir of a node this machine joins to a cluster (``moltbot node join``)."""
    return str(owned_private_dir(short_private_base() / f"node-{tag}", any_mode=True))
