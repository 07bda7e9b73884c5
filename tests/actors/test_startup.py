"""Heavy imports of a starting actor run on their own low-priority thread (actors/startup.py)."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from actors.startup import preload

PROBE = "tests.actors.fixtures.import_probe"


async def test_heavy_imports_run_on_a_low_priority_thread_not_the_loops() -> None:
    sys.modules.pop(PROBE, None)
    me = threading.get_native_id()
    before = os.getpriority(os.PRIO_PROCESS, me)
    await preload([PROBE, "json"], nice=5)
    probe = sys.modules[PROBE]
    assert probe.TID != me  # another thread did the import
    assert probe.NICE == min(19, before + 5)  # at a lower priority
    assert os.getpriority(os.PRIO_PROCESS, me) == before  # the loop's thread kept its own
    await preload([PROBE])  # already imported: nothing to do


async def test_an_import_error_reaches_the_caller() -> None:
    with pytest.raises(ImportError, match="on purpose"):
        await preload(["tests.actors.fixtures.broken_import"])
