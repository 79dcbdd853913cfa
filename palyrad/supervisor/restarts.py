"""When a supervised service is started again: its states, their allowed transitions, and the
restart policy as a pure function of (history, now) — tested as a table, no processes.

One-for-one restarts with exponential backoff (0.5 s doubling to 30 s, reset after 60 s
healthy) and an intensity limit (more than 5 restarts in 60 s → ``fatal``). Unlike the Rust
original, ``fatal`` is not forever: like systemd's restart limits that expire and OTP's
escalation, a fatal service is tried again after a cool-down (1 min, doubling to 15 min while
it keeps failing), so a file fixed by the operator — or a disk that filled and emptied —
heals without a manual restart. ``daemon status`` shows when the next try is.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum


class ServiceState(StrEnum):
    """A service slot's state (``daemon status`` shows ``starting`` as ``restarting``)."""

    STOPPED = "stopped"
    STARTING = "starting"
    RUNNING = "running"
    RESTARTING = "restarting"
    FATAL = "fatal"


_ALLOWED: dict[ServiceState, frozenset[ServiceState]] = {
    ServiceState.STOPPED: frozenset({ServiceState.STARTING}),
    ServiceState.STARTING: frozenset(
        {ServiceState.RUNNING, ServiceState.RESTARTING, ServiceState.FATAL, ServiceState.STOPPED}
    ),
    ServiceState.RUNNING: frozenset(
        {ServiceState.RESTARTING, ServiceState.FATAL, ServiceState.STOPPED}
    ),
    ServiceState.RESTARTING: frozenset({ServiceState.STARTING, ServiceState.STOPPED}),
    ServiceState.FATAL: frozenset({ServiceState.STARTING, ServiceState.STOPPED}),
}


class IllegalTransition(RuntimeError):
    """A bug in the supervisor: a state change its state machine does not allow."""


def check_transition(old: ServiceState, new: ServiceState) -> None:
    """Raise unless ``old → new`` is a transition of the state machine (same state is fine)."""
    if new != old and new not in _ALLOWED[old]:
        raise IllegalTransition(f"service state {old} cannot become {new}")


BACKOFF_START_S = 0.5
FATAL_COOLDOWN_S = 60.0


@dataclass(frozen=True, slots=True)
class RestartPolicy:
    backoff_start_s: float = BACKOFF_START_S
    backoff_max_s: float = 30.0
    healthy_reset_s: float = 60.0
    window_s: float = 60.0
    max_restarts: int = 5
    fatal_cooldown_s: float = FATAL_COOLDOWN_S
    fatal_cooldown_max_s: float = 900.0


@dataclass
class RestartHistory:
    """What the policy remembers about one service across its restarts."""

    exits: deque[float] = field(default_factory=deque)  # monotonic times of recent exits
    backoff_s: float = BACKOFF_START_S
    fatal_cooldown_s: float = FATAL_COOLDOWN_S


def after_exit(
    policy: RestartPolicy, history: RestartHistory, started_at: float, now: float
) -> tuple[ServiceState, float]:
    """The state a service enters when its process exits unasked, and when to start it again
    (monotonic seconds). Updates ``history``."""
    if now - started_at > policy.healthy_reset_s:
        history.backoff_s = policy.backoff_start_s
        history.fatal_cooldown_s = policy.fatal_cooldown_s
    history.exits.append(now)
    while history.exits and now - history.exits[0] > policy.window_s:
        history.exits.popleft()
    if len(history.exits) > policy.max_restarts:
        retry_at = now + history.fatal_cooldown_s
        history.fatal_cooldown_s = min(history.fatal_cooldown_s * 2, policy.fatal_cooldown_max_s)
        history.exits.clear()  # the try after the cool-down starts a fresh window
        history.backoff_s = policy.backoff_start_s
        return ServiceState.FATAL, retry_at
    retry_at = now + history.backoff_s
    history.backoff_s = min(history.backoff_s * 2, policy.backoff_max_s)
    return ServiceState.RESTARTING, retry_at
