"""Freed heap memory handed back to the OS, once a minute, in every process of the tree.

glibc's malloc keeps what a process frees in its arenas for reuse and returns to the kernel only
what lies at the top of a heap. A long-lived actor that allocates and frees a little with every
message (the models, the SDK's buffers, gRPC's) ends up with free pages scattered through its
arenas that still count in its USS: the slow creep the soak benchmark measures. ``malloc_trim(0)``
releases those pages (``madvise``) without moving anything. It runs on a daemon thread of its own,
one per process however many children the process hosts, and costs a millisecond or two a minute.
Elsewhere than glibc (musl, macOS) there is nothing to call and nothing runs.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import logging
from collections.abc import Callable

from actors import periodic

log = logging.getLogger("moltbot.memtrim")

TRIM_EVERY_S = 60.0


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def trim_now() -> bool:
    """Release this process's free heap pages now; False where there is no ``malloc_trim``."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True


def start(every_s: float = TRIM_EVERY_S) -> bool:
    """Start this process's trimmer (once; later calls do nothing). False where there is no
    ``malloc_trim``."""
    if _malloc_trim() is None:
        return False
    periodic.start_once("moltbot-memtrim", every_s, trim_now)
    return True
