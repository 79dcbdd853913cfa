"""Due ticks: plan them (misfire, quiet hours), fire them, and arm the ones just ahead.

A scheduled tick's run records and the routine's next fire are written in one transaction
per batch, so a tick yields exactly one run record whatever crashes in between. A tick due
within ``ARM_AHEAD_MS`` is decided early (armed) only when nothing meanwhile can change its
decision; see docs/daemon.md, "Starting on the instant".
"""

from __future__ import annotations

from dataclasses import replace

from palyrad.domain.runs import ARM_AHEAD_MS, Run, new_trigger_run
from palyrad.journal import RoutineAdvance, RoutineState
from palyrad.services.scheduler.decisions import DUE_BATCH, Decisions
from palyrad.services.scheduler.state import Loaded, SchedulerState
from routines.jitter import fire_at_ms
from routines.kinds import ErrorKind, RunStatus, TriggerKind
from routines.model import Concurrency
from routines.policies import decide_trigger, plan_due, quiet_until
from routines.timefmt import format_rfc3339

ALWAYS_QUIET_RECHECK_MS = 60_000
# ARM_AHEAD_MS (one value, shared with the executor's claims): ticks are decided up to this
# long before their instant (when nothing can change the decision meanwhile), so the executor
# can claim them, prepare the process, and spawn it on the instant instead of a few
# milliseconds after it. Long enough to cover the scheduler → executor hand-off under load;
# short enough that "decided early" never matters to a person.


class Ticks:
    """Turns due ticks of the routines in ``state`` into run records and schedule advances."""

    def __init__(self, state: SchedulerState, decisions: Decisions) -> None:
        self.state = state
        self.journal = state.journal
        self.decisions = decisions
        self.deferred_ms: int | None = None  # see fire_due

    def fire_due(self, now: int) -> tuple[int, bool]:
        """Record runs for every due tick (one transaction per batch), and arm the ticks due
        within ``ARM_AHEAD_MS`` whose decision cannot change by then; returns (routines
        advanced, whether any run may start). Sets ``self.deferred_ms``: the earliest tick
        in the window that has to be decided on its instant instead."""
        self.deferred_ms = None
        due = self.journal.routines.due(now + ARM_AHEAD_MS, DUE_BATCH)
        if not due:
            return 0, False
        active = self.journal.runs.active_counts()
        runs: list[Run] = []
        advances: list[RoutineAdvance] = []
        runnable = False
        routines = self.state.routines
        for st in due:
            item = routines.get(st.routine_id)
            assert st.next_nominal_ms is not None and st.next_fire_ms is not None
            if item is None or item.routine.schedule is None:
                if st.next_fire_ms <= now:
                    advances.append(RoutineAdvance(st.routine_id, st.next_nominal_ms, None, None))
                elif self.deferred_ms is None:
                    self.deferred_ms = st.next_fire_ms
                continue
            at = now
            if st.next_fire_ms > now:
                if not self._armable(item, st, active):
                    if self.deferred_ms is None:
                        self.deferred_ms = st.next_fire_ms  # rows come in fire order
                    continue
                at = st.next_fire_ms
            runnable = self._fire_one(item, st, now, at, active, runs, advances) or runnable
        with self.journal.transaction():
            self.journal.runs.insert_new(runs)
            self.journal.routines.advance(advances)
        if len(due) >= DUE_BATCH and advances:
            self.state.more = True
        return len(advances), runnable

    def _armable(self, item: Loaded, st: RoutineState, active: dict[str, int]) -> bool:
        """Whether a tick due at ``st.next_fire_ms`` may be decided now, ahead of its instant:
        only when nothing that happens meanwhile can change the decision in a way that
        matters — an idle (or ``allow``) enabled routine whose tick is on time, outside quiet
        hours, past its cooldown and needs no approval. Anything else is decided on the
        instant, exactly as before."""
        r = item.routine
        at = st.next_fire_ms
        assert at is not None and st.next_nominal_ms is not None
        if not self.state.effective_enabled(item) or quiet_until(r, at) != at:
            return False
        if active.get(r.id, 0) and r.concurrency is not Concurrency.ALLOW:
            return False
        plan = plan_due(r, st.next_nominal_ms, st.first_seen_ms, at)
        if plan.skip is not None or len(plan.run_ticks) != 1:
            return False
        d = decide_trigger(r, self.decisions.runtime(item, active), at, scheduled=True)
        return d.runs and not d.request_approval and not d.cancel_active

    def _fire_one(
        self,
        item: Loaded,
        st: RoutineState,
        now: int,
        at: int,
        active: dict[str, int],
        runs: list[Run],
        advances: list[RoutineAdvance],
    ) -> bool:
        """Decide one routine's due tick(s) as of ``at`` (``now``, or its fire instant when
        armed ahead); append the run records and the schedule advance. True if a run may
        start."""
        r = item.routine
        assert st.next_nominal_ms is not None
        allowed = quiet_until(r, at)
        if allowed is None or allowed > at:
            # Quiet hours: hold the tick; when the window ends it is a misfire like any
            # other (skip record, or catch-up run at the window's end).
            hold = at + ALWAYS_QUIET_RECHECK_MS if allowed is None else allowed
            advances.append(RoutineAdvance(r.id, st.last_nominal_ms, st.next_nominal_ms, hold))
            return False
        plan = plan_due(r, st.next_nominal_ms, st.first_seen_ms, at)
        if plan.skip is not None:
            count, first, last = plan.skip
            skip = new_trigger_run(
                r.id,
                definition_hash=item.definition_hash,
                spec=None,
                trigger_kind=TriggerKind.SCHEDULE,
                now_ms=now,
                decision_status=RunStatus.SKIPPED,
                error_kind=ErrorKind.MISFIRE_SKIPPED,
                error_message=f"{count} tick(s) could not start within grace_ms",
            )
            runs.append(
                replace(skip, missed_count=count, first_missed_ms=first, last_missed_ms=last)
            )
        decision = None
        if plan.run_ticks:
            # Catch-up runs of one range are one decision: they queue behind each other
            # instead of forbid-skipping each other.
            decision = self.decisions.decide(item, active, at, scheduled=True)
            for tick in plan.run_ticks:
                payload = {"scheduled_for": format_rfc3339(tick, always_ms=True)}
                run = self.decisions.trigger_run(item, TriggerKind.SCHEDULE, payload, decision, now)
                fire = fire_at_ms(r.id, tick, r.jitter_ms)
                runs.append(
                    replace(
                        run,
                        scheduled_for_ms=tick,
                        fire_at_ms=fire,
                        # Armed ahead: the executor claims it now and spawns on the instant.
                        not_before_ms=fire if fire > now and decision.runs else None,
                    )
                )
        advances.append(RoutineAdvance(r.id, plan.last_nominal, plan.next_nominal, plan.next_fire))
        return decision is not None and decision.runs
