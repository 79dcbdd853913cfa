"""Triggers through policy: run-now records, journaled events and settled file bursts.

Every decision is a pure function in ``routines.policies``; this module only gathers the
journal state those functions need (active counts, the last start for a cooldown) and applies
what they decide (cancel for ``replace``, approval requests, the run records). The ticks module
decides scheduled ticks through the same ``decide``.
"""

from __future__ import annotations

import orjson

from palyrad.domain.runs import Run, new_trigger_run
from palyrad.journal import ApprovalRequest, RunDecision
from palyrad.services.scheduler.file_watch import FileWatchManager
from palyrad.services.scheduler.state import Loaded, SchedulerState
from routines.kinds import ErrorKind, RunStatus, TriggerKind
from routines.model import Approval, HookTrigger, SystemEventTrigger
from routines.policies import RoutineRuntime, TriggerDecision, decide_trigger

DUE_BATCH = 1_000
EVENT_BATCH = 500
MAX_EVENT_DEPTH = 8  # event → run → event … chains stop here (no ping-pong storms)


class Decisions:
    """Decides triggers for the routines in ``state`` and journals the outcome."""

    def __init__(self, state: SchedulerState, files: FileWatchManager | None = None) -> None:
        self.state = state
        self.journal = state.journal
        self.files = files

    def runtime(self, item: Loaded, active: dict[str, int]) -> RoutineRuntime:
        """What the policies need to know about the routine now, beyond its definition."""
        r = item.routine
        return RoutineRuntime(
            active=active.get(r.id, 0),
            last_started_ms=self.journal.runs.last_start_ms(r.id) if r.cooldown_ms > 0 else None,
            approved=r.approval is not Approval.BEFORE_FIRST_RUN
            or (r.id, item.definition_hash) in self.state.approved,
        )

    def decide(
        self, item: Loaded, active: dict[str, int], now: int, *, scheduled: bool
    ) -> TriggerDecision:
        """Decide one trigger and apply its side effects (replace, approval requests)."""
        r = item.routine
        if not self.state.effective_enabled(item):
            if r.enabled and r.approval is Approval.BEFORE_ENABLE:
                return TriggerDecision(
                    RunStatus.SKIPPED,
                    ErrorKind.APPROVAL_REQUIRED,
                    f"awaiting approval: palyra routines approve {r.id}",
                )
            return TriggerDecision(
                RunStatus.SKIPPED, ErrorKind.ROUTINE_DISABLED, "the routine is disabled"
            )
        d = decide_trigger(r, self.runtime(item, active), now, scheduled=scheduled)
        if d.request_approval:
            self.journal.approvals.request(
                [ApprovalRequest(r.id, item.definition_hash, Approval.BEFORE_FIRST_RUN.value)], now
            )
        if d.cancel_active:
            self.journal.runs.cancel_active(r.id, now)
            active[r.id] = 0
        if d.runs:
            active[r.id] = active.get(r.id, 0) + 1
        return d

    def decide_triggers(self, now: int) -> bool:
        """Run undecided triggers (run-now, events) through policy; True if any may run.
        Sets ``more`` when a full batch was taken (the loop goes round again at once)."""
        undecided = self.journal.runs.undecided(DUE_BATCH)
        self.state.more = self.state.more or len(undecided) >= DUE_BATCH
        if not undecided:
            return False
        active = self.journal.runs.active_counts()
        decisions: list[RunDecision] = []
        runnable = False
        for run in undecided:
            item = self.state.routines.get(run.routine_id)
            if item is None:
                decisions.append(
                    RunDecision(
                        run.run_id,
                        RunStatus.SKIPPED,
                        ErrorKind.ROUTINE_NOT_FOUND,
                        "no such routine",
                    )
                )
                continue
            d = self.decide(item, active, now, scheduled=False)
            runnable = runnable or d.runs
            decisions.append(
                RunDecision(
                    run.run_id,
                    d.status,
                    d.error_kind,
                    d.error_message,
                    spec=item.spec if d.runs else None,
                    definition_hash=item.definition_hash,
                )
            )
        self.journal.runs.decide(decisions, now)
        return runnable

    def trigger_run(
        self, item: Loaded, kind: TriggerKind, payload: object, d: TriggerDecision, now: int
    ) -> Run:
        """The run record of a decided trigger (attempt 1 of a new chain)."""
        return new_trigger_run(
            item.routine.id,
            definition_hash=item.definition_hash,
            spec=item.spec,
            trigger_kind=kind,
            now_ms=now,
            decision_status=d.status,
            error_kind=d.error_kind,
            error_message=d.error_message,
            payload=orjson.dumps(payload).decode(),
        )

    def consume_events(self, now: int) -> bool:
        """Turn journaled events (system events, operator events, hook fires) into triggers."""
        events = self.journal.events.unconsumed(EVENT_BATCH)
        self.state.more = self.state.more or len(events) >= EVENT_BATCH
        if not events:
            return False
        active = self.journal.runs.active_counts()
        runs: list[Run] = []
        for event in events:
            name, raw = event.name, event.payload
            body = orjson.loads(raw) if raw else {}
            if not isinstance(body, dict):
                body = {"payload": body}
            depth = int(body.get("depth", 0))
            for item in self.state.routines.values():
                trig = item.routine.trigger
                if isinstance(trig, SystemEventTrigger) and trig.event == name:
                    if depth >= MAX_EVENT_DEPTH or body.get("routine_id") == item.routine.id:
                        continue  # never let a routine trigger itself, nor chains run away
                    payload = {"event": name, **body}
                    kind = TriggerKind.SYSTEM_EVENT
                elif (
                    isinstance(trig, HookTrigger)
                    and name == f"hook:{trig.hook_id}"
                    and (trig.event is None or trig.event == body.get("event"))
                ):
                    payload = {"hook_id": trig.hook_id, **body}
                    kind = TriggerKind.HOOK
                else:
                    continue
                d = self.decide(item, active, now, scheduled=False)
                runs.append(self.trigger_run(item, kind, payload, d, now))
        with self.journal.transaction():
            self.journal.runs.insert_many(runs)
            self.journal.events.consume([e.event_id for e in events], now)
        return any(r.status == RunStatus.PENDING for r in runs)

    def fire_file_bursts(self, now: int) -> bool:
        """One trigger per settled file-watch burst, its changes as the payload."""
        if self.files is None:
            return False
        settled = self.files.pop_settled()
        if not settled:
            return False
        active = self.journal.runs.active_counts()
        runs = []
        for rid, events in settled:
            item = self.state.routines.get(rid)
            if item is None:
                continue
            d = self.decide(item, active, now, scheduled=False)
            runs.append(self.trigger_run(item, TriggerKind.FILE_WATCH, {"events": events}, d, now))
        self.journal.runs.insert_many(runs)
        return any(r.status == RunStatus.PENDING for r in runs)
