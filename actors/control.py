"""Start, join, inspect and stop a moltbot tree on Ray: the Ray side of the ``moltbot`` CLI.

A tree started by ``moltbot up`` owns a Ray head of its own (``ray start --head --block`` in a
new process group, its files under a temp dir unique to ``MOLTBOT_HOME``), recorded in
``$MOLTBOT_HOME/run/ray.json`` so ``status``, ``kill`` and ``down`` find it. ``down`` stops the
tree in reverse order, then ends every process of that head and nothing else.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import psutil
import ray

from actors import routing
from actors.pipes import passed_env
from actors.ray_lean import boot_env, head_flags
from actors.ray_temp import ray_temp_dir
from actors.ray_token import ensure_token
from actors.registry import Inside, actor_name, lookup
from moltbot import paths
from moltbot.cluster.head import Head, head_file, read_head
from moltbot.config.schema import Config
from moltbot.errors import NotRunning, SupervisionError, VaultError
from moltbot.netaddr import is_loopback
from moltbot.security import cluster_tls
from moltbot.security.vault import PASSPHRASE_ENV
from moltbot.supervision.tree import (
    ACCOUNT_PREFIX,
    HEAD,
    build_tree,
    root_flags,
    singleton_resources,
)

ROOT = "moltbot"
RAY_ENV = {
    "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"],
    "RAY_USAGE_STATS_ENABLED": "0",
    "RAY_AUTH_MODE": os.environ["RAY_AUTH_MODE"],
}
# for our `ray start` processes: on SIGTERM Ray 2.60 first drains the node for up to 30 s (for
# Ray Serve), and times out on a GCS that is already stopping; we stop the tree ourselves first
RAY_START_ENV = {"RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "0"}
HEAD_TERM_GRACE_S = 0.15  # after SIGTERM, before the head's processes left are killed: the
# dashboard's processes end within 0.05-0.09 s; the raylet, the GCS and the runtime-env agent
# take 1-2 s whatever the wait (measured), and hold nothing the stopped tree needs


_head_file = head_file


def _free_port(preferred: int, host: str = "127.0.0.1") -> int:
    """``preferred`` if it is free on ``host`` (the address Ray will listen on), else any."""
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return int(s.getsockname()[1])
    raise SupervisionError("no free port for the Ray head")


def _ray_bin() -> str:
    local = Path(sys.executable).with_name("ray")
    return str(local) if local.exists() else "ray"


def worker_env(**extra: str) -> dict[str, str]:
    """The environment of our ``ray start`` processes and so of every Ray worker: ours, without
    the vault passphrase (actors ask the vault agent), plus Ray's settings, ``actors/boot`` on
    ``PYTHONPATH`` (each worker defers what it never uses) and ``extra``. The tree's actors get
    what they need from here, not from a Ray ``runtime_env``: a worker with one is started
    through Ray's ``setup_worker.py``, a second Python process that imports ``ray`` before it
    execs the worker (0.3 s of CPU and of wall time at every start and restart)."""
    env = {k: v for k, v in os.environ.items() if k != PASSPHRASE_ENV}
    return {**env, **RAY_ENV, **RAY_START_ENV, **boot_env(), **extra}


def start_head(cfg: Config, home: Path, *, vault_passphrase: str | None = None) -> Head:
    """``ray start --head`` on ``cluster.head_ip`` (loopback by default) in its own process
    group; wait until it answers. ``vault_passphrase``: the checked passphrase of a passphrase
    vault, handed to a vault agent for the tree's actors (never to Ray's environment)."""
    run = paths.run_dir(home)
    run.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tag = hashlib.sha256(str(home.resolve()).encode()).hexdigest()[:10]
    temp_dir = ray_temp_dir(home, tag)
    ip = cfg.cluster.head_ip
    port = _free_port(cfg.cluster.head_port, ip)
    ensure_token()
    argv = [
        _ray_bin(),
        "start",
        "--head",
        "--block",
        f"--node-ip-address={ip}",
        f"--port={port}",
        f"--temp-dir={temp_dir}",
        *head_flags(),  # leaves out Ray's processes the tree does not use
        f"--object-store-memory={cfg.cluster.object_store_mb * 1024 * 1024}",
        f"--include-dashboard={'true' if cfg.cluster.dashboard else 'false'}",
    ]
    accounts = singleton_resources(cfg)  # one unit per channel account: one poller each
    if accounts:
        argv.append(f"--resources={json.dumps(accounts)}")
    dashboard = ""
    if cfg.cluster.dashboard:
        dport = _free_port(cfg.cluster.dashboard_port, cfg.cluster.dashboard_host)
        argv += [f"--dashboard-host={cfg.cluster.dashboard_host}", f"--dashboard-port={dport}"]
        dashboard = f"http://{cfg.cluster.dashboard_host}:{dport}"
    env = worker_env(MOLTBOT_HOME=str(home))
    tls = None
    if not is_loopback(ip):  # a home-lab head other machines can join: mutual TLS between nodes
        env["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "1"
        tls = cluster_tls.head_files(home, ip)
        env.update(cluster_tls.env(tls))
    log_path = run / "ray-head.log"
    with open(log_path, "ab") as logf:
        offset = logf.tell()
        proc = subprocess.Popen(
            argv, stdout=logf, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
    head = Head(
        address=f"{ip}:{port}",
        namespace=cfg.cluster.namespace,
        temp_dir=temp_dir,
        pgid=proc.pid,
        dashboard=dashboard,
        tls=tls,
    )
    _head_file(home).write_bytes(msgspec.json.encode(head))
    if vault_passphrase is not None:
        try:
            start_vault_agent(home, vault_passphrase, tag=temp_dir, watch=proc.pid)
        except BaseException:
            stop_head(head, home)
            raise
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SupervisionError(f"the Ray head exited at start; see {log_path}")
        with open(log_path, "rb") as logf:
            logf.seek(offset)
            if b"Ray runtime started" in logf.read():
                return head
        time.sleep(0.2)
    stop_head(head, home)
    raise SupervisionError(f"the Ray head did not come up in 90 s; see {log_path}")


def start_vault_agent(home: Path, passphrase: str, *, tag: str, watch: int) -> None:
    """Start the vault agent (``moltbot.security.vault_agent``) with the passphrase on its stdin
    and wait for its ``ready``. Its command line names ``tag`` (the head's temp dir), so the
    head's stop ends it too."""
    argv = [
        sys.executable,
        "-m",
        "moltbot.security.vault_agent",
        "--home",
        str(home),
        "--tag",
        tag,
        "--watch",
        str(watch),
    ]
    env = {k: v for k, v in os.environ.items() if k != PASSPHRASE_ENV}
    proc = subprocess.Popen(
        argv,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.write(passphrase + "\n")
    proc.stdin.close()
    line = proc.stdout.readline().strip()
    proc.stdout.close()
    if line != "ready":
        proc.kill()
        proc.wait(5)
        try:
            problem = json.loads(line)
        except ValueError:
            problem = {}
        raise VaultError(
            str(problem.get("message") or "the vault agent did not start"),
            hint=str(problem.get("fix") or "see `moltbot doctor`"),
        )


def connect(head: Head) -> None:
    os.environ.update(RAY_ENV)
    if head.tls is not None:
        os.environ.update(cluster_tls.env(head.tls))
    if not ray.is_initialized():
        ray.init(
            address=head.address,
            namespace=head.namespace,
            _node_ip_address=head.address.rsplit(":", 1)[0] if head.pgid else None,
            log_to_driver=False,
            configure_logging=False,
        )


def root_handle(namespace: str) -> Any | None:
    try:
        return ray.get_actor(ROOT, namespace=namespace)
    except ValueError:
        return None


def _offers_accounts(cfg: Config) -> bool:
    """Whether this cluster offers the account resources (a head ``moltbot up`` started does;
    one started otherwise may not, and then the accounts run without them)."""
    wanted = singleton_resources(cfg)
    offered = ray.cluster_resources()
    return bool(wanted) and all(offered.get(name, 0) >= units for name, units in wanted.items())


def tree_env(home: Path) -> dict[str, str]:
    """What every actor of the tree sets in its environment at its start (``ChildBase``):
    handed down the tree with each child's arguments, no secret among them."""
    return {**RAY_ENV, **passed_env(), "MOLTBOT_HOME": str(home)}


def _runtime_env(cfg: Config) -> dict[str, Any]:
    """Nothing on the head ``up`` starts: its ``ray start`` environment (``worker_env``) already
    gives every worker ``actors/boot``, and an empty runtime_env spares each actor start Ray's
    ``setup_worker.py`` step. A cluster started otherwise (``cluster.address``) lacks it: there
    the root's runtime_env carries it, and every child inherits it."""
    return {"runtime_env": {"env_vars": boot_env()}} if cfg.cluster.address else {}


def boot(
    cfg: Config,
    home: Path,
    *,
    ready_timeout: float = 180.0,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> Any:
    """Create the detached, named root and wait until the whole tree is ready; ``progress``
    hears the tree's status (as ``status`` shows it) about twice a second meanwhile."""
    from actors.supervisor import Supervisor  # here: `down` and `status` never need it (0.13 s)

    ns = cfg.cluster.namespace
    if root_handle(ns) is not None:
        raise SupervisionError("a moltbot tree is already running in this Ray cluster")
    root = Supervisor.options(  # type: ignore[attr-defined]
        name=ROOT,
        namespace=ns,
        lifetime="detached",
        num_cpus=0,
        resources=dict(HEAD),
        max_restarts=0,
        **_runtime_env(cfg),
    ).remote(
        path="",
        flags=root_flags(cfg),
        children=build_tree(cfg, singletons=_offers_accounts(cfg)),
        namespace=ns,
        env=tree_env(home),
    )
    ray.get(root.start_detached.remote())
    try:
        ready = root.ready.remote()
        deadline = time.monotonic() + ready_timeout
        while not ray.wait([ready], timeout=0.5)[0]:
            if time.monotonic() > deadline:
                raise SupervisionError(
                    f"the tree was not ready in {ready_timeout:.0f}s",
                    hint="see `moltbot status` and run/ray logs",
                )
            if progress is not None:
                with contextlib.suppress(Exception):  # a status that is slow: next time
                    progress(ray.get(root.status.remote(), timeout=2))
        ray.get(ready)
        if progress is not None:  # what came up since the last look
            with contextlib.suppress(Exception):
                progress(ray.get(root.status.remote(), timeout=5))
    except Exception:
        ray.kill(root)
        raise
    return root


def attach(home: Path) -> tuple[Head, Any]:
    head = read_head(home)
    if head is None:
        raise NotRunning("moltbot is not running", hint="start it with `moltbot up`")
    try:
        connect(head)
    except Exception as exc:
        raise NotRunning(
            f"the Ray cluster at {head.address} does not answer ({type(exc).__name__})",
            hint="start it with `moltbot up` (or `moltbot down` to clean up)",
        ) from None
    root = root_handle(head.namespace)
    if root is None:
        raise NotRunning("no moltbot tree in the Ray cluster", hint="start it with `moltbot up`")
    return head, root


def tree_status(root: Any) -> dict[str, Any]:
    status: dict[str, Any] = ray.get(root.status.remote(), timeout=30)
    return status


def kill(root_ns: str, name: str, how: str) -> str:
    """Crash one actor on purpose. ``name``: a path (``channels/telegram:main``) or actor name."""
    full = name if name.startswith(ROOT + ".") else actor_name(name.replace(".", "/"))
    if full == ROOT:
        raise SupervisionError("the root is not killed with `kill`", hint="use `moltbot down`")
    try:  # by its own name (``full``), else the promoted standby's that runs it now
        handle = lookup(full.removeprefix(ROOT + ".").replace(".", "/"), root_ns)
    except ValueError:
        raise NotRunning(f"no actor named {full}", hint="see `moltbot status`") from None
    if how == "kill" and not isinstance(handle, Inside):
        ray.kill(handle, no_restart=True)
    else:  # a child inside another actor's process ends alone (it has no process to end)
        with contextlib.suppress(Exception):  # `exit` ends the process mid-call
            ray.get(handle.crash.remote(how), timeout=10)
    return full


def wait_for_stop_request(root: Any, on_waiting: Callable[[], None] | None = None) -> str | None:
    """Block until Ctrl-C/SIGTERM (returns None) or until the tree ends (returns how).
    ``on_waiting`` runs once the signals are caught (say "Ctrl-C stops it" there: a Ctrl-C
    right after it is then a stop request, not an interrupted start)."""
    asked: list[int] = []

    def on_signal(signum: int, _frame: Any) -> None:
        asked.append(signum)

    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        if on_waiting is not None:
            on_waiting()
        done = root.wait.remote()
        while not asked:
            ready, _ = ray.wait([done], timeout=0.5)
            if ready:
                return str(ray.get(ready[0]))
        return None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def actor_call(namespace: str, path: str, method: str, *args: Any) -> Any:
    """Call ``method`` on the tree's actor at ``path`` (``channels/telegram:main``), once."""
    try:
        handle = lookup(path, namespace)
    except ValueError:
        raise NotRunning(f"{path} is not running", hint="see `moltbot status`") from None
    try:
        return ray.get(getattr(handle, method).remote(*args), timeout=30)
    except routing.RemoteFailed as exc:
        if isinstance(handle, Inside) and isinstance(exc, ValueError):  # between two runs
            raise NotRunning(f"{path} is not running", hint="see `moltbot status`") from None
        routing.raise_remote(exc)


def stop_tree(root: Any, timeout: float = 120.0) -> None:
    try:
        ray.get(root.stop.remote(), timeout=timeout)
    finally:
        ray.kill(root)


def head_processes(head: Head) -> list[psutil.Process]:
    """Every process of this head: its session (Ray's workers, ``ray::IDLE`` and the like, have
    process groups of their own and no temp dir in their retitled command line), and anything
    naming its temp dir."""
    found: list[psutil.Process] = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        try:
            cmd = " ".join(proc.info["cmdline"] or [])
            in_group = head.pgid and head.pgid in (os.getpgid(proc.pid), os.getsid(proc.pid))
        except (psutil.Error, ProcessLookupError, PermissionError):
            continue
        if proc.pid != os.getpid() and (in_group or (head.temp_dir and head.temp_dir in cmd)):
            found.append(proc)
    return found


def stop_head(head: Head, home: Path | None = None) -> int:
    """End the head (or node) we started (never a cluster we only joined). Returns processes
    left."""
    if ray.is_initialized() and home is not None:
        ray.shutdown()
    if head.pgid:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(head.pgid, signal.SIGTERM)
        procs = head_processes(head)
        ours = [p for p in procs if _is_vault_agent(p)]  # a session of its own: not in the group
        for proc in ours:
            with contextlib.suppress(psutil.Error):
                proc.terminate()  # it ends cleanly on SIGTERM (removes its socket)
        # the tree is stopped and its state on disk: Ray's own processes hold nothing to save
        # (the GCS is in memory), and some take seconds to end on SIGTERM (measured: 3.5 s)
        _gone, alive = psutil.wait_procs(procs, timeout=HEAD_TERM_GRACE_S)
        psutil.wait_procs(ours, timeout=5.0)  # the vault agent gets its time
        alive = [p for p in alive if p not in ours or _running(p)]
        for proc in alive:
            with contextlib.suppress(psutil.Error):
                proc.kill()
        _until_ended(alive, timeout=5.0)
    if home is not None:
        with contextlib.suppress(FileNotFoundError):
            _head_file(home).unlink()
    return len([p for p in head_processes(head) if _running(p)]) if head.pgid else 0


def _is_vault_agent(proc: psutil.Process) -> bool:
    try:
        return "moltbot.security.vault_agent" in " ".join(proc.cmdline())
    except psutil.Error:
        return False


def _running(proc: psutil.Process) -> bool:
    """Not ended: a zombie has ended (it holds no memory, only its exit status until its new
    parent reaps it, which here took up to 1.5 s after its own parent was killed)."""
    try:
        return proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def _until_ended(procs: list[psutil.Process], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while any(_running(p) for p in procs) and time.monotonic() < deadline:
        time.sleep(0.02)


def accounts_held() -> dict[str, dict[str, float]]:
    """The channel account resources: how many units the cluster offers and has free (an
    account whose actor runs: total 1, available 0)."""
    total, free = ray.cluster_resources(), ray.available_resources()
    return {
        name: {"total": amount, "available": free.get(name, 0.0)}
        for name, amount in total.items()
        if name.startswith(ACCOUNT_PREFIX)
    }


def nodes() -> list[dict[str, Any]]:
    """The cluster's nodes as ``moltbot status`` shows them (ids, address, custom resources,
    the labels given to ``node join``)."""
    out = []
    for n in ray.nodes():
        res = {k: v for k, v in n.get("Resources", {}).items() if not k.startswith("node:")}
        labels = {k: v for k, v in (n.get("Labels") or {}).items() if not k.startswith("ray.io/")}
        out.append(
            {
                "node": n["NodeID"],
                "alive": bool(n["Alive"]),
                "address": n.get("NodeManagerAddress", ""),
                "head": "node:__internal_head__" in n.get("Resources", {}),
                "resources": res,
                "labels": labels,
            }
        )
    return out


def head_json(head: Head) -> str:
    return json.dumps(msgspec.to_builtins(head))
