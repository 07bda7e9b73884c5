"""The pre-exec trampoline that starts bubblewrap: rlimits, workspace mount, unprivileged uid.

This file is run as a script (``python -I -S limits.py PARAMS BWRAP ARGS...``) between the
gateway and ``bwrap``; it never imports moltbot (``-S`` means no site-packages), only the stdlib.
Doing this in a fresh interpreter rather than in ``preexec_fn`` keeps process creation safe in a
multi-threaded gateway (Ray actors run threads).

Steps, in order, then ``execv(bwrap)``:

1. When started as root: enter a private mount namespace, open the workspace (``O_NOFOLLOW``),
   hide the host ``/tmp`` under a small tmpfs and bind the workspace at :data:`STAGED_WORKSPACE`.
   The sandbox uid can then reach the workspace even when a parent directory (``/root``) is closed
   to it, and nothing is mounted in the host's namespace.
2. Set the rlimits (address space, data, processes, file size, CPU, open files, no core dumps)
   and raise the nice value to the policy's (never lowered: that would need a privilege).
3. When started as root: drop supplementary groups, then gid, then uid (to ``nobody`` by default),
   so ``RLIMIT_NPROC`` is enforced by the kernel (it is not for root).

Any failure exits with :data:`SETUP_FAILED` and a line starting with :data:`MARKER` on stderr; the
runner turns that into ``SandboxUnavailable``. Nothing is ever run unsandboxed.
"""

from __future__ import annotations

import ctypes
import json
import os
import resource
import sys

MARKER = "moltbot-sandbox-setup:"
SETUP_FAILED = 125
# Only exists in the trampoline's private mount namespace, on a tmpfs mounted over /tmp there.
STAGED_WORKSPACE = "/tmp/.moltbot-workspace"  # noqa: S108
STAGED_EGRESS = "/tmp/.moltbot-egress"  # noqa: S108 - the egress proxy's socket folder

_CLONE_NEWNS = 0x00020000
_MS_BIND = 0x1000
_MS_REC = 0x4000
_MS_PRIVATE = 1 << 18
_MS_NOSUID = 0x2
_MS_NODEV = 0x4

_LIMITS = {
    "as": resource.RLIMIT_AS,
    "data": resource.RLIMIT_DATA,
    "nproc": resource.RLIMIT_NPROC,
    "fsize": resource.RLIMIT_FSIZE,
    "cpu": resource.RLIMIT_CPU,
    "nofile": resource.RLIMIT_NOFILE,
    "core": resource.RLIMIT_CORE,
}


def _fail(step: str, errno: int = 0) -> None:
    reason = f": {os.strerror(errno)}" if errno else ""
    sys.stderr.write(f"{MARKER} {step} failed{reason}\n")
    sys.stderr.flush()
    os._exit(SETUP_FAILED)


def _check(rc: int, step: str) -> None:
    if rc != 0:
        _fail(step, ctypes.get_errno())


def stage_workspace(workspace: str, egress: str | None = None) -> None:
    """Bind ``workspace`` at STAGED_WORKSPACE (and the egress folder, if any, at STAGED_EGRESS)
    inside a private mount namespace (root only)."""
    libc = ctypes.CDLL(None, use_errno=True)
    _check(libc.unshare(_CLONE_NEWNS), "unshare(mount namespace)")
    _check(libc.mount(b"none", b"/", None, _MS_REC | _MS_PRIVATE, None), "make mounts private")
    try:
        fd = os.open(workspace, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as exc:
        _fail("open workspace", exc.errno or 0)
        return
    egress_fd = -1
    if egress:
        try:
            egress_fd = os.open(egress, os.O_PATH | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        except OSError as exc:
            _fail("open egress folder", exc.errno or 0)
    flags = _MS_NOSUID | _MS_NODEV
    _check(libc.mount(b"tmpfs", b"/tmp", b"tmpfs", flags, b"mode=1777,size=1m"), "mount /tmp")
    os.mkdir(STAGED_WORKSPACE, 0o755)
    source = f"/proc/self/fd/{fd}".encode()
    _check(libc.mount(source, STAGED_WORKSPACE.encode(), None, _MS_BIND, None), "bind workspace")
    os.close(fd)
    if egress_fd >= 0:
        os.mkdir(STAGED_EGRESS, 0o755)
        source = f"/proc/self/fd/{egress_fd}".encode()
        _check(libc.mount(source, STAGED_EGRESS.encode(), None, _MS_BIND, None), "bind egress")
        os.close(egress_fd)


def apply_limits(limits: dict[str, list[int]]) -> None:
    for name, (soft, hard) in limits.items():
        try:
            resource.setrlimit(_LIMITS[name], (soft, hard))
        except (OSError, ValueError, KeyError):
            _fail(f"setrlimit {name}")


def lower_priority(nice: int) -> None:
    """At least ``nice`` for this process and so for everything the command starts."""
    try:
        if os.getpriority(os.PRIO_PROCESS, 0) < nice:
            os.setpriority(os.PRIO_PROCESS, 0, nice)
    except OSError as exc:
        _fail("set priority", exc.errno or 0)


def own_process_count() -> int:
    """How many processes our real uid has (for a non-root gateway's RLIMIT_NPROC)."""
    uid = os.getuid()
    count = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                count += os.stat(f"/proc/{entry}").st_uid == uid
            except OSError:
                continue
    return count


def drop_privileges(uid: int, gid: int) -> None:
    try:
        os.setgroups([])
        os.setresgid(gid, gid, gid)
        os.setresuid(uid, uid, uid)
    except OSError as exc:
        _fail("drop privileges", exc.errno or 0)
    if os.getuid() == 0 or os.geteuid() == 0:
        _fail("drop privileges")


def main(argv: list[str]) -> None:
    if len(argv) < 3:
        _fail("arguments")
    params = json.loads(argv[1])
    # keep_uid (the plugin host): no staging, no uid change; bwrap's user namespace isolates it
    privileged = os.geteuid() == 0 and not params.get("keep_uid", False)
    limits = params["limits"]
    if privileged:
        stage_workspace(params["workspace"], params.get("egress"))
    elif "nproc" in limits:
        # Not root: the sandbox keeps our uid, whose other processes count too.
        extra = own_process_count()
        limits["nproc"] = [n + extra for n in limits["nproc"]]
    apply_limits(limits)
    lower_priority(int(params.get("nice", 0)))
    if privileged:
        drop_privileges(int(params["uid"]), int(params["gid"]))
    try:
        os.execv(argv[2], argv[2:])  # noqa: S606 - bwrap itself, never a shell
    except OSError as exc:
        _fail("exec bubblewrap", exc.errno or 0)


if __name__ == "__main__":
    try:
        main(sys.argv)
    except Exception:  # any surprise: fail closed, never run without the sandbox
        _fail("setup")
