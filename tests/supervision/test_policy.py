"""The OTP matrix: restart type x exit kind x strategy, each cell named as OTP people say it."""

from __future__ import annotations

import pytest

from moltbot.supervision.backoff import delay
from moltbot.supervision.intensity import exceeded, record_restart
from moltbot.supervision.policy import Action, consecutive_restarts, decide, stop_order
from moltbot.supervision.spec import (
    Backoff,
    ChildSpec,
    Exit,
    ExitKind,
    Restart,
    Strategy,
    SupervisorFlags,
)

NORMAL = Exit(kind=ExitKind.NORMAL)
CRASH = Exit(kind=ExitKind.ABNORMAL, reason="RuntimeError")
SHUTDOWN = Exit(kind=ExitKind.SHUTDOWN)


def kids(*restarts: Restart) -> list[ChildSpec]:
    return [ChildSpec(id=f"c{i}", kind="w", restart=r) for i, r in enumerate(restarts)]


def flags(strategy: Strategy = Strategy.ONE_FOR_ONE, intensity: int = 3) -> SupervisorFlags:
    return SupervisorFlags(strategy=strategy, intensity=intensity, period=5.0)


# (cell name, restart type of the exiting child, exit, expected action)
RESTART_TYPE_MATRIX = [
    ("permanent_normal", Restart.PERMANENT, NORMAL, Action.RESTART),
    ("permanent_abnormal", Restart.PERMANENT, CRASH, Action.RESTART),
    ("permanent_shutdown", Restart.PERMANENT, SHUTDOWN, Action.IGNORE),
    ("transient_normal", Restart.TRANSIENT, NORMAL, Action.IGNORE),
    ("transient_abnormal", Restart.TRANSIENT, CRASH, Action.RESTART),
    ("transient_shutdown", Restart.TRANSIENT, SHUTDOWN, Action.IGNORE),
    ("temporary_normal", Restart.TEMPORARY, NORMAL, Action.REMOVE),
    ("temporary_abnormal", Restart.TEMPORARY, CRASH, Action.REMOVE),
    ("temporary_shutdown", Restart.TEMPORARY, SHUTDOWN, Action.REMOVE),
]


@pytest.mark.parametrize(
    ("restart", "exit", "expected"),
    [cell[1:] for cell in RESTART_TYPE_MATRIX],
    ids=[cell[0] for cell in RESTART_TYPE_MATRIX],
)
@pytest.mark.parametrize("strategy", list(Strategy), ids=[s.value for s in Strategy])
def test_restart_type_matrix(
    strategy: Strategy, restart: Restart, exit: Exit, expected: Action
) -> None:
    children = kids(Restart.PERMANENT, restart, Restart.PERMANENT)
    d = decide(flags(strategy), children, "c1", exit, (), now=100.0)
    assert d.action is expected
    if expected is Action.REMOVE:
        assert d.remove == ("c1",)
        assert d.stop == () and d.start == ()
    if expected is Action.IGNORE:
        # a child that is not restarted never disturbs its siblings, whatever the strategy
        assert d.stop == () and d.start == () and d.history == ()


STRATEGY_MATRIX = [
    ("one_for_one_first", Strategy.ONE_FOR_ONE, "c0", (), ("c0",)),
    ("one_for_one_middle", Strategy.ONE_FOR_ONE, "c1", (), ("c1",)),
    ("one_for_all_first", Strategy.ONE_FOR_ALL, "c0", ("c2", "c1"), ("c0", "c1", "c2")),
    ("one_for_all_middle", Strategy.ONE_FOR_ALL, "c1", ("c2", "c0"), ("c0", "c1", "c2")),
    ("one_for_all_last", Strategy.ONE_FOR_ALL, "c2", ("c1", "c0"), ("c0", "c1", "c2")),
    ("rest_for_one_first", Strategy.REST_FOR_ONE, "c0", ("c2", "c1"), ("c0", "c1", "c2")),
    ("rest_for_one_middle", Strategy.REST_FOR_ONE, "c1", ("c2",), ("c1", "c2")),
    ("rest_for_one_last", Strategy.REST_FOR_ONE, "c2", (), ("c2",)),
]


@pytest.mark.parametrize(
    ("strategy", "failed", "stop", "start"),
    [cell[1:] for cell in STRATEGY_MATRIX],
    ids=[cell[0] for cell in STRATEGY_MATRIX],
)
def test_strategy_matrix(
    strategy: Strategy, failed: str, stop: tuple[str, ...], start: tuple[str, ...]
) -> None:
    children = kids(Restart.PERMANENT, Restart.PERMANENT, Restart.PERMANENT)
    d = decide(flags(strategy), children, failed, CRASH, (), now=100.0)
    assert d.action is Action.RESTART
    assert d.stop == stop, "siblings stop in reverse start order"
    assert d.start == start, "children start again in start order"
    assert d.history == (100.0,)


