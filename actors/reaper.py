"""Waiting until a killed child's process has exited, as an OTP supervisor waits for the
``'DOWN'`` of a child it killed before it starts the next one.

Ray calls an actor dead (its calls fail with ``RayActorError``) as soon as it is told to kill
it, and the process can run on for a moment: its event loop still sends what it had in hand
(a reply; the restarted child replays the same journaled message, and the user gets it
twice). So a supervisor restarts a child only once the old process on this node is gone:
waited for briefly, then sent SIGKILL. A process on another node is Ray's to end.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import time
from typing import Any

import psutil
import ray

POLL_S = 0.01
GRACE_S = 1.0  # then SIGKILL; Ray's own kill is already on its way


def lingering(pid: int, created: float) -> psutil.Process | None:
    """The process ``pid`` if it is still the child's (not exited, not a reused pid);
    ``created``: when the child was made (its ``ready`` answer's)."""
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE or proc.create_time() > created + 1.0:
            return None
    except psutil.Error:
        return None
    return proc


async def reap(info: dict[str, Any], grace_s: float = GRACE_S, here: str | None = None) -> float:
    """Wait until the process ``info`` describes (a child's ``ready`` answer: pid, node,
    created) has exited, if it ran on this node (``here``: its Ray node id, by default this
    process's); SIGKILL it after ``grace_s``. Returns the seconds waited (0.0: none)."""
    pid, created = int(info.get("pid") or 0), float(info.get("created") or 0.0)
    if pid <= 0 or pid == os.getpid() or not created:
        return 0.0
    if info.get("node") != (here or ray.get_runtime_context().get_node_id()):
        return 0.0
    t0 = time.monotonic()
    killed = False
    while (proc := lingering(pid, created)) is not None:
        if not killed and time.monotonic() - t0 > grace_s:
            with contextlib.suppress(OSError):
                os.kill(proc.pid, signal.SIGKILL)
            killed = True
        if time.monotonic() - t0 > grace_s * 5:
            break  # not ours to end after all (another user's?): never hang a supervisor
        await asyncio.sleep(POLL_S)
    return time.monotonic() - t0
