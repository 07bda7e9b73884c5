"""``actors.memtrim``: freed heap pages really go back to the OS (in a process of its own, so
its RSS says only what this test did)."""

from __future__ import annotations

import subprocess
import sys

SCRIPT = r"""
import psutil
from actors import memtrim

def rss_mb():
    return psutil.Process().memory_info().rss / 2**20

blocks = [bytes(4000) for _ in range(50_000)]  # ~200 MB from malloc's heap (not pymalloc's)
kept = blocks[::50]  # one block in 50 stays: nothing at the heap's top can be given back
del blocks
before = rss_mb()
assert memtrim.trim_now()
after = rss_mb()
assert memtrim.start(every_s=3600) and memtrim.start(every_s=3600)  # once per process
print(round(before), round(after), len(kept))
"""


def test_trim_gives_the_freed_pages_of_a_fragmented_heap_back() -> None:
    out = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        capture_output=True,
        text=True,
        timeout=60,
        env={"MALLOC_ARENA_MAX": "2", "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr
    before, after, kept = (int(x) for x in out.stdout.split())
    assert kept == 1000
    assert before - after > 120, (before, after)  # of ~196 MB freed, scattered in 1-in-50
