"""Real bubblewrap runs: isolation, limits, timeouts, output cap, fail closed."""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from moltbot.errors import SandboxUnavailable
from moltbot.sandbox import SandboxPolicy, SandboxResult, run_sandboxed


def policy(ws: Path, **kw: object) -> SandboxPolicy:
    base: dict[str, object] = {"workspace": ws, "timeout_s": 10.0}
    base.update(kw)
    return SandboxPolicy(**base)  # type: ignore[arg-type]


async def sh(ws: Path, script: str, **kw: object) -> SandboxResult:
    return await run_sandboxed(["bash", "-c", script], policy(ws, **kw))


def live_uid_processes(uid: int) -> list[int]:
    """Processes of ``uid`` that are not zombies (a dead pid-namespace init lingers as one)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}").st_uid != uid:
                continue
            with open(f"/proc/{entry}/stat") as fh:
                state = fh.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state not in ("Z", "X"):
            found.append(int(entry))
    return found


async def eventually_empty(probe: Callable[[], list[int]], within: float = 5.0) -> list[int]:
    deadline = time.monotonic() + within
    while (left := probe()) and time.monotonic() < deadline:
        await asyncio.sleep(0.1)
    return left


def cmdline_processes(marker: str) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as fh:
                if marker.encode() in fh.read():
                    found.append(int(entry))
        except OSError:
            continue
    return found


async def test_echo_runs_as_non_root(tmp_path: Path) -> None:
    res = await sh(tmp_path, "echo hello; id -u; id -g; pwd")
    assert res.exit_code == 0, res.stderr
    lines = res.stdout.decode().split()
    assert lines[0] == "hello"
    assert lines[1] != "0" and lines[2] != "0"
    assert lines[3] == "/workspace"
    assert not res.timed_out and not res.truncated


async def test_exit_code_and_stdin_are_passed(tmp_path: Path) -> None:
    res = await run_sandboxed(["bash", "-c", "cat; exit 7"], policy(tmp_path), stdin=b"from-stdin")
    assert res.exit_code == 7
    assert res.stdout == b"from-stdin"


async def test_environment_is_cleared(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-very-secret")
    res = await sh(tmp_path, "env")
    assert res.exit_code == 0
    assert b"sk-very-secret" not in res.stdout
    assert b"ANTHROPIC_API_KEY" not in res.stdout


async def test_etc_shadow_is_unreadable(tmp_path: Path) -> None:
    assert Path("/etc/shadow").exists()
    res = await sh(tmp_path, "cat /etc/shadow")
    assert res.exit_code != 0
    assert b"root:" not in res.stdout


async def test_workspace_writes_reach_the_host(tmp_path: Path) -> None:
    res = await sh(tmp_path, "echo made-inside > /workspace/out.txt && mkdir sub && echo x > sub/y")
    assert res.exit_code == 0, res.stderr
    assert (tmp_path / "out.txt").read_text() == "made-inside\n"
    assert (tmp_path / "sub" / "y").read_text() == "x\n"


async def test_workspace_under_a_closed_parent_folder_works(tmp_path: Path) -> None:
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    ws = closed / "ws"
    ws.mkdir()
    res = await sh(ws, "echo ok > f && cat f")
    assert res.exit_code == 0, res.stderr
    assert (ws / "f").read_text() == "ok\n"


async def test_writes_outside_the_workspace_fail_or_stay_inside(tmp_path: Path) -> None:
    marker = f"moltbot-leak-{os.getpid()}-{time.monotonic_ns()}"
    script = (
        f"echo x > /usr/{marker}; echo rc_usr=$?;"
        f"echo x > /etc/{marker}; echo rc_etc=$?;"
        f"echo x > /{marker}; echo rc_root=$?;"
        f"echo x > /tmp/{marker}; echo rc_tmp=$?;"
        f"echo x > /dev/{marker}; echo rc_dev=$?"
    )
    res = await sh(tmp_path, script)
    out = res.stdout.decode()
    assert "rc_usr=1" in out and "rc_etc=1" in out and "rc_root=1" in out and "rc_dev=1" in out
    assert not Path(f"/usr/{marker}").exists()
    assert not Path(f"/etc/{marker}").exists()
    assert not Path(f"/{marker}").exists()
    assert not Path(f"/tmp/{marker}").exists()  # the sandbox /tmp is its own tmpfs


async def test_tmp_and_shm_are_size_capped(tmp_path: Path) -> None:
    script = (
        "head -c 1000 /dev/zero > /tmp/small; echo rc_small=$?;"
        "head -c 8000000 /dev/zero > /tmp/big; echo rc_tmp=$?;"
        "head -c 8000000 /dev/zero > /dev/shm/big; echo rc_shm=$?"
    )
    res = await sh(tmp_path, script, tmp_mb=4)
    out = res.stdout.decode()
    assert "rc_tmp=1" in out and "rc_shm=1" in out and "rc_small=0" in out
    assert b"No space left" in res.stderr


async def test_host_secrets_outside_the_workspace_are_invisible(tmp_path: Path) -> None:
    secret = tmp_path / "secret.txt"
    secret.write_text("top-secret")
    ws = tmp_path / "ws"
    ws.mkdir()
    res = await sh(ws, f"cat {secret}; ls /root; cat /workspace/../secret.txt")
    assert b"top-secret" not in res.stdout


class _Listener:
    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]

    def close(self) -> None:
        self.sock.close()


async def test_network_is_blocked_by_default(tmp_path: Path) -> None:
    server = _Listener()
    try:
        script = f"echo hi > /dev/tcp/127.0.0.1/{server.port} && echo CONNECTED"
        res = await sh(tmp_path, script)
        assert b"CONNECTED" not in res.stdout
        assert res.exit_code != 0
        res = await sh(tmp_path, "cat /proc/net/dev")
        interfaces = [ln.split(":")[0].strip() for ln in res.stdout.decode().splitlines()[2:]]
        assert interfaces == ["lo"]
    finally:
        server.close()


async def test_fork_bomb_is_contained(tmp_path: Path) -> None:
    started = time.monotonic()
    res = await sh(tmp_path, ":(){ :|:& };:; sleep 30", timeout_s=3.0, max_processes=32)
    assert res.timed_out
    assert time.monotonic() - started < 8
    assert await eventually_empty(lambda: live_uid_processes(65534)) == []
    after = await sh(tmp_path, "echo alive")  # the host (and the sandbox uid) still work
    assert after.stdout == b"alive\n"


async def test_process_count_is_limited(tmp_path: Path) -> None:
    script = (
        "import os, time\n"
        "n = 0\n"
        "while n < 100:\n"
        "    try:\n"
        "        pid = os.fork()\n"
        "    except OSError:\n"
        "        break\n"
        "    if pid == 0:\n"
        "        time.sleep(30)\n"
        "        os._exit(0)\n"
        "    n += 1\n"
        "print(n, len([p for p in os.listdir('/proc') if p.isdigit()]))\n"
    )
    res = await run_sandboxed(["python3", "-c", script], policy(tmp_path, max_processes=16))
    assert res.exit_code == 0, res.stderr
    forked, visible = map(int, res.stdout.split())
    assert forked < 16
    assert visible <= 16
    assert await eventually_empty(lambda: live_uid_processes(65534)) == []


async def test_memory_bomb_fails(tmp_path: Path) -> None:
    script = "python3 -c 'x = bytearray(1024 * 1024 * 1024); print(\"ALLOCATED\")'"
    res = await sh(tmp_path, script, memory_mb=256)
    assert res.exit_code != 0
    assert b"ALLOCATED" not in res.stdout
    assert b"MemoryError" in res.stderr


async def test_file_size_is_limited(tmp_path: Path) -> None:
    res = await sh(tmp_path, "head -c 3000000 /dev/zero > big; echo rc=$?", file_size_mb=1)
    assert b"rc=0" not in res.stdout
    assert (tmp_path / "big").stat().st_size <= 1024 * 1024


async def test_cpu_time_is_limited(tmp_path: Path) -> None:
    res = await sh(tmp_path, "while :; do :; done", cpu_s=1, timeout_s=10.0)
    assert not res.timed_out
    assert res.exit_code != 0
    assert res.duration_s < 6


async def test_commands_run_at_the_policy_nice_value(tmp_path: Path) -> None:
    ours = os.getpriority(os.PRIO_PROCESS, 0)
    default = await sh(tmp_path, "nice; sh -c nice")  # the command and what it starts
    assert default.stdout.decode().split() == [str(max(ours, 10))] * 2
    lowest = await sh(tmp_path, "nice", nice=19)
    assert lowest.stdout.decode().strip() == "19"
    with pytest.raises(ValueError, match="nice"):
        SandboxPolicy(workspace=tmp_path, nice=20)


async def test_timeout_kills_the_whole_group(tmp_path: Path) -> None:
    marker = "987654.25"
    started = time.monotonic()
    res = await sh(tmp_path, f"sleep {marker} & sleep {marker}", timeout_s=1.5)
    assert res.timed_out
    assert res.exit_code != 0
    assert 1.4 < time.monotonic() - started < 5
    assert await eventually_empty(lambda: cmdline_processes(f"sleep {marker}")) == []


async def test_cancellation_kills_the_sandbox(tmp_path: Path) -> None:
    marker = "876543.5"
    task = asyncio.create_task(sh(tmp_path, f"sleep {marker}", timeout_s=30.0))
    await asyncio.sleep(0.5)
    assert cmdline_processes(f"sleep {marker}") != []
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await eventually_empty(lambda: cmdline_processes(f"sleep {marker}")) == []


async def test_output_is_capped(tmp_path: Path) -> None:
    res = await sh(
        tmp_path,
        "head -c 10000000 /dev/zero | tr '\\0' a; echo finished > done.txt",
        output_limit_bytes=4096,
    )
    assert res.truncated
    assert len(res.stdout) + len(res.stderr) <= 4096
    assert res.stdout == b"a" * 4096
    assert (tmp_path / "done.txt").read_text() == "finished\n"  # the command still completed
    assert res.exit_code == 0


async def test_missing_bwrap_is_refused_with_install_hint(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    with pytest.raises(SandboxUnavailable) as err:
        await run_sandboxed(
            ["bash", "-c", f"touch {marker}"],
            policy(tmp_path, bwrap_path="/nonexistent/bwrap"),
        )
    assert "apt-get install bubblewrap" in str(err.value)
    assert not marker.exists()


async def test_bwrap_that_cannot_build_a_sandbox_fails_closed(tmp_path: Path) -> None:
    marker = tmp_path / "ran"
    with pytest.raises(SandboxUnavailable) as err:
        await run_sandboxed(
            ["bash", "-c", f"touch {marker}"], policy(tmp_path, bwrap_path="/bin/false")
        )
    assert "apt-get install bubblewrap" in str(err.value)
    assert not marker.exists()


async def test_missing_workspace_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SandboxUnavailable):
        await sh(tmp_path / "nope", "true")


def test_policy_refuses_root() -> None:
    with pytest.raises(ValueError):
        SandboxPolicy(workspace=Path("/tmp"), uid=0)
