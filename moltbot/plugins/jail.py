"""The bubblewrap jail of a plugin's host process.

``python -I -B -m moltbot.plugins.host`` runs with: every namespace unshared (no network at all,
its own pids, no user namespaces inside), a read-only root built from the system folders, the
Python installation, the site-packages folders and moltbot's own package, the plugin's folder
read-only at ``/plugin``, a private size-capped ``/tmp`` (also ``HOME``), a cleared environment,
``--die-with-parent`` and rlimits (set by the sandbox trampoline, ``moltbot.sandbox.limits``).

Not in it: ``MOLTBOT_HOME`` (config, vault, audit log, journal), the user's home (``~/.ray``:
Ray's token), the host's ``/tmp`` (Ray's sockets and session folder), moltbot's repository
beside the package, and the ``ray`` package itself (an empty read-only folder in its place).
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

import moltbot
from moltbot.errors import PluginError, SandboxUnavailable
from moltbot.sandbox import bwrap
from moltbot.sandbox import limits as _limits

PLUGIN_ROOT = "/plugin"
HIDDEN_PACKAGES = ("ray",)  # present in site-packages, never visible to a plugin
_MIB = 1024 * 1024
TMP = bwrap.SANDBOX_TMP  # a private size-capped tmpfs inside, not the host's /tmp
ENV = {
    "PATH": "/usr/bin:/bin",
    "HOME": TMP,
    "TMPDIR": TMP,
    "LANG": "C.UTF-8",
    "PYTHONDONTWRITEBYTECODE": "1",
    "USER": "plugin",
}


def python_paths() -> list[str]:
    """Read-only folders the host's Python needs: the installation, site-packages, moltbot."""
    wanted = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    wanted.update(_site_packages())
    wanted.add(str(Path(moltbot.__file__).resolve().parent))
    real = sorted({os.path.realpath(p) for p in wanted if p and os.path.isdir(p)})
    # drop what a bound parent covers, and /usr (bound with the system)
    kept: list[str] = []
    for path in real:
        if path == "/usr" or path.startswith("/usr/"):
            continue
        if not any(path.startswith(k + "/") for k in kept):
            kept.append(path)
    return kept


def _site_packages() -> list[str]:
    found = {
        os.path.realpath(entry)
        for entry in sys.path
        if entry.endswith(("site-packages", "dist-packages")) and os.path.isdir(entry)
    }
    return sorted(found)


def _hidden(paths: list[str]) -> list[str]:
    """Empty read-only folders over ``HIDDEN_PACKAGES`` in every site-packages folder (also
    those inside a bound parent, e.g. a venv bound whole)."""
    args: list[str] = []
    for root in sorted({*paths, *_site_packages()}):
        for name in HIDDEN_PACKAGES:
            target = os.path.join(root, name)
            if os.path.isdir(target):
                args += ["--tmpfs", target, "--remount-ro", target]
    return args


def bwrap_args(source: Path, *, tmp_mb: int = 64) -> list[str]:
    """The options for a plugin at ``source`` (its package folder, or its one-file module)."""
    args = [
        "--unshare-all",
        "--unshare-user",
        "--disable-userns",
        "--die-with-parent",
        "--new-session",
        "--hostname",
        "plugin",
    ]
    args += bwrap._system_binds() + bwrap._etc_binds(False)
    size = str(tmp_mb * _MIB)
    # the private /tmp first: a Python or moltbot that lives under /tmp is bound over it
    args += ["--size", size, "--tmpfs", TMP]
    paths = python_paths()
    for path in paths:
        args += ["--ro-bind", path, path]
    args += _hidden(paths)
    args += ["--ro-bind", str(source), f"{PLUGIN_ROOT}/{source.name}"]
    args += ["--proc", "/proc", "--dev", "/dev"]
    args += ["--remount-ro", "/dev", "--remount-ro", "/", "--chdir", TMP, "--clearenv"]
    for name, value in ENV.items():
        args += ["--setenv", name, value]
    return args


def command(source: Path, policy: bwrap.SandboxPolicy) -> list[str]:
    """trampoline (rlimits, same uid) -> bwrap -> python -m moltbot.plugins.host."""
    found = bwrap.find_bwrap(policy.bwrap_path)
    # a plugin lives as long as the tree: no CPU-time limit (a blocked loop fails the ping)
    limits = {k: v for k, v in bwrap.rlimits(policy).items() if k != "cpu"}
    params = json.dumps({"limits": limits, "keep_uid": True})
    trampoline = str(Path(_limits.__file__).resolve())
    python = [sys.executable, "-I", "-B", "-m", "moltbot.plugins.host"]
    return [
        sys.executable,
        "-I",
        "-S",
        trampoline,
        params,
        found,
        *bwrap_args(source, tmp_mb=policy.tmp_mb),
        "--",
        *python,
    ]


async def spawn(source: Path, policy: bwrap.SandboxPolicy) -> asyncio.subprocess.Process:
    """Start the host process: its stdin/stdout are the plugin pipe, stderr its log.

    No bubblewrap: ``PluginError`` (the plugin is refused, never run unsandboxed)."""
    try:
        return await asyncio.create_subprocess_exec(
            *command(source, policy),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
            close_fds=True,
            cwd="/",
            env={"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"},
        )
    except (SandboxUnavailable, OSError):
        raise PluginError(
            "plugins cannot run: their bubblewrap sandbox is not available",
            hint=bwrap.INSTALL_HINT,
        ) from None
