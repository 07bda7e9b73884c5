"""``moltbot doctor [--json]``: check everything moltbot needs and say how to fix what is wrong.

Each check is a small function returning a :class:`Check` (tests call them directly); the command
runs them in order and prints one line each: ``ok`` / ``WARN`` / ``FAIL``, what was checked and,
for a problem, ``fix: ...``. It exits 1 when any check FAILs. No secret value is ever printed:
the vault is only asked which names it holds. Ray is only imported to look for a running tree.
"""

from __future__ import annotations

import argparse
import errno
import importlib.util
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Collection, Mapping, Sequence
from pathlib import Path
from typing import Any, Literal

import msgspec

from moltbot import paths
from moltbot.cluster.control import tree_control
from moltbot.cluster.head import read_head
from moltbot.config.loader import load_config
from moltbot.config.refs import iter_secret_refs, parse_ref
from moltbot.config.schema import Config
from moltbot.errors import ConfigError, MoltbotError
from moltbot.sandbox import INSTALL_HINT, find_bwrap
from moltbot.security.fsmodes import check_private
from moltbot.security.vault import Vault, lazy_get

Status = Literal["ok", "WARN", "FAIL"]

MIN_PYTHON = (3, 11)
MIN_FREE_BYTES = 200 * 1024 * 1024
BWRAP_TIMEOUT_S = 10.0
# import name -> the name to give pip
REQUIRED_PACKAGES: Mapping[str, str] = {
    "ray": "ray",
    "anthropic": "anthropic",
    "websockets": "websockets",
    "aiogram": "aiogram",
    "slack_sdk": "slack-sdk",
    "httpx": "httpx",
    "msgspec": "msgspec",
    "cryptography": "cryptography",
    "opentelemetry": "opentelemetry-api",
    "PIL": "Pillow",  # pictures: checked and fitted before the model sees them
}


