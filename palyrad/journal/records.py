"""Typed records that cross the journal seam (in and out), instead of bare tuples.

Frozen and slotted: cheap to build, safe to share between a loop and its helpers, and the
field names say what a tuple's positions only implied. ``Run`` is not here: it is the value
object every process shares (``palyrad.domain.runs``); the journal stores and returns it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RoutineState:
    """Runtime state the journal keeps per routine id (definitions say *what*, this *when*)."""

    routine_id: str
    definition_hash: str
    schedule_key: str | None
    enabled: bool
    first_seen_ms: int
    next_nominal_ms: int | None
    next_fire_ms: int | None
    last_nominal_ms: int | None


@dataclass(frozen=True, slots=True)
class RoutineAdvance:
    """A routine's schedule moved past a due tick (``Routines.advance``); ``None`` next
    times mean the schedule has no further fire."""

    routine_id: str
    last_nominal_ms: int | None
    next_nominal_ms: int | None
    next_fire_ms: int | None


@dataclass(frozen=True, slots=True)
class RunDecision:
    """What policy decided for an undecided trigger record (``Runs.decide``): its status
    and error, and the spec and definition it was decided against."""

    run_id: str
    status: str
    error_kind: str | None = None
    error_message: str | None = None
    spec: str | None = None
    definition_hash: str | None = None


@dataclass(frozen=True, slots=True)
class ApprovalRequest:
    """An approval a routine needs for one definition hash (``Approvals.request``)."""

    routine_id: str
    definition_hash: str
    mode: str


@dataclass(frozen=True, slots=True)
class PendingApproval:
    """A requested approval not yet granted (``Approvals.pending``)."""

    routine_id: str
    mode: str
    definition_hash: str
    requested_at_ms: int


@dataclass(frozen=True, slots=True)
class Event:
    """A journaled event (system, operator or hook) waiting for the scheduler."""

    event_id: int
    name: str
    payload: str | None  # JSON text
    created_ms: int


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """A channel delivery not yet acknowledged by a paired node."""

    outbox_id: int
    channel: str
    payload: str  # JSON text


@dataclass(frozen=True, slots=True)
class ProcessHeartbeat:
    """The last sign of life a daemon service process journaled."""

    name: str
    pid: int
    instance: str
    state: str
    restarts: int
    heartbeat_ms: int
