"""``actors.reaper.reap``: a supervisor restarts a child only once its old process exited.

Real processes (``python -c``), no Ray: the node id is given, as a supervisor's own would be.
"""

from __future__ import annotations

import subprocess
import sys
import time

import psutil

from actors.reaper import reap

NODE = "node-a"


def spawn(code: str) -> tuple[subprocess.Popen[bytes], dict[str, object]]:
    proc = subprocess.Popen([sys.executable, "-c", code])
    info = {"pid": proc.pid, "node": NODE, "created": time.time()}
    return proc, info


async def test_a_process_that_exits_by_itself_is_waited_for_not_killed() -> None:
    proc, info = spawn("import time; time.sleep(0.3)")
    waited = await reap(info, grace_s=5.0, here=NODE)
    assert proc.wait(5) == 0  # it ended on its own: not SIGKILLed
    assert 0.1 < waited < 5.0


async def test_one_that_lingers_is_sent_sigkill_after_the_grace() -> None:
    code = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(60)"
    proc, info = spawn(code)
    waited = await reap(info, grace_s=0.3, here=NODE)
    assert proc.wait(5) == -9  # SIGKILL
    assert 0.3 <= waited < 3.0


async def test_nothing_to_wait_for_elsewhere_gone_or_a_reused_pid() -> None:
    proc, info = spawn("import time; time.sleep(60)")
    try:
        # on another node: Ray's to end
        assert await reap(info, grace_s=0.1, here="node-b") == 0.0
        # a pid now used by a process younger than the child was: not the child's
        reused = {**info, "created": time.time() - 3600}
        assert await reap(reused, grace_s=0.1, here=NODE) < 0.05
        assert psutil.pid_exists(proc.pid) and proc.poll() is None  # left alone
    finally:
        proc.kill()
        proc.wait(5)
    assert await reap(info, grace_s=0.1, here=NODE) < 0.05  # exited: returns at once
    assert await reap({"pid": 0}, here=NODE) == 0.0
