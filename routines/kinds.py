"""The words a run is described by: its status, what triggered it, why it ended as it did.

``RunStatus``, ``TriggerKind`` and ``ErrorKind`` are spelled once, here, and used by the
policies (pure), the daemon, the CLI and the node client alike; ``explain`` is the one
sentence per outcome that ``palyra routines show``, doctor and a node's client print. This
module lives in the pure library because the node client may import ``routines`` but never
the daemon.
"""

from __future__ import annotations

from enum import StrEnum


class RunStatus(StrEnum):
    """SPEC §3 run statuses; ``pending`` and ``running`` are *active*, the rest final."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"
    DENIED = "denied"


ACTIVE_STATUSES = (RunStatus.PENDING, RunStatus.RUNNING)
FINAL_STATUSES = (
    RunStatus.SUCCEEDED,
    RunStatus.FAILED,
    RunStatus.CANCELLED,
    RunStatus.SKIPPED,
    RunStatus.DENIED,
)


class TriggerKind(StrEnum):
    """What created a run record (``trigger_kind``)."""

    SCHEDULE = "schedule"
    MANUAL = "manual"
    FILE_WATCH = "file_watch"
    SYSTEM_EVENT = "system_event"
    HOOK = "hook"
    WEBHOOK = "webhook"


class SystemEvent(StrEnum):
    """The events Palyra itself emits, for ``system_event`` routines (SPEC §2.1); operators
    emit their own as ``operator.<name>``."""

    DAEMON_STARTED = "daemon.started"
    RUN_SUCCEEDED = "run.succeeded"
    RUN_FAILED = "run.failed"
    ROUTINE_CHANGED = "routine.changed"
    NODE_PAIRED = "node.paired"
    NODE_REVOKED = "node.revoked"
    INCIDENT_OPENED = "incident.opened"
    INCIDENT_RESOLVED = "incident.resolved"


OPERATOR_EVENT_PREFIX = "operator."


class ErrorKind(StrEnum):
    """``error_kind`` values of SPEC §3, plus the daemon's own (docs/daemon.md)."""

    EXIT_CODE = "exit_code"
    TIMEOUT = "timeout"
    CANCELLED = "cancelled"
    DAEMON_CRASHED = "daemon_crashed"
    DAEMON_STOPPED = "daemon_stopped"
    HEARTBEAT_LOST = "heartbeat_lost"
    SPAWN_FAILED = "spawn_failed"
    CONCURRENCY_FORBID = "concurrency_forbid"
    CONCURRENCY_QUEUE_FULL = "concurrency_queue_full"
    MISFIRE_SKIPPED = "misfire_skipped"
    QUIET_HOURS = "quiet_hours"
    COOLDOWN_ACTIVE = "cooldown_active"
    APPROVAL_REQUIRED = "approval_required"
    ROUTINE_DISABLED = "routine_disabled"
    ROUTINE_REMOVED = "routine_removed"
    ROUTINE_NOT_FOUND = "routine_not_found"  # a trigger for an id no definition has
    AGENT_RUNNER_NOT_CONFIGURED = "agent_runner_not_configured"
    SKILL_UNAVAILABLE = "skill_unavailable"


def explain(
    status: str,
    error_kind: str | None,
    *,
    exit_code: int | None = None,
    error_message: str | None = None,
    missed_count: int | None = None,
) -> str:
    """In words: why a run did or did not run."""
    if status == RunStatus.SUCCEEDED:
        return "it ran and succeeded"
    if status in ACTIVE_STATUSES:
        return f"it is {status}"
    reasons: dict[str, str] = {
        ErrorKind.CONCURRENCY_FORBID: "it was skipped because another run was active "
        "(concurrency: forbid)",
        ErrorKind.CONCURRENCY_QUEUE_FULL: "it was skipped because one run was active and one "
        "queued",
        ErrorKind.MISFIRE_SKIPPED: f"{missed_count or 0} tick(s) were missed (daemon down, "
        "asleep or quiet hours) and the misfire policy is skip",
        ErrorKind.QUIET_HOURS: "it arrived inside the routine's quiet hours",
        ErrorKind.COOLDOWN_ACTIVE: "it arrived inside the cooldown after the previous run",
        ErrorKind.APPROVAL_REQUIRED: "the definition is waiting for approval "
        "(palyra routines approve)",
        ErrorKind.ROUTINE_DISABLED: "the routine was disabled when the trigger was decided",
        ErrorKind.ROUTINE_NOT_FOUND: "no routine had this id when the trigger was decided "
        "(it was removed, or never existed)",
        ErrorKind.DAEMON_STOPPED: "the daemon was stopped while it ran",
        ErrorKind.AGENT_RUNNER_NOT_CONFIGURED: "it is a prompt and no agent runner is "
        "configured ([agent] command in palyra.toml)",
        ErrorKind.SKILL_UNAVAILABLE: f"its skill is not available: {error_message}",
        ErrorKind.DAEMON_CRASHED: "the daemon died while it ran",
        ErrorKind.HEARTBEAT_LOST: "its executor stopped heartbeating, so it was failed and killed",
        ErrorKind.TIMEOUT: "it ran past its timeout_ms and was stopped",
        ErrorKind.EXIT_CODE: f"it ran and exited with code {exit_code}",
        ErrorKind.CANCELLED: "it was cancelled",
        ErrorKind.SPAWN_FAILED: f"its command could not be started: {error_message}",
    }
    return reasons.get(error_kind or "", f"{status}: {error_message or ''}".strip())
