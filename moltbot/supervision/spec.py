"""Child specifications and supervisor flags, in Erlang/OTP's own words.

- ``Restart.PERMANENT``: always restarted.
- ``Restart.TRANSIENT``: restarted only when it exits abnormally (not ``normal``/``shutdown``).
- ``Restart.TEMPORARY``: never restarted; removed from the supervisor when it exits.
- ``Strategy.ONE_FOR_ONE``: only the child that exited is restarted.
- ``Strategy.ONE_FOR_ALL``: all children are stopped (reverse order) and started again (in order).
- ``Strategy.REST_FOR_ONE``: the child and the children started after it are restarted.
- ``intensity`` restarts within ``period`` seconds are allowed; one more and the supervisor stops
  its children and itself, and its parent decides (escalation).
- ``shutdown``: seconds a child gets to stop after being asked; then it is killed. ``0`` is
  OTP's ``brutal_kill``.
"""

from __future__ import annotations

import enum
from typing import Any

import msgspec


class Strategy(enum.StrEnum):
    ONE_FOR_ONE = "one_for_one"
    ONE_FOR_ALL = "one_for_all"
    REST_FOR_ONE = "rest_for_one"


class Restart(enum.StrEnum):
    PERMANENT = "permanent"
    TRANSIENT = "transient"
    TEMPORARY = "temporary"


class ChildType(enum.StrEnum):
    WORKER = "worker"
    SUPERVISOR = "supervisor"


class ExitKind(enum.StrEnum):
    NORMAL = "normal"  # run() returned
    SHUTDOWN = "shutdown"  # stopped on the supervisor's request
    ABNORMAL = "abnormal"  # run() raised, the process died, it was killed, or it hung


class Exit(msgspec.Struct, frozen=True, kw_only=True):
    kind: ExitKind
    reason: str = ""  # short, safe description (exception type, "process died", "ping timeout")

    @property
    def abnormal(self) -> bool:
        return self.kind == ExitKind.ABNORMAL


class Backoff(msgspec.Struct, frozen=True, kw_only=True):
    base_s: float = 0.2
    max_s: float = 10.0
    jitter: float = 0.2  # +/- fraction of the delay


class SupervisorFlags(msgspec.Struct, frozen=True, kw_only=True):
    strategy: Strategy = Strategy.ONE_FOR_ONE
    intensity: int = 3
    period: float = 5.0
    backoff: Backoff = Backoff()
    ping_interval_s: float = 2.0
    ping_timeout_s: float = 5.0
    # Start the children together rather than one after another (each still answers its ready
    # handshake; the supervisor is started when all are). Only for pools of independent
    # workers (channels, agents, sandboxes, plugins): siblings that use each other start in order.
    concurrent_start: bool = False
    # Keep a warm standby incarnation of each (unplaced) worker child: a process that has
    # done its imports but not started; a restart promotes it (see actors.standby).
    standby: bool = False


class ChildSpec(msgspec.Struct, frozen=True, kw_only=True):
    """How to start one child. ``kind`` names the actor class; ``args`` are its keyword args."""

    id: str
    kind: str
    args: dict[str, Any] = {}
    restart: Restart = Restart.PERMANENT
    shutdown: float = 5.0
    child_type: ChildType = ChildType.WORKER
    ready_timeout: float = 30.0
    resources: dict[str, float] = {}  # Ray custom resources (placement)
    num_cpus: float = 0.0
