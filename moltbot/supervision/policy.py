"""The supervisor's restart decision, as a pure function of what happened.

``decide`` is given the children (in start order), which one exited and how, the recent restart
times and the time now. It returns what to do; the Ray supervisor only carries it out.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence

import msgspec

from moltbot.supervision.intensity import exceeded, record_restart
from moltbot.supervision.spec import ChildSpec, Exit, ExitKind, Restart, Strategy, SupervisorFlags


class Action(enum.StrEnum):
    IGNORE = "ignore"  # nothing to do (transient exited normally, or an ordered shutdown)
    REMOVE = "remove"  # a temporary child exited: forget it
    RESTART = "restart"  # stop ``stop`` (in that order), then start ``start`` (in that order)
    ESCALATE = "escalate"  # intensity exceeded: stop every child, exit abnormally; parent decides


class Decision(msgspec.Struct, frozen=True, kw_only=True):
    action: Action
    stop: tuple[str, ...] = ()
    start: tuple[str, ...] = ()
    remove: tuple[str, ...] = ()
    history: tuple[float, ...] = ()
    reason: str = ""


def wants_restart(restart: Restart, exit: Exit) -> bool:
    """OTP: permanent always, transient only on an abnormal exit, temporary never."""
    if exit.kind == ExitKind.SHUTDOWN:
        return False
    if restart == Restart.PERMANENT:
        return True
    if restart == Restart.TRANSIENT:
        return exit.kind == ExitKind.ABNORMAL
    return False


def stop_order(children: Sequence[ChildSpec]) -> tuple[str, ...]:
    """Children stop in the reverse of their start order."""
    return tuple(c.id for c in reversed(children))


def decide(
    flags: SupervisorFlags,
    children: Sequence[ChildSpec],
    failed: str,
    exit: Exit,
    history: tuple[float, ...],
    now: float,
) -> Decision:
    ids = [c.id for c in children]
    if failed not in ids:
        return Decision(action=Action.IGNORE, history=history, reason=f"unknown child {failed}")
    index = ids.index(failed)
    spec = children[index]
    if not wants_restart(spec.restart, exit):
        if spec.restart == Restart.TEMPORARY:
            return Decision(
                action=Action.REMOVE, remove=(failed,), history=history, reason="temporary"
            )
        return Decision(action=Action.IGNORE, history=history, reason=f"{spec.restart} {exit.kind}")

    new_history = record_restart(history, now, flags.period)
    if exceeded(new_history, flags.intensity):
        others = [c for c in children if c.id != failed]
        return Decision(
            action=Action.ESCALATE,
            stop=stop_order(others),
            history=new_history,
            reason=(
                f"reached max restart intensity: more than {flags.intensity} restarts"
                f" in {flags.period:g}s ({failed}: {exit.reason or exit.kind})"
            ),
        )

    if flags.strategy == Strategy.ONE_FOR_ONE:
        affected = [spec]
    elif flags.strategy == Strategy.ONE_FOR_ALL:
        affected = list(children)
    else:  # REST_FOR_ONE
        affected = list(children[index:])
    siblings = [c for c in affected if c.id != failed]
    # OTP: temporary siblings stopped because of another child's restart are not restarted.
    removed = tuple(c.id for c in siblings if c.restart == Restart.TEMPORARY)
    return Decision(
        action=Action.RESTART,
        stop=stop_order(siblings),
        start=tuple(c.id for c in affected if c.id not in removed),
        remove=removed,
        history=new_history,
        reason=f"{failed}: {exit.reason or exit.kind}",
    )


def consecutive_restarts(previous: int, uptime: float, period: float) -> int:
    """Restarts in a row of one child, for backoff: reset once it stayed up a whole period."""
    return 1 if uptime >= period else previous + 1
