"""The supervisor's restart policy as a table (palyrad.supervisor.restarts): no processes."""

from __future__ import annotations

import pytest

from palyrad.supervisor.restarts import (
    IllegalTransition,
    RestartHistory,
    RestartPolicy,
    ServiceState,
    after_exit,
    check_transition,
)

P = RestartPolicy()


def test_backoff_doubles_to_its_cap_then_resets_after_a_healthy_run() -> None:
    h = RestartHistory()
    waits = []
    t = 0.0
    for _ in range(5):  # 5 quick crashes: within the intensity limit
        state, at = after_exit(P, h, started_at=t, now=t + 0.1)
        assert state == ServiceState.RESTARTING
        waits.append(round(at - (t + 0.1), 3))
        t = at
    assert waits == [0.5, 1.0, 2.0, 4.0, 8.0]
    # a run longer than healthy_reset_s resets the backoff (and the window has moved on)
    state, at = after_exit(P, h, started_at=t, now=t + 120.0)
    assert state == ServiceState.RESTARTING and at == t + 120.0 + 0.5


def test_more_than_five_restarts_in_a_minute_is_fatal_then_retried_after_a_cool_down() -> None:
    h = RestartHistory()
    states = []
    t = 0.0
    for _ in range(6):
        state, at = after_exit(P, h, started_at=t, now=t + 0.01)
        states.append(state)
        t = t + 0.01
    assert states[:5] == [ServiceState.RESTARTING] * 5
    assert states[5] == ServiceState.FATAL and at == pytest.approx(t + 60.0)
    # after the cool-down it starts again with a fresh window: five more quick crashes
    # restart, the sixth is fatal again with a doubled cool-down
    t = at
    for i in range(6):
        state, at = after_exit(P, h, started_at=t, now=t + 0.01)
        t += 0.01
        assert state == (ServiceState.FATAL if i == 5 else ServiceState.RESTARTING)
    assert at == pytest.approx(t + 120.0)


def test_the_cool_down_is_capped_and_reset_by_a_healthy_run() -> None:
    h = RestartHistory(fatal_cooldown_s=800.0)
    t = 0.0
    for _ in range(6):
        state, at = after_exit(P, h, started_at=t, now=t)
    assert state == ServiceState.FATAL and h.fatal_cooldown_s == P.fatal_cooldown_max_s
    after_exit(P, h, started_at=at, now=at + 61.0)
    assert h.fatal_cooldown_s == P.fatal_cooldown_s


@pytest.mark.parametrize(
    ("old", "new", "ok"),
    [
        (ServiceState.STOPPED, ServiceState.STARTING, True),
        (ServiceState.STARTING, ServiceState.RUNNING, True),
        (ServiceState.RUNNING, ServiceState.FATAL, True),
        (ServiceState.FATAL, ServiceState.STARTING, True),
        (ServiceState.RESTARTING, ServiceState.STARTING, True),
        (ServiceState.STOPPED, ServiceState.RUNNING, False),
        (ServiceState.FATAL, ServiceState.RUNNING, False),
        (ServiceState.RESTARTING, ServiceState.RUNNING, False),
    ],
)
def test_transitions(old: ServiceState, new: ServiceState, ok: bool) -> None:
    if ok:
        check_transition(old, new)
    else:
        with pytest.raises(IllegalTransition):
            check_transition(old, new)
