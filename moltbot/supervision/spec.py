"""Child specifications and supervisor flags, in Erlang/OTP's own words.

- ``Restart.PERMANENT``: always restarted.
- ``Restart.TRANSIENT``: restarted only when it exits abnormally (not ``normal``/``shutdown``).
- ``Restart.TEMPORARY``: never restarted; removed from the supervisor when it exits.
- ``Strategy.ONE_FOR_ONE``: only the child that exited is restarted.
- ``Strategy.ONE_FOR_ALL``: all children are stopped (reverse order) and started again (in order).
- ``Strategy.REST_FOR_ONE``: the child and the children started after it are restarted.
- ``intensity`` restarts within ``period`` seconds are allowed; one more and the supervisor stops
  its children and itself, and its parent decides (escalation).
- ``on_demand`` (moltbot's own): a child started on first use rather than at boot, as OTP's
  ``supervisor:restart_child`` starts a terminated child again; a transient one that ended
  normally (idle) is started again the same way.
- ``shutdown``: seconds a child gets to stop after being asked; then it is killed. ``0`` is
  OTP's ``brutal_kill``.

Each default is the config's (``moltbot.config.schema``): a supervisor's flags are its config
section plus the tree-wide liveness ping, and a child's timeouts default to ``supervision.*``.
"""

from __future__ import annotations

import enum
from typing import Any

import msgspec

from moltbot.config.schema import BackoffConfig, SupervisionConfig, SupervisorConfig
from moltbot.config.schema import Strategy as Strategy  # the config's: one_for_one ...

_CONFIG = SupervisionConfig()  # the defaults, stated once in the schema


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


Backoff = BackoffConfig  # between restarts: base_s doubling to max_s, +/- jitter (a fraction)


class SupervisorFlags(SupervisorConfig, frozen=True, kw_only=True):
    """How one supervisor runs: its config section (strategy, intensity, period, backoff,
    standby: a warm spare per unplaced worker child, see actors.standby), the tree's liveness
    ping, and how it starts its children."""

    ping_interval_s: float = _CONFIG.ping_interval_s
    ping_timeout_s: float = _CONFIG.ping_timeout_s
    # Start the children together rather than one after another (each still answers its ready
    # handshake; the supervisor is started when all are). Only for pools of independent
    # workers (channels, agents, sandboxes, plugins): siblings that use each other start in order.
    concurrent_start: bool = False
    # With concurrent_start: the first ``ordered_first`` children start one after another
    # before the others start together, and stop after them (the root's store: every other
    # child writes to it, none needs another at start)
    ordered_first: int = 0

    def start_groups(self, ids: list[str]) -> tuple[list[str], list[str]]:
        """(started in order first, then together) of children ``ids`` in start order."""
        if not self.concurrent_start:
            return ids, []
        return ids[: self.ordered_first], ids[self.ordered_first :]


class ChildSpec(msgspec.Struct, frozen=True, kw_only=True):
    """How to start one child. ``kind`` names the actor class; ``args`` are its keyword args."""

    id: str
    kind: str
    args: dict[str, Any] = {}
    restart: Restart = Restart.PERMANENT
    shutdown: float = _CONFIG.shutdown_s
    child_type: ChildType = ChildType.WORKER
    ready_timeout: float = _CONFIG.ready_timeout_s
    resources: dict[str, float] = {}  # Ray custom resources (placement)
    num_cpus: float = 0.0
    max_memory_mb: int = 0  # restarted above this many MB (its process tree); 0: no ceiling
    # Not started with its siblings but on first use (its supervisor's ``wake``); with
    # ``Restart.TRANSIENT`` it may then end normally when idle and sleeps until needed again
    on_demand: bool = False