@pytest.mark.parametrize(
    "strategy", [Strategy.ONE_FOR_ALL, Strategy.REST_FOR_ONE], ids=["one_for_all", "rest_for_one"]
)
def test_temporary_sibling_stopped_by_a_restart_is_removed(strategy: Strategy) -> None:
    children = kids(Restart.PERMANENT, Restart.PERMANENT, Restart.TEMPORARY)
    d = decide(flags(strategy), children, "c0", CRASH, (), now=1.0)
    assert d.action is Action.RESTART
    assert "c2" in d.stop
    assert d.remove == ("c2",)
    assert "c2" not in d.start


def test_transient_sibling_is_restarted_with_the_group() -> None:
    children = kids(Restart.PERMANENT, Restart.TRANSIENT)
    d = decide(flags(Strategy.ONE_FOR_ALL), children, "c0", CRASH, (), now=1.0)
    assert d.start == ("c0", "c1")


ESCALATION_MATRIX = [
    ("one_for_one_escalation", Strategy.ONE_FOR_ONE),
    ("one_for_all_escalation", Strategy.ONE_FOR_ALL),
    ("rest_for_one_escalation", Strategy.REST_FOR_ONE),
]


@pytest.mark.parametrize(
    "strategy", [c[1] for c in ESCALATION_MATRIX], ids=[c[0] for c in ESCALATION_MATRIX]
)
def test_escalation_when_intensity_exceeded(strategy: Strategy) -> None:
    children = kids(Restart.PERMANENT, Restart.PERMANENT, Restart.PERMANENT)
    history: tuple[float, ...] = ()
    for i in range(3):  # intensity 3: three restarts in the period are allowed
        d = decide(flags(strategy, intensity=3), children, "c1", CRASH, history, now=10.0 + i)
        assert d.action is Action.RESTART
        history = d.history
    d = decide(flags(strategy, intensity=3), children, "c1", CRASH, history, now=13.0)
    assert d.action is Action.ESCALATE
    assert d.stop == ("c2", "c0"), "all remaining children stop, in reverse order"
    assert d.start == ()
    assert "intensity" in d.reason


def test_restarts_outside_the_period_do_not_count() -> None:
    children = kids(Restart.PERMANENT)
    history: tuple[float, ...] = ()
    for t in (0.0, 6.0, 12.0, 18.0, 24.0):  # one every 6 s with a 5 s period: never escalates
        d = decide(flags(intensity=1), children, "c0", CRASH, history, now=t)
        assert d.action is Action.RESTART
        history = d.history
    assert history == (24.0,)


def test_intensity_zero_escalates_on_first_restart() -> None:
    d = decide(flags(intensity=0), kids(Restart.PERMANENT), "c0", CRASH, (), now=0.0)
    assert d.action is Action.ESCALATE


def test_transient_normal_exit_does_not_count_against_intensity() -> None:
    children = kids(Restart.TRANSIENT)
    for t in range(10):
        d = decide(flags(intensity=0), children, "c0", NORMAL, (), now=float(t))
        assert d.action is Action.IGNORE


def test_unknown_child_is_ignored() -> None:
    d = decide(flags(), kids(Restart.PERMANENT), "nope", CRASH, (), now=0.0)
    assert d.action is Action.IGNORE


def test_stop_order_is_reverse_start_order() -> None:
    assert stop_order(kids(Restart.PERMANENT, Restart.TRANSIENT, Restart.TEMPORARY)) == (
        "c2",
        "c1",
        "c0",
    )


def test_intensity_window() -> None:
    h = record_restart((), 0.0, 5.0)
    h = record_restart(h, 4.9, 5.0)
    assert h == (0.0, 4.9)
    h = record_restart(h, 5.0, 5.0)  # 0.0 falls out: the window is (now - period, now]
    assert h == (4.9, 5.0)
    assert not exceeded(h, 2)
    assert exceeded(record_restart(h, 5.1, 5.0), 2)


def test_backoff_grows_exponentially_and_caps() -> None:
    b = Backoff(base_s=0.1, max_s=1.0, jitter=0.0)
    assert [delay(b, n, 0.5) for n in range(0, 6)] == [0.0, 0.1, 0.2, 0.4, 0.8, 1.0]
    assert delay(b, 100, 0.5) == 1.0


def test_backoff_jitter_stays_within_bounds() -> None:
    b = Backoff(base_s=1.0, max_s=100.0, jitter=0.2)
    assert delay(b, 1, 0.0) == pytest.approx(0.8)
    assert delay(b, 1, 0.999999) == pytest.approx(1.2, abs=1e-5)
    assert delay(b, 1, 0.5) == pytest.approx(1.0)


def test_consecutive_restarts_reset_after_a_stable_period() -> None:
    assert consecutive_restarts(3, uptime=0.5, period=5.0) == 4
    assert consecutive_restarts(3, uptime=5.0, period=5.0) == 1
