"""``palyra cron status``: the dashboard of schedule routines, computed from views."""

from __future__ import annotations

from typing import Any

from palyrad.ops.routine_views import RoutineView

DUE_SOON_MS = 15 * 60_000
MAX_LISTED = 10


def cron_dashboard(views: list[RoutineView], now: int) -> dict[str, Any]:
    """Counts, overdue routines (next fire past its grace period), soon-due and next runs,
    and the last outcome of each routine."""
    enabled = [v for v in views if v.routine.enabled]
    overdue = [
        v
        for v in enabled
        if v.next_run_ms is not None and v.next_run_ms + v.routine.misfire.grace_ms < now
    ]
    soon = [
        v
        for v in enabled
        if v.next_run_ms is not None and now <= v.next_run_ms <= now + DUE_SOON_MS
    ]
    upcoming = sorted(
        (v for v in enabled if v.next_run_ms is not None and v.next_run_ms >= now),
        key=lambda v: v.next_run_ms or 0,
    )

    def brief(v: RoutineView) -> dict[str, Any]:
        j = v.to_json()
        return {
            "routine_id": v.routine.id,
            "next_run_at": j["next_run_at"],
            "next_run_at_unix_ms": v.next_run_ms,
        }

    return {
        "counts": {
            "total": len(views),
            "enabled": len(enabled),
            "disabled": len(views) - len(enabled),
            "overdue": len(overdue),
            "due_within_15m": len(soon),
        },
        "overdue": [brief(v) for v in overdue[:MAX_LISTED]],
        "next_runs": [brief(v) for v in upcoming[:MAX_LISTED]],
        "routines": [
            {
                "routine_id": v.routine.id,
                "state": v.state,
                "last_status": None if v.last_run is None else v.last_run.status,
                "last_error_kind": None if v.last_run is None else v.last_run.error_kind,
                "last_finished_at_unix_ms": None
                if v.last_run is None
                else v.last_run.finished_at_ms,
            }
            for v in views
        ],
    }
