"""A process-wide chore run every so often on a daemon thread of its own, started once per
process however often it is asked (``memtrim``, ``metrics_sweep``). The thread ends with the
process; a chore must not raise (each catches its own failures)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

_started: set[str] = set()
_lock = threading.Lock()


def start_once(name: str, every_s: float, chore: Callable[[], object]) -> None:
    """Run ``chore`` every ``every_s`` seconds on a daemon thread called ``name`` (once per
    process and name; later calls do nothing)."""
    with _lock:
        if name in _started:
            return
        _started.add(name)

    def loop() -> None:
        while True:
            time.sleep(every_s)
            chore()

    threading.Thread(target=loop, name=name, daemon=True).start()
