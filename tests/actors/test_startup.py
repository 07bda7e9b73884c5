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


async def test_the_modules_may_be_named_by_a_function_called_on_the_quiet_thread() -> None:
    """A host names its children's modules by importing their classes: that import runs at
    the low priority too, not on the caller's thread."""
    sys.modules.pop(PROBE, None)
    me = threading.get_native_id()
    before = os.getpriority(os.PRIO_PROCESS, me)
    asked: list[tuple[int, int]] = []

    def name_them() -> list[str]:
        tid = threading.get_native_id()
        asked.append((tid, os.getpriority(os.PRIO_PROCESS, tid)))
        return [PROBE]

    await preload(name_them, nice=5)
    (tid, nice), probe = asked[0], sys.modules[PROBE]
    assert tid != me and nice == min(19, before + 5)
    assert (probe.TID, probe.NICE) == (tid, nice)  # imported there, right after
    assert os.getpriority(os.PRIO_PROCESS, me) == before


async def test_a_function_that_cannot_name_the_modules_raises_in_the_caller() -> None:
    def unknown_kind() -> list[str]:
        raise ValueError("unknown actor kind 'nope'")

    with pytest.raises(ValueError, match="unknown actor kind"):
        await preload(unknown_kind, nice=5)
