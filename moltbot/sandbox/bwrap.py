"""Run a command inside bubblewrap: no network, read-only system, rlimits, timeout, output cap.

Fail closed: when bubblewrap is missing or cannot build the sandbox, :func:`run_sandboxed` raises
:class:`~moltbot.errors.SandboxUnavailable`; it never falls back to running the command directly.

The process chain is ``gateway -> python limits.py (root: private mount ns, rlimits, setuid) ->
bwrap (unprivileged user namespace) -> command``. The trampoline is started in a new session, so a
timeout or a cancellation kills the whole process group with SIGKILL; bwrap's pid namespace and
``--die-with-parent`` take everything inside down with it.

Workspace ownership: when the gateway runs as root, the workspace *root folder* is chowned to the
sandbox uid (``nobody`` by default) so commands can create files in it. Files that the gateway's
own file tools create get the same owner (see ``moltbot.tools.files``). Older root-owned files stay
read-only to the sandbox. ``RLIMIT_NPROC`` counts every process of the sandbox uid, so concurrent
sandboxes share ``max_processes``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import sys
import time
from pathlib import Path

import msgspec

from moltbot.errors import SandboxUnavailable
from moltbot.sandbox import egress, forwarder
from moltbot.sandbox import limits as _limits

INSTALL_HINT = "install bubblewrap >= 0.8 (Debian/Ubuntu: `apt-get install bubblewrap`)"
SANDBOX_WORKSPACE = "/workspace"
SANDBOX_TMP = "/tmp"  # noqa: S108 - a private tmpfs inside the sandbox, not the host's /tmp
_MIB = 1024 * 1024
_READ_CHUNK = 64 * 1024
_REAP_GRACE_S = 3.0
_TRAMPOLINE = str(Path(_limits.__file__).resolve())

# /etc pieces the sandbox may see (read-only, when present). Never /etc/shadow or /etc/gshadow.
_ETC_BASE = (
    "passwd group nsswitch.conf ld.so.cache ld.so.conf ld.so.conf.d localtime alternatives "
    "bash.bashrc profile inputrc mime.types"
).split()
_ETC_NET = "resolv.conf hosts host.conf gai.conf services protocols ssl ca-certificates".split()
_ENV = {
    "PATH": "/usr/local/bin:/usr/bin:/bin",
    "HOME": SANDBOX_TMP,
    "TMPDIR": SANDBOX_TMP,
    "LANG": "C.UTF-8",
    "USER": "sandbox",
}
_ROOT_LINKS = ("bin", "sbin", "lib", "lib32", "lib64", "libx32")
SANDBOX_PYTHON = "/usr/bin/python3"  # runs the egress forwarder inside a network-granted sandbox


class SandboxPolicy(msgspec.Struct, frozen=True, kw_only=True):
    """What one sandboxed run may do. Sizes in MiB, times in seconds."""

    workspace: Path
    network: bool = False
    timeout_s: float = 30.0
    memory_mb: int = 512  # RLIMIT_AS and RLIMIT_DATA
    max_processes: int = 64  # RLIMIT_NPROC of the sandbox uid
    file_size_mb: int = 64  # RLIMIT_FSIZE
    cpu_s: int = 30  # RLIMIT_CPU (SIGXCPU, then SIGKILL one second later)
    output_limit_bytes: int = 64 * 1024  # stdout + stderr kept; the rest is drained and dropped
    max_open_files: int = 256
    tmp_mb: int = 64  # size of the private /tmp tmpfs
    uid: int = 65534  # used when the gateway runs as root; never 0
    gid: int = 65534
    bwrap_path: str = "bwrap"  # a name looked up on PATH, or an absolute path
    # CPU priority: the command runs at least this nice (a build in the sandbox takes idle CPU
    # but yields it to the tree's channels and agent, which run at nice 0)
    nice: int = 10

    def __post_init__(self) -> None:
        if self.uid == 0 or self.gid == 0:
            raise ValueError("the sandbox never runs as root: choose another uid/gid")
        if self.timeout_s <= 0 or self.memory_mb <= 0 or self.max_processes <= 0:
            raise ValueError("timeout_s, memory_mb and max_processes must be positive")
        if self.output_limit_bytes < 0 or self.file_size_mb <= 0 or self.cpu_s <= 0:
            raise ValueError("output_limit_bytes, file_size_mb and cpu_s must be positive")
        if not 0 <= self.nice <= 19:
            raise ValueError("nice must be between 0 and 19")


class SandboxResult(msgspec.Struct, frozen=True, kw_only=True):
    exit_code: int  # the command's status; 128+N when killed by signal N; -9 when we killed it
    stdout: bytes
    stderr: bytes
    timed_out: bool
    truncated: bool
    duration_s: float


def find_bwrap(name: str) -> str:
    """The absolute path of bubblewrap, or SandboxUnavailable with the install hint."""
    found = name if os.path.isabs(name) else shutil.which(name)
    if not found or not os.path.isfile(found) or not os.access(found, os.X_OK):
        raise SandboxUnavailable(
            f"commands cannot run: the bubblewrap sandbox was not found; {INSTALL_HINT}",
            hint=INSTALL_HINT,
        )
    return found


def rlimits(policy: SandboxPolicy) -> dict[str, list[int]]:
    mem = policy.memory_mb * _MIB
    return {
        "as": [mem, mem],
        "data": [mem, mem],
        "nproc": [policy.max_processes, policy.max_processes],
        "fsize": [policy.file_size_mb * _MIB, policy.file_size_mb * _MIB],
        "cpu": [policy.cpu_s, policy.cpu_s + 1],
        "nofile": [policy.max_open_files, policy.max_open_files],
        "core": [0, 0],
    }


def _system_binds() -> list[str]:
    args = ["--ro-bind", "/usr", "/usr"]
    for name in _ROOT_LINKS:
        path = "/" + name
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    return args


def _etc_binds(network: bool) -> list[str]:
    args: list[str] = []
    for name in _ETC_BASE + (_ETC_NET if network else []):
        args += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    return args


def bwrap_args(
    policy: SandboxPolicy, workspace_source: str, status_fd: int, egress_source: str | None = None
) -> list[str]:
    """The bubblewrap options (without the binary and the command). The network namespace is
    always the sandbox's own; with ``egress_source`` (the egress proxy's folder) the command
    reaches the web through the proxy only (``moltbot.sandbox.egress``)."""
    args = ["--unshare-all", "--unshare-user", "--disable-userns"]
    args += ["--die-with-parent", "--new-session", "--hostname", "sandbox"]
    args += _system_binds() + _etc_binds(policy.network)
    tmp_size = str(policy.tmp_mb * _MIB)
    shm = "/dev/shm"  # noqa: S108 - the sandbox's own size-capped tmpfs
    args += ["--proc", "/proc", "--dev", "/dev", "--size", tmp_size, "--tmpfs", shm]
    args += ["--size", tmp_size, "--tmpfs", SANDBOX_TMP]
    args += ["--bind", workspace_source, SANDBOX_WORKSPACE, "--chdir", SANDBOX_WORKSPACE]
    if egress_source is not None:
        args += ["--bind", egress_source, egress.SANDBOX_DIR]
    # The synthetic root (with /etc) and /dev become read-only: only /workspace, /tmp and
    # /dev/shm (both size-capped tmpfs) are writable.
    args += ["--remount-ro", "/dev", "--remount-ro", "/"]
    args.append("--clearenv")
    env = {**_ENV, **(_proxy_env() if egress_source is not None else {})}
    for name, value in env.items():
        args += ["--setenv", name, value]
    args += ["--json-status-fd", str(status_fd)]
    return args


def _has_sandbox_python() -> bool:
    return os.path.exists(SANDBOX_PYTHON)


def _proxy_env() -> dict[str, str]:
    url = f"http://127.0.0.1:{egress.PROXY_PORT}"
    return {name: url for name in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")}


def _through_forwarder(argv: list[str]) -> list[str]:
    script = f"{egress.SANDBOX_DIR}/{forwarder.FILE_NAME}"
    sock = f"{egress.SANDBOX_DIR}/{egress.SOCKET_NAME}"
    return [SANDBOX_PYTHON, "-I", "-S", script, sock, str(egress.PROXY_PORT), "--", *argv]


def prepare_workspace(policy: SandboxPolicy) -> Path:
    """Resolve the workspace and make its root folder writable by the sandbox uid."""
    try:
        ws = policy.workspace.resolve(strict=True)
    except OSError as exc:
        raise SandboxUnavailable(
            "the sandbox workspace folder does not exist", hint=f"create {policy.workspace}"
        ) from exc
    if not ws.is_dir():
        raise SandboxUnavailable("the sandbox workspace is not a folder")
    if os.geteuid() == 0:
        st = ws.stat()
        if (st.st_uid, st.st_gid) != (policy.uid, policy.gid):
            os.chown(ws, policy.uid, policy.gid)
        if st.st_mode & 0o700 != 0o700:
            ws.chmod(st.st_mode | 0o700)
    return ws


class _Capture:
    """stdout and stderr kept up to one shared byte budget; the rest is read and dropped."""

    def __init__(self, limit: int) -> None:
        self.remaining = limit
        self.truncated = False
        self.out = bytearray()
        self.err = bytearray()

    async def pump(self, stream: asyncio.StreamReader | None, sink: bytearray) -> None:
        if stream is None:
            return
        while chunk := await stream.read(_READ_CHUNK):
            if self.remaining <= 0:
                self.truncated = True
                continue
            keep = chunk[: self.remaining]
            sink += keep
            self.remaining -= len(keep)
            if len(keep) < len(chunk):
                self.truncated = True


async def _feed(proc: asyncio.subprocess.Process, data: bytes | None) -> None:
    if proc.stdin is None:
        return
    with contextlib.suppress(BrokenPipeError, ConnectionResetError):
        if data:
            proc.stdin.write(data)
            await proc.stdin.drain()
        proc.stdin.close()


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


def _read_status(fd: int) -> list[dict[str, object]]:
    os.set_blocking(fd, False)
    data = b""
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(fd, 65536):
            data += chunk
    records: list[dict[str, object]] = []
    for line in data.decode("utf-8", "replace").splitlines():
        with contextlib.suppress(ValueError):
            record = json.loads(line)
            if isinstance(record, dict):
                records.append(record)
    return records


async def _spawn(cmd: list[str], status_w: int, stdin: bytes | None) -> asyncio.subprocess.Process:
    try:
        return await asyncio.create_subprocess_exec(
            *cmd,
            stdin=asyncio.subprocess.PIPE if stdin is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            pass_fds=(status_w,),
            start_new_session=True,
            close_fds=True,
            cwd="/",
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
        )
    except OSError as exc:
        raise SandboxUnavailable(
            f"commands cannot run: the sandbox could not be started; {INSTALL_HINT}",
            hint=INSTALL_HINT,
        ) from exc


def _setup_failure(stderr: bytes) -> SandboxUnavailable:
    lines = [
        ln
        for ln in stderr.decode("utf-8", "replace").splitlines()
        if ln.startswith((_limits.MARKER, "bwrap:"))
    ]
    detail = lines[-1][:300] if lines else "bubblewrap exited before starting the command"
    return SandboxUnavailable(
        f"commands cannot run: the sandbox could not be created ({detail}); {INSTALL_HINT} "
        "and make sure unprivileged user namespaces are enabled",
        hint=INSTALL_HINT,
    )


async def run_sandboxed(
    argv: list[str],
    policy: SandboxPolicy,
    *,
    stdin: bytes | None = None,
    proxy: egress.EgressProxy | None = None,
) -> SandboxResult:
    """Run ``argv`` in a fresh bubblewrap sandbox with the workspace at ``/workspace``. With
    ``policy.network`` its web traffic goes through ``proxy`` (a default one when None), which
    lives as long as this run."""
    if not argv:
        raise ValueError("argv must not be empty")
    if not policy.network:
        return await _run(argv, policy, stdin, None)
    if not _has_sandbox_python():
        raise SandboxUnavailable(
            f"network for commands needs {SANDBOX_PYTHON} (the proxy's forwarder runs on it)",
            hint="apt-get install python3",
        )
    proxy = proxy or egress.EgressProxy(timeout_s=policy.timeout_s)
    root = os.geteuid() == 0
    async with proxy.serve(uid=policy.uid if root else None) as folder:
        return await _run(_through_forwarder(argv), policy, stdin, str(folder))


async def _run(
    argv: list[str], policy: SandboxPolicy, stdin: bytes | None, egress_folder: str | None
) -> SandboxResult:
    bwrap = find_bwrap(policy.bwrap_path)
    ws = prepare_workspace(policy)
    root = os.geteuid() == 0
    source = _limits.STAGED_WORKSPACE if root else str(ws)
    egress_source = egress_folder and (_limits.STAGED_EGRESS if root else egress_folder)
    params = json.dumps(
        {
            "workspace": str(ws),
            "uid": policy.uid,
            "gid": policy.gid,
            "limits": rlimits(policy),
            "egress": egress_folder,
            "nice": policy.nice,
        }
    )
    status_r, status_w = os.pipe()
    try:
        cmd = [
            sys.executable,
            "-I",
            "-S",
            _TRAMPOLINE,
            params,
            bwrap,
            *bwrap_args(policy, source, status_w, egress_source),
            "--",
            *argv,
        ]
        started = time.monotonic()
        try:
            proc = await _spawn(cmd, status_w, stdin)
        finally:
            os.close(status_w)
        capture = _Capture(policy.output_limit_bytes)
        timed_out = await _supervise(proc, capture, stdin, policy.timeout_s)
        duration = time.monotonic() - started
        status = _read_status(status_r)
    finally:
        os.close(status_r)
    exits = [v for r in status if isinstance(v := r.get("exit-code"), int)]
    if not timed_out and not exits:
        raise _setup_failure(bytes(capture.err))
    code = exits[-1] if exits and not timed_out else -signal.SIGKILL
    return SandboxResult(
        exit_code=code,
        stdout=bytes(capture.out),
        stderr=bytes(capture.err),
        timed_out=timed_out,
        truncated=capture.truncated,
        duration_s=duration,
    )


async def _supervise(
    proc: asyncio.subprocess.Process, capture: _Capture, stdin: bytes | None, timeout_s: float
) -> bool:
    """Wait for the command and its output; kill the process group on timeout or cancel."""
    tasks = {
        asyncio.create_task(capture.pump(proc.stdout, capture.out)),
        asyncio.create_task(capture.pump(proc.stderr, capture.err)),
        asyncio.create_task(_feed(proc, stdin)),
        asyncio.create_task(proc.wait()),
    }
    timed_out = False
    try:
        _, pending = await asyncio.wait(tasks, timeout=timeout_s)
        if pending:
            timed_out = True
            _kill_group(proc.pid)
            await asyncio.wait(tasks, timeout=_REAP_GRACE_S)
    finally:
        try:
            if proc.returncode is None:  # cancelled: kill, then let the pipes and exit settle
                _kill_group(proc.pid)
                await asyncio.wait(tasks, timeout=_REAP_GRACE_S)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
    return timed_out
