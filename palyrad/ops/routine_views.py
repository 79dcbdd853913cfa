"""What ``routines list`` / ``show`` / ``cron status`` report about each routine.

A view joins the definition (what), the journal's runtime state (when) and the newest run
(what happened); it works with the daemon stopped, computing the next fire itself for
routines the daemon has not yet seen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from palyrad.domain.runs import Run, run_to_json
from palyrad.journal import Journal, RoutineState
from routines.jitter import fire_at_ms
from routines.model import Approval, Definitions, EverySchedule, Routine
from routines.schedules import next_fire
from routines.timefmt import format_rfc3339, get_zone


@dataclass(frozen=True, slots=True)
class RoutineView:
    routine: Routine
    next_run_ms: int | None
    last_run: Run | None
    state: str  # enabled | disabled | awaiting_approval

    def to_json(self) -> dict[str, Any]:
        out = self.routine.to_json()
        zone = get_zone(self.routine.zone_name)
        out["next_run_at"] = (
            None if self.next_run_ms is None else format_rfc3339(self.next_run_ms, zone)
        )
        out["next_run_at_unix_ms"] = self.next_run_ms
        out["last_run"] = None if self.last_run is None else run_to_json(self.last_run)
        out["state"] = self.state
        return out


def _next_run(routine: Routine, state: RoutineState | None, now: int) -> int | None:
    """The jittered next fire: the journal's when it describes this schedule, else computed."""
    if not routine.enabled or routine.schedule is None:
        return None
    if state is not None and state.enabled and state.schedule_key == routine.schedule_key():
        return state.next_fire_ms
    schedule = routine.schedule
    if isinstance(schedule, EverySchedule) and schedule.anchor_unix_ms is None:
        first_seen = state.first_seen_ms if state is not None else None
        if first_seen is None:
            return None  # anchored when the daemon first sees it
        nominal = next_fire(schedule, now, first_seen_ms=first_seen)
    else:
        nominal = next_fire(schedule, now)
    return None if nominal is None else fire_at_ms(routine.id, nominal, routine.jitter_ms)


def routine_state_word(routine: Routine, approved: bool) -> str:
    if routine.approval is Approval.BEFORE_ENABLE and not approved:
        return "awaiting_approval"
    return "enabled" if routine.enabled else "disabled"


def routine_views(
    defs: Definitions, journal: Journal, now: int, *, ids: set[str] | None = None
) -> list[RoutineView]:
    states = journal.routines.states()
    last = journal.runs.latest_per_routine()
    out: list[RoutineView] = []
    for r in defs.routines:
        if ids is not None and r.id not in ids:
            continue
        approved = (
            journal.approvals.is_approved(r.id, r.content_hash())
            if r.approval is Approval.BEFORE_ENABLE
            else True
        )
        out.append(
            RoutineView(
                r,
                _next_run(r, states.get(r.id), now),
                last.get(r.id),
                routine_state_word(r, approved),
            )
        )
    return out
