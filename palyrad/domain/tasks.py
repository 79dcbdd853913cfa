"""The background queue's task kinds and their JSON shape (SPEC §4.6, §6).

The kinds are fixed: each is one ``TaskHandler`` in the executor's queue. ``ENQUEUEABLE``
are the ones an operator may start by hand (``palyra tasks enqueue``); ``delivery`` and
``post_run_reflection`` belong to a run and are enqueued by the executor with its id.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from routines.timefmt import format_rfc3339

if TYPE_CHECKING:
    from palyrad.journal.records import Task

DELIVERY = "delivery"
MEMORY_MAINTENANCE = "memory_maintenance"
EMBEDDINGS_BACKFILL = "embeddings_backfill"
SKILL_REAUDIT = "skill_reaudit"
POST_RUN_REFLECTION = "post_run_reflection"
JOURNAL_VACUUM = "journal_vacuum"

TASK_KINDS = (
    DELIVERY,
    MEMORY_MAINTENANCE,
    EMBEDDINGS_BACKFILL,
    SKILL_REAUDIT,
    POST_RUN_REFLECTION,
    JOURNAL_VACUUM,
)
MAINTENANCE_KINDS = (MEMORY_MAINTENANCE, EMBEDDINGS_BACKFILL, SKILL_REAUDIT, JOURNAL_VACUUM)
ENQUEUEABLE = MAINTENANCE_KINDS


def payload_run_id(payload: Any) -> str:
    """The run id a run's task (``delivery``, ``post_run_reflection``) carries; ValueError
    for a payload without one (the attempt fails, never the worker)."""
    run_id = payload.get("run_id") if isinstance(payload, dict) else None
    if not isinstance(run_id, str):
        raise ValueError(f"payload has no run_id: {payload!r}"[:300])
    return run_id


def _time(ms: int | None) -> str | None:
    return None if ms is None else format_rfc3339(ms, always_ms=True)


def task_to_json(task: Task) -> dict[str, Any]:
    """The task object of SPEC §4.6, with ``*_unix_ms`` twins of its times (as runs have).
    ``payload`` is the task's JSON value (not its text)."""
    import orjson

    try:
        payload = orjson.loads(task.payload)
    except orjson.JSONDecodeError:
        payload = task.payload
    return {
        "task_id": task.task_id,
        "kind": task.kind,
        "status": task.status,
        "priority": task.priority,
        "attempt": task.attempt,
        "max_attempts": task.max_attempts,
        "not_before": _time(task.not_before_ms),
        "not_before_unix_ms": task.not_before_ms,
        "created_at": _time(task.created_ms),
        "created_at_unix_ms": task.created_ms,
        "started_at": _time(task.started_ms),
        "started_at_unix_ms": task.started_ms,
        "finished_at": _time(task.finished_ms),
        "finished_at_unix_ms": task.finished_ms,
        "error": task.error,
        "payload": payload,
    }
