"""The two systems measured: the tree on Ray, and the same pipeline without Ray (a
subprocess); their homes and the disk they journal to."""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import actors  # noqa: F401  - Ray's environment before any ray import
from benchmarks.common import OBJECT_STORE_BYTES, RAY_ENV, ROOT_DIR, SECRET_ENV, log
from benchmarks.platforms import to_config


# --- the tree on Ray -------------------------------------------------------------------------
def ray_init() -> None:
    import ray

    from actors.ray_lean import boot_env

    if not ray.is_initialized():
        # as ``moltbot up``'s ``ray start`` (``control.worker_env``): every worker inherits it
        os.environ.update(boot_env())
        ray.init(
            address="local",  # always a new local Ray: never join another one on this machine
            num_cpus=os.cpu_count() or 2,
            object_store_memory=OBJECT_STORE_BYTES,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
            _node_ip_address="127.0.0.1",
        )


def ray_shutdown() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()


class RayTree:
    """The supervision tree (everything ``build_tree`` makes) on the local Ray of this driver."""

    def __init__(
        self,
        cfg_data: dict[str, Any],
        home: Path,
        *,
        only: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.cfg = to_config(cfg_data)
        self.home = home
        self.only = set(only)
        self.env = dict(env or {})
        self.ns = f"bench-{uuid.uuid4().hex[:8]}"
        self.root: Any = None
        self.ready_s = math.nan

    def start(self, timeout: float = 180.0) -> RayTree:
        import ray

        from actors.supervisor import Supervisor
        from moltbot.supervision.tree import build_tree, root_flags

        ray_init()
        kids = build_tree(self.cfg)
        if self.only:
            kids = [k for k in kids if k.id in self.only]
        env = {**RAY_ENV, **SECRET_ENV, "MOLTBOT_HOME": str(self.home), **self.env}
        t0 = time.perf_counter()
        self.root = Supervisor.options(  # type: ignore[attr-defined]
            name="moltbot",
            namespace=self.ns,
            num_cpus=0,
            max_restarts=0,
        ).remote(  # the tree's environment as ``control.boot`` gives it: no runtime_env
            path="", flags=root_flags(self.cfg), children=kids, namespace=self.ns, env=env
        )
        ray.get(self.root.start_detached.remote(), timeout=timeout)
        ray.get(self.root.ready.remote(), timeout=timeout)
        self.ready_s = time.perf_counter() - t0
        return self

    def handle(self, path: str) -> Any:

        from actors.registry import lookup

        return lookup(path, self.ns)

    def pid(self, path: str) -> int:
        import ray

        return int(ray.get(self.handle(path).ready.remote(), timeout=30)["pid"])

    def kill(self, path: str, handle: Any = None) -> bool:
        """``ray.kill`` the actor at ``path`` (its process dies); False if it is not there.
        ``handle``: already looked up (so the kill is not delayed by the lookup)."""
        import ray

        try:
            h = handle if handle is not None else self.handle(path)
        except ValueError:
            return False
        ray.kill(h, no_restart=True)
        return True

    def status(self) -> dict[str, Any]:
        import ray

        return dict(ray.get(self.root.status.remote(), timeout=30))

    def stop(self) -> None:
        import ray

        if self.root is None:
            return
        try:
            ray.get(self.root.stop.remote(), timeout=60)
        except Exception as exc:  # report, still kill
            log(f"tree stop: {type(exc).__name__}")
        finally:
            with contextlib.suppress(Exception):
                ray.kill(self.root)
            self.root = None

    def __enter__(self) -> RayTree:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --- the same pipeline without Ray (a subprocess) ------------------------------------------------
class Pipeline:
    """``python -m benchmarks.pipeline``: adapters + ChannelService + agent in one asyncio
    process. Ready when it prints READY; stopped with SIGTERM."""

    def __init__(self, cfg_data: dict[str, Any], home: Path, *, gateway: bool = False) -> None:
        self.cfg_data = cfg_data
        self.home = home
        self.gateway = gateway
        self.proc: subprocess.Popen[str] | None = None
        self.ready_s = math.nan

    def start(self, timeout: float = 60.0) -> Pipeline:
        self.home.mkdir(parents=True, exist_ok=True)
        cfg_path = self.home / "bench-config.json"
        cfg_path.write_text(json.dumps(self.cfg_data))
        env = {
            **os.environ,
            **SECRET_ENV,
            "MOLTBOT_HOME": str(self.home),
            "PYTHONPATH": str(ROOT_DIR),
        }
        argv = [sys.executable, "-m", "benchmarks.pipeline", "--config", str(cfg_path)]
        if self.gateway:
            argv.append("--gateway")
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=None, text=True, env=env, cwd=ROOT_DIR
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            if line.strip() == "READY":
                self.ready_s = time.perf_counter() - t0
                return self
        self.stop()
        raise RuntimeError("the baseline pipeline did not become ready")

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def __enter__(self) -> Pipeline:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


# Where MOLTBOT_HOME (journal, transcripts) lives. tmpfs by default, so the figures measure the
# software rather than this machine's fsync latency (``fsync_ms`` in the machine info says
# what the disk would add: about six fsyncs per message). ``--disk`` uses the temp dir.
STATE_ROOT: Path | None = Path("/dev/shm") if Path("/dev/shm").is_dir() else None


def state_medium() -> str:
    return "tmpfs (/dev/shm)" if STATE_ROOT is not None else f"disk ({tempfile.gettempdir()})"


def fsync_ms(folder: Path | None = None, n: int = 20) -> float:
    """Mean time of a small append + fsync in ``folder`` (the temp dir: the disk)."""
    fd, name = tempfile.mkstemp(prefix="moltbot-bench-fsync-", dir=folder)
    try:
        t0 = time.perf_counter()
        for _ in range(n):
            os.write(fd, b"x" * 200 + b"\n")
            os.fsync(fd)
        return round((time.perf_counter() - t0) / n * 1000, 2)
    finally:
        os.close(fd)
        os.unlink(name)


@contextlib.contextmanager
def temp_home(tag: str, root: Path | str | None = "default") -> Iterator[Path]:
    base = STATE_ROOT if root == "default" else root
    path = Path(tempfile.mkdtemp(prefix=f"moltbot-bench-{tag}-", dir=base))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