class Check(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of one check. ``fix`` is empty when there is nothing to do."""

    name: str
    status: Status
    detail: str
    fix: str = ""


def _ok(name: str, detail: str) -> Check:
    return Check(name=name, status="ok", detail=detail)


# --- the environment -----------------------------------------------------------------------
def check_python(version: Sequence[int] = tuple(sys.version_info[:3])) -> Check:
    shown = ".".join(str(v) for v in version)
    if tuple(version[:2]) >= MIN_PYTHON:
        return _ok("python", f"Python {shown}")
    wanted = ".".join(str(v) for v in MIN_PYTHON)
    return Check(
        name="python",
        status="FAIL",
        detail=f"Python {shown} is too old (moltbot needs {wanted} or newer)",
        fix=f"install Python {wanted}+ and reinstall moltbot with it",
    )


def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def check_packages(packages: Mapping[str, str] = REQUIRED_PACKAGES) -> Check:
    """Every package is importable (found, not imported: Ray stays out of this process)."""
    missing = [name for name in packages if not _importable(name)]
    if not missing:
        return _ok("packages", f"all {len(packages)} required packages are importable")
    return Check(
        name="packages",
        status="FAIL",
        detail=f"not importable: {', '.join(missing)}",
        fix=f"pip install {' '.join(packages[name] for name in missing)}",
    )


def check_bwrap(
    bwrap: str = "bwrap", *, timeout_s: float = BWRAP_TIMEOUT_S, required: bool = True
) -> Check:
    """bubblewrap is present and can create a trivial sandbox (user namespaces work)."""
    status: Status = "FAIL" if required else "WARN"
    try:
        found = find_bwrap(bwrap)
    except MoltbotError:
        return Check(
            name="sandbox",
            status=status,
            detail=f"bubblewrap ({bwrap}) not found: the bash tool cannot run",
            fix=INSTALL_HINT,
        )
    argv = [found, "--ro-bind", "/", "/", "--unshare-all", "--die-with-parent", "true"]
    try:
        done = subprocess.run(argv, capture_output=True, timeout=timeout_s, check=False)
    except subprocess.TimeoutExpired:
        why = f"did not finish within {timeout_s:g}s"
    except OSError as exc:
        why = f"could not be started ({exc.strerror})"
    else:
        if done.returncode == 0:
            return _ok("sandbox", f"bubblewrap works ({found})")
        lines = done.stderr.decode("utf-8", "replace").strip().splitlines()
        why = f"failed: {lines[-1][:200]}" if lines else f"exited with {done.returncode}"
    return Check(
        name="sandbox",
        status=status,
        detail=f"a trivial bubblewrap sandbox {why}",
        fix=f"{INSTALL_HINT}, and make sure unprivileged user namespaces are enabled",
    )


def check_disk(home: Path, min_free: int = MIN_FREE_BYTES) -> Check:
    where = home
    while not where.exists() and where != where.parent:
        where = where.parent
    free = shutil.disk_usage(where).free
    mib = free // (1024 * 1024)
    if free >= min_free:
        return _ok("disk", f"{mib} MB free at {where}")
    return Check(
        name="disk",
        status="WARN",
        detail=f"only {mib} MB free at {where} (less than {min_free // (1024 * 1024)} MB)",
        fix=f"free some space on the disk holding {where}",
    )


# --- the home folder -----------------------------------------------------------------------
def check_home(home: Path) -> Check:
    if home.is_dir():
        return _ok("home", str(home))
    what = "is not a folder" if home.exists() else "does not exist"
    return Check(name="home", status="FAIL", detail=f"{home} {what}", fix="moltbot init")


def check_modes(home: Path) -> list[Check]:
    """Home and credentials 0700, their files 0600 (the key, ``*.enc``): one Check per problem."""
    problems = check_private(home) + check_private(paths.credentials_dir(home))
    checks = []
    for problem in dict.fromkeys(problems):  # keep order, drop repeats
        detail, _, fix = problem.partition("; fix: ")
        checks.append(Check(name="modes", status="FAIL", detail=detail, fix=fix))
    return checks or [_ok("modes", f"{home} and its credentials are private (0700/0600)")]


def check_config(path: Path) -> tuple[Check, Config | None]:
    try:
        cfg = load_config(path)
    except ConfigError as exc:
        return Check(
            name="config", status="FAIL", detail=f"{exc.path}: {exc.problem}", fix=exc.fix
        ), None
    return _ok("config", f"{path} is valid"), cfg


def check_vault(home: Path) -> tuple[Check, list[str] | None]:
    """The vault opens; returns the names it holds (never a value)."""
    if not Vault.exists(home):
        where = paths.credentials_dir(home)
        return Check(
            name="vault",
            status="FAIL",
            detail=f"no credentials vault in {where}",
            fix="moltbot init",
        ), None
    try:
        names = Vault.open(home).names()
    except MoltbotError as exc:
        return Check(name="vault", status="FAIL", detail=exc.user_message, fix=exc.hint), None
    return _ok("vault", f"opens; secrets stored: {len(names)}"), names


def _problem(status: Status, detail: str, fix: str) -> Check:
    return Check(name="secrets", status=status, detail=detail, fix=fix)


def check_secret_refs(
    cfg: Config, vault_names: Collection[str] | None, environ: Mapping[str, str] | None = None
) -> list[Check]:
    """Every secret reference in use resolves: ``secret:`` names in the vault, ``env:`` set."""
    env = os.environ if environ is None else environ
    refs = list(iter_secret_refs(cfg, in_use_only=True))
    checks: list[Check] = []
    for at, ref in refs:
        kind, name = parse_ref(ref, at=at)
        if kind == "env":
            if not env.get(name):
                detail = f"{at}: environment variable {name!r} is not set"
                checks.append(_problem("FAIL", detail, f"export {name}=... before moltbot up"))
        elif vault_names is None:
            detail = f"{at}: secret {name!r} not checked (the vault did not open)"
            checks.append(_problem("WARN", detail, "fix the vault first (see above)"))
        elif name not in vault_names:
            detail = f"{at}: secret {name!r} is not in the vault"
            checks.append(_problem("FAIL", detail, f"moltbot secrets set {name}"))
    return checks or [_ok("secrets", f"every secret reference in use resolves ({len(refs)})")]


# --- the running tree ----------------------------------------------------------------------
def running_head(home: Path) -> tuple[str | None, bool]:
    """(recorded Ray address or None, whether its processes are alive). Imports Ray: lazily."""
    head = read_head(home)
    if head is None:
        return None, False
    try:
        control = tree_control()
    except MoltbotError:
        return head.address, False
    return head.address, control.head_alive(head)


def check_ray(address: str | None, alive: bool) -> Check:
    if address is None:
        return Check(
            name="ray",
            status="WARN",
            detail="no moltbot tree is running",
            fix="start it with `moltbot up`",
        )
    if alive:
        return _ok("ray", f"a moltbot tree is running (Ray at {address})")
    return Check(
        name="ray",
        status="WARN",
        detail=f"a tree is recorded (Ray at {address}) but none of its processes is alive",
        fix="`moltbot down` clears the record; then `moltbot up`",
    )


def check_port(bind: str, port: int, *, moltbot_running: bool = False) -> Check:
    """The gateway's address can be bound, or is held by the running moltbot."""
    where = f"{bind}:{port}"
    try:
        family, kind, proto, _, addr = socket.getaddrinfo(
            bind, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does
            sock.bind(addr)
    except socket.gaierror:
        return Check(
            name="port",
            status="FAIL",
            detail=f"{bind!r} is not a known address",
            fix="set gateway.bind to an address of this machine (default 127.0.0.1)",
        )
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE and moltbot_running:
            return _ok("port", f"{where} is in use by the running moltbot")
        if exc.errno == errno.EADDRINUSE:
            detail, fix = f"{where} is in use by another program", "stop that program or "
            fix += "set gateway.port to a free port (`ss -ltnp` shows who holds it)"
        elif exc.errno == errno.EACCES:
            detail, fix = f"{where} needs privileges", "set gateway.port above 1023"
        else:
            detail = f"cannot bind {where} ({exc.strerror})"
            fix = "set gateway.bind to an address of this machine (default 127.0.0.1)"
        return Check(name="port", status="FAIL", detail=detail, fix=fix)
    return _ok("port", f"{where} is free")


# --- the command ---------------------------------------------------------------------------
def check_accounts(cfg: Config) -> list[Check]:
    """Each channel account probed live (``moltbot.cli.doctor_channels``)."""
    from moltbot.cli.doctor_channels import probe_accounts
    from moltbot.cli.trail import reads_by

    found = probe_accounts(cfg, lazy_get(on_read=reads_by("cli:doctor")))
    return [
        Check(name=name, status=status, detail=detail, fix=fix)  # type: ignore[arg-type]
        for status, name, detail, fix in found
    ]


def run_checks(
    home: Path,
    config_file: Path,
    *,
    bwrap: str = "bwrap",
    min_free: int = MIN_FREE_BYTES,
    probe: bool = True,
) -> list[Check]:
    checks = [check_python(), check_packages()]
    home_check = check_home(home)
    checks.append(home_check)
    if home_check.status == "ok":
        checks.extend(check_modes(home))
    config_check, cfg = check_config(config_file)
    checks.append(config_check)
    vault_check, names = check_vault(home)
    checks.append(vault_check)
    if cfg is not None:
        checks.extend(check_secret_refs(cfg, names))
        if probe:
            checks.extend(check_accounts(cfg))
    checks.append(check_bwrap(bwrap, required=cfg is None or cfg.tools.bash.enabled))
    address, alive = running_head(home)
    if cfg is not None:
        checks.append(check_port(cfg.gateway.bind, cfg.gateway.port, moltbot_running=alive))
    checks.append(check_ray(address, alive))
    checks.append(check_disk(home, min_free))
    return checks


def format_check(check: Check) -> str:
    line = f"{check.status:<4}  {check.name}: {check.detail}"
    return f"{line}  fix: {check.fix}" if check.fix and check.status != "ok" else line


def cmd_doctor(args: argparse.Namespace) -> int:
    from moltbot.cli.config_cmd import config_path

    checks = run_checks(paths.home(), config_path(args), probe=not args.offline)
    failed = sum(c.status == "FAIL" for c in checks)
    if args.json:
        doc = {"ok": not failed, "checks": checks}
        sys.stdout.write(msgspec.json.encode(doc).decode() + "\n")
    else:
        for check in checks:
            print(format_check(check))
        warned = sum(c.status == "WARN" for c in checks)
        print(f"{failed} failed, {warned} warnings" if failed or warned else "all good")
    return 1 if failed else 0


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "doctor", help="check the install, home folder, config, secrets and sandbox; say the fix"
    )
    parser.add_argument("--json", action="store_true", help="print the checks as JSON")
    parser.add_argument(
        "--offline", action="store_true", help="do not probe the channel accounts' platforms"
    )
    parser.set_defaults(func=cmd_doctor)
