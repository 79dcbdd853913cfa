"""The scheduler service: decides *when*, and turns due ticks and triggers into run records.

Loop: reload definitions if they changed (watchdog + a stat check as backstop), run new
triggers (run-now, hooks, events, settled file bursts) through policy, claim due ticks in
batches (run records and the routine's next fire in one transaction), then sleep until the
earliest next fire, a file burst settling, the 15 s cap (so clock jumps and suspend are
noticed), or a poke.

Every decision is a pure function in ``routines.policies``; this module only gathers the
journal state those functions need and applies what they decide.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import orjson
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from palyrad.domain.runs import Run, new_trigger_run, run_spec
from palyrad.journal import (
    STATE_APPROVALS_CHANGED,
    STATE_DEFINITIONS_APPLIED,
    STATE_DEFINITIONS_ERROR,
    STATE_LISTENED_EVENTS,
    Journal,
    RoutineState,
)
from palyrad.ops.triggers import MAX_PAYLOAD_BYTES, manual_run, refusal
from palyrad.services.context import ServiceContext
from palyrad.services.scheduler.control_socket import ControlServer
from palyrad.services.scheduler.file_watch import FileWatchManager
from routines.definitions_file import atomic_write
from routines.jitter import fire_at_ms
from routines.model import (
    Approval,
    Concurrency,
    Definitions,
    FileWatchTrigger,
    HookTrigger,
    Routine,
    SystemEventTrigger,
)
from routines.policies import (
    RoutineRuntime,
    TriggerDecision,
    decide_trigger,
    plan_due,
    quiet_until,
)
from routines.schedules import next_fire
from routines.timefmt import format_rfc3339, now_ms, seconds_until
from routines.validate import format_issue, validate_text

log = logging.getLogger("palyrad.scheduler")

IDLE_CAP_MS = 15_000
ALWAYS_QUIET_RECHECK_MS = 60_000
DUE_BATCH = 1_000
# Ticks are decided up to this long before their instant (when nothing can change the
# decision meanwhile), so the executor can claim them, prepare the process, and spawn it on
# the instant instead of a few milliseconds after it. Long enough to cover the scheduler →
# executor hand-off under load; short enough that "decided early" never matters to a person.
ARM_AHEAD_MS = 50
EVENT_BATCH = 500
DEBOUNCE_S = 0.05
MAX_EVENT_DEPTH = 8  # event → run → event … chains stop here (no ping-pong storms)


@dataclass(frozen=True, slots=True)
class Loaded:
    """A routine plus what the scheduler derives from it once per load, not per tick."""

    routine: Routine
    definition_hash: str
    spec: str
    schedule_key: str | None


def _file_signature(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


_CHANGE_EVENTS = frozenset({"created", "modified", "moved", "deleted", "closed"})


class _DefinitionsEvents(FileSystemEventHandler):
    """Wakes the loop when definitions.json is created, written, or renamed into place."""

    def __init__(self, names: set[str], on_change: threading.Event, ctx: ServiceContext) -> None:
        self.names = names
        self.on_change = on_change
        self.ctx = ctx

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type not in _CHANGE_EVENTS:
            return  # a reader opening the file (every CLI command) is not a change
        paths = [event.src_path, getattr(event, "dest_path", "")]
        if any(os.path.basename(os.fsdecode(p)) in self.names for p in paths if p):
            self.on_change.set()
            self.ctx.wake()


class Scheduler:
    def __init__(self, ctx: ServiceContext, files: FileWatchManager | None = None) -> None:
        self.ctx = ctx
        self.journal: Journal = ctx.journal
        self.path = ctx.home.definitions
        self.last_good = ctx.home.routines_dir / ".definitions.last-good.json"
        self.routines: dict[str, Loaded] = {}
        self.approved: set[tuple[str, str]] = set()
        self.approvals_marker: str | None = None
        self.signature: tuple[int, int, int] | None = (-1, -1, -1)
        self.changed = threading.Event()
        self.env: Mapping[str, str] = os.environ
        self.files = files
        self.more = False  # a batch limit was hit: there is more to do right away
        self.deferred_ms: int | None = None  # see fire_due

    # --- definitions ---------------------------------------------------------------------

    def _read(self) -> bytes:
        try:
            return self.path.read_bytes()
        except FileNotFoundError:
            return b'{"schema_version": 1, "routines": []}'

    def reload(self, *, startup: bool = False) -> None:
        """Validate-then-swap: an invalid file is recorded for doctor and never applied."""
        self.signature = _file_signature(self.path)
        data = self._read()
        now = now_ms()
        result = validate_text(
            data,
            filename=str(self.path),
            now_ms=now,
            env=self.env,
            default_timezone=self.ctx.config.scheduler_timezone,
        )
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if result.definitions is None:
            lines = [format_issue(str(self.path), e) for e in result.errors]
            log.error(
                "definitions invalid; keeping the last good ones", extra={"errors": lines[:20]}
            )
            self.journal.set_state(
                STATE_DEFINITIONS_ERROR,
                orjson.dumps({"at_ms": now, "file_hash": digest, "errors": lines[:100]}).decode(),
                now,
            )
            if startup and not self.routines:
                self._load_last_good(now)
            return
        self.apply(result.definitions, now)
        self.journal.delete_state(STATE_DEFINITIONS_ERROR)
        self.journal.set_state(
            STATE_DEFINITIONS_APPLIED,
            orjson.dumps(
                {"at_ms": now, "file_hash": digest, "count": len(result.definitions.routines)}
            ).decode(),
            now,
        )
        if self.path.exists():
            atomic_write(self.last_good, data, keep_backup=False)

    def _load_last_good(self, now: int) -> None:
        """At start with a broken file: run what was last applied, as a running daemon would."""
        try:
            data = self.last_good.read_bytes()
        except FileNotFoundError:
            return
        result = validate_text(
            data,
            filename=str(self.last_good),
            now_ms=now,
            env=self.env,
            default_timezone=self.ctx.config.scheduler_timezone,
        )
        if result.definitions is not None:
            log.warning("started with the last good definitions")
            self.apply(result.definitions, now)

    def _effective_enabled(self, item: Loaded) -> bool:
        r = item.routine
        if not r.enabled:
            return False
        if r.approval is Approval.BEFORE_ENABLE:
            return (r.id, item.definition_hash) in self.approved
        return True

    def apply(self, defs: Definitions, now: int) -> None:
        """Sync definitions into the journal; unchanged routines keep their schedule.

        A change to routine A never touches B's row. A routine whose schedule changed, that
        is new, or that was (re-)enabled restarts its schedule from now: ticks before the
        daemon applied it, or while it was disabled, are never "missed".
        """
        loaded = {
            r.id: Loaded(r, r.content_hash(), run_spec(r), r.schedule_key()) for r in defs.routines
        }
        previous = self.routines
        self.approved = self.journal.approved_set()
        self.approvals_marker = self.journal.get_state(STATE_APPROVALS_CHANGED)
        states = self.journal.routine_states()
        # "Now" for new schedules is taken after the expensive part (validating, hashing),
        # so a large file's first ticks are not already late when they are written.
        now = max(now, now_ms())
        upserts: list[RoutineState] = []
        for rid, item in loaded.items():
            r = item.routine
            enabled = self._effective_enabled(item)
            st = states.get(rid)
            if (
                st is not None
                and st.schedule_key == item.schedule_key
                and (st.enabled or not enabled)
            ):
                if st.definition_hash != item.definition_hash or st.enabled != enabled:
                    # Same schedule: keep its place; undo any quiet-hours deferral, which is
                    # recomputed from the (possibly edited) quiet hours at the next tick.
                    fire = st.next_fire_ms
                    if st.next_nominal_ms is not None:
                        fire = fire_at_ms(rid, st.next_nominal_ms, r.jitter_ms)
                    upserts.append(
                        replace(
                            st,
                            definition_hash=item.definition_hash,
                            enabled=enabled,
                            next_fire_ms=fire,
                        )
                    )
                continue
            first_seen = (
                now if st is None or st.schedule_key != item.schedule_key else st.first_seen_ms
            )
            nominal = fire = None
            if r.schedule is not None:
                nominal = next_fire(r.schedule, now, first_seen_ms=first_seen)
                fire = None if nominal is None else fire_at_ms(rid, nominal, r.jitter_ms)
            upserts.append(
                RoutineState(
                    rid,
                    item.definition_hash,
                    item.schedule_key,
                    enabled,
                    first_seen,
                    nominal,
                    fire,
                    None if st is None else st.last_nominal_ms,
                )
            )
        deletes = [rid for rid in states if rid not in loaded]
        if upserts or deletes:
            self.journal.sync_routine_states(upserts, deletes, now)
        self.routines = loaded
        self._sync_approval_requests(now)
        listened = sorted(
            {
                item.routine.trigger.event
                for item in loaded.values()
                if isinstance(item.routine.trigger, SystemEventTrigger)
            }
        )
        self.journal.set_state(STATE_LISTENED_EVENTS, orjson.dumps(listened).decode(), now)
        if self.files is not None:
            self.files.reconcile(
                {
                    rid: item.routine.trigger
                    for rid, item in loaded.items()
                    if isinstance(item.routine.trigger, FileWatchTrigger)
                    and self._effective_enabled(item)
                }
            )
        changed = sorted(
            rid
            for rid in set(loaded) | set(previous)
            if (previous.get(rid) is None)
            or (loaded.get(rid) is None)
            or previous[rid].definition_hash != loaded[rid].definition_hash
            or previous[rid].routine.enabled != loaded[rid].routine.enabled
        )
        if changed and previous:
            self.journal.emit_event(
                "routine.changed", orjson.dumps({"routine_ids": changed[:1000]}).decode(), now
            )
        log.info(
            "definitions applied",
            extra={"routines": len(loaded), "changed": len(upserts), "deleted": len(deletes)},
        )

    def _sync_approval_requests(self, now: int) -> None:
        current = {rid: item.definition_hash for rid, item in self.routines.items()}
        self.journal.drop_stale_approval_requests(current)
        self.journal.request_approvals(
            [
                (rid, item.definition_hash, Approval.BEFORE_ENABLE.value)
                for rid, item in self.routines.items()
                if item.routine.approval is Approval.BEFORE_ENABLE
                and (rid, item.definition_hash) not in self.approved
            ],
            now,
        )

    def reload_if_changed(self) -> None:
        if self.changed.is_set():
            time.sleep(DEBOUNCE_S)  # let a multi-step save settle
            self.changed.clear()
            if _file_signature(self.path) != self.signature:
                self.reload()
        elif _file_signature(self.path) != self.signature or self.ctx.reload_event.is_set():
            self.ctx.reload_event.clear()
            self.reload()
        elif self.journal.get_state(STATE_APPROVALS_CHANGED) != self.approvals_marker:
            self.apply(Definitions(tuple(i.routine for i in self.routines.values())), now_ms())

    # --- decisions -----------------------------------------------------------------------

    def _runtime(self, item: Loaded, active: dict[str, int]) -> RoutineRuntime:
        r = item.routine
        return RoutineRuntime(
            active=active.get(r.id, 0),
            last_started_ms=self.journal.last_start_ms(r.id) if r.cooldown_ms > 0 else None,
            approved=r.approval is not Approval.BEFORE_FIRST_RUN
            or (r.id, item.definition_hash) in self.approved,
        )

    def _decide(
        self, item: Loaded, active: dict[str, int], now: int, *, scheduled: bool
    ) -> TriggerDecision:
        """Decide one trigger and apply its side effects (replace, approval requests)."""
        r = item.routine
        if not self._effective_enabled(item):
            if r.enabled and r.approval is Approval.BEFORE_ENABLE:
                return TriggerDecision(
                    "skipped",
                    "approval_required",
                    f"awaiting approval: palyra routines approve {r.id}",
                )
            return TriggerDecision("skipped", "routine_disabled", "the routine is disabled")
        d = decide_trigger(r, self._runtime(item, active), now, scheduled=scheduled)
        if d.request_approval:
            self.journal.request_approvals(
                [(r.id, item.definition_hash, Approval.BEFORE_FIRST_RUN.value)], now
            )
        if d.cancel_active:
            self.journal.cancel_active_runs(r.id, now)
            active[r.id] = 0
        if d.runs:
            active[r.id] = active.get(r.id, 0) + 1
        return d

    def decide_triggers(self, now: int) -> bool:
        """Run undecided triggers (run-now, events) through policy; True if any may run.
        Sets ``more`` when a full batch was taken (the loop goes round again at once)."""
        undecided = self.journal.undecided_runs(DUE_BATCH)
        self.more = self.more or len(undecided) >= DUE_BATCH
        if not undecided:
            return False
        active = self.journal.active_counts()
        decisions: list[tuple[str, str, str | None, str | None, str | None, str | None]] = []
        runnable = False
        for run in undecided:
            item = self.routines.get(run.routine_id)
            if item is None:
                decisions.append(
                    (run.run_id, "skipped", "routine_not_found", "no such routine", None, None)
                )
                continue
            d = self._decide(item, active, now, scheduled=False)
            runnable = runnable or d.runs
            decisions.append(
                (
                    run.run_id,
                    d.status,
                    d.error_kind,
                    d.error_message,
                    item.spec if d.runs else None,
                    item.definition_hash,
                )
            )
        self.journal.decide_runs(decisions, now)
        return runnable

    def _trigger_run(
        self, item: Loaded, kind: str, payload: object, d: TriggerDecision, now: int
    ) -> Run:
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
        events = self.journal.unconsumed_events(EVENT_BATCH)
        self.more = self.more or len(events) >= EVENT_BATCH
        if not events:
            return False
        active = self.journal.active_counts()
        runs: list[Run] = []
        for _event_id, name, raw, _created in events:
            body = orjson.loads(raw) if raw else {}
            if not isinstance(body, dict):
                body = {"payload": body}
            depth = int(body.get("depth", 0))
            for item in self.routines.values():
                trig = item.routine.trigger
                if isinstance(trig, SystemEventTrigger) and trig.event == name:
                    if depth >= MAX_EVENT_DEPTH or body.get("routine_id") == item.routine.id:
                        continue  # never let a routine trigger itself, nor chains run away
                    payload = {"event": name, **body}
                    kind = "system_event"
                elif (
                    isinstance(trig, HookTrigger)
                    and name == f"hook:{trig.hook_id}"
                    and (trig.event is None or trig.event == body.get("event"))
                ):
                    payload = {"hook_id": trig.hook_id, **body}
                    kind = "hook"
                else:
                    continue
                d = self._decide(item, active, now, scheduled=False)
                runs.append(self._trigger_run(item, kind, payload, d, now))
        self.journal.insert_runs_consuming_events(runs, [e[0] for e in events], now)
        return any(r.status == "pending" for r in runs)

    def fire_file_bursts(self, now: int) -> bool:
        if self.files is None:
            return False
        settled = self.files.pop_settled()
        if not settled:
            return False
        active = self.journal.active_counts()
        runs = []
        for rid, events in settled:
            item = self.routines.get(rid)
            if item is None:
                continue
            d = self._decide(item, active, now, scheduled=False)
            runs.append(self._trigger_run(item, "file_watch", {"events": events}, d, now))
        self.journal.insert_runs_consuming_events(runs, [], now)
        return any(r.status == "pending" for r in runs)

    def fire_due(self, now: int) -> tuple[int, bool]:
        """Record runs for every due tick (one transaction per batch), and arm the ticks due
        within ``ARM_AHEAD_MS`` whose decision cannot change by then; returns (routines
        advanced, whether any run may start). Sets ``self.deferred_ms``: the earliest tick
        in the window that has to be decided on its instant instead."""
        self.deferred_ms = None
        due = self.journal.due_routines(now + ARM_AHEAD_MS, DUE_BATCH)
        if not due:
            return 0, False
        active = self.journal.active_counts()
        runs: list[Run] = []
        advances: list[tuple[str, int | None, int | None, int | None]] = []
        runnable = False
        for st in due:
            item = self.routines.get(st.routine_id)
            assert st.next_nominal_ms is not None and st.next_fire_ms is not None
            if item is None or item.routine.schedule is None:
                if st.next_fire_ms <= now:
                    advances.append((st.routine_id, st.next_nominal_ms, None, None))
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
        self.journal.record_ticks(runs, advances)
        if len(due) >= DUE_BATCH and advances:
            self.more = True
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
        if not self._effective_enabled(item) or quiet_until(r, at) != at:
            return False
        if active.get(r.id, 0) and r.concurrency is not Concurrency.ALLOW:
            return False
        plan = plan_due(r, st.next_nominal_ms, st.first_seen_ms, at)
        if plan.skip is not None or len(plan.run_ticks) != 1:
            return False
        d = decide_trigger(r, self._runtime(item, active), at, scheduled=True)
        return d.runs and not d.request_approval and not d.cancel_active

    def _fire_one(
        self,
        item: Loaded,
        st: RoutineState,
        now: int,
        at: int,
        active: dict[str, int],
        runs: list[Run],
        advances: list[tuple[str, int | None, int | None, int | None]],
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
            advances.append((r.id, st.last_nominal_ms, st.next_nominal_ms, hold))
            return False
        plan = plan_due(r, st.next_nominal_ms, st.first_seen_ms, at)
        if plan.skip is not None:
            count, first, last = plan.skip
            skip = new_trigger_run(
                r.id,
                definition_hash=item.definition_hash,
                spec=None,
                trigger_kind="schedule",
                now_ms=now,
                decision_status="skipped",
                error_kind="misfire_skipped",
                error_message=f"{count} tick(s) could not start within grace_ms",
            )
            runs.append(
                replace(skip, missed_count=count, first_missed_ms=first, last_missed_ms=last)
            )
        decision = None
        if plan.run_ticks:
            # Catch-up runs of one range are one decision: they queue behind each other
            # instead of forbid-skipping each other.
            decision = self._decide(item, active, at, scheduled=True)
            for tick in plan.run_ticks:
                payload = {"scheduled_for": format_rfc3339(tick, always_ms=True)}
                run = self._trigger_run(item, "schedule", payload, decision, now)
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
        advances.append((r.id, plan.last_nominal, plan.next_nominal, plan.next_fire))
        return decision is not None and decision.runs

    def handle_request(self, msg: dict[str, Any]) -> dict[str, Any]:
        """A request from the control socket (``control_socket``). ``run_now``: the same checks
        and records as ``palyrad.ops.triggers.run_now``, decided before the answer."""
        if msg.get("op") != "run_now":
            return {"ok": False, "error": "unknown_op"}
        rid, payload = msg.get("routine_id"), msg.get("payload")
        if not isinstance(rid, str) or not (payload is None or isinstance(payload, str)):
            return {"ok": False, "error": "bad_request"}
        if payload is not None:
            if len(payload.encode()) > MAX_PAYLOAD_BYTES:
                return {"ok": False, "error": "bad_payload", "message": "payload too large"}
            try:
                orjson.loads(payload)
            except orjson.JSONDecodeError as exc:
                return {"ok": False, "error": "bad_payload", "message": exc.msg}
        self.reload_if_changed()  # read your writes: an edit just saved is applied first
        item = self.routines.get(rid)
        why = refusal(
            item.routine if item is not None else None,
            rid,
            lambda r: self.journal.is_approved(r.id, r.content_hash()),
        )
        if why is not None:
            return {"ok": False, "error": "refused", "message": why}
        now = now_ms()
        run = manual_run(rid, payload, now)
        self.journal.insert_run(run)
        if self.decide_triggers(now):
            self.ctx.poke("executor")
        got = self.journal.get_run(run.run_id)
        assert got is not None
        return {
            "ok": True,
            "run_id": got.run_id,
            "status": got.status,
            "error_kind": got.error_kind,
        }

    def emit_started(self, now: int) -> None:
        self.journal.emit_event(
            "daemon.started", orjson.dumps({"instance": self.ctx.instance}).decode(), now
        )


def run_scheduler(ctx: ServiceContext) -> None:
    observer = Observer()
    observer.daemon = True
    files = FileWatchManager(observer, ctx.wake)
    sched = Scheduler(ctx, files)
    sched.reload(startup=True)
    ctx.home.routines_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    observer.schedule(
        _DefinitionsEvents({"definitions.json"}, sched.changed, ctx),
        str(ctx.home.routines_dir),
        recursive=False,
    )
    observer.start()
    if ctx.restarts == 0:
        sched.emit_started(now_ms())
    control: ControlServer | None = None
    try:
        control = ControlServer(
            ctx.home.run_dir, sched.handle_request, ctx.register, ctx.unregister
        )
    except OSError as exc:  # run-now still works, through the journal
        log.error("control socket unavailable", extra={"error": str(exc)})
    ctx.ready({"routines": len(sched.routines)})
    try:
        while not ctx.stopping:
            if control is not None:
                control.sweep()
            sched.reload_if_changed()
            if files.dirty:
                files.reconcile()
            now = now_ms()
            sched.more = False
            runnable = sched.decide_triggers(now)
            runnable = sched.consume_events(now) or runnable
            runnable = sched.fire_file_bursts(now) or runnable
            _, fired = sched.fire_due(now)
            if runnable or fired:
                ctx.poke("executor")
            if sched.more:
                continue  # more due right now
            # Wake ARM_AHEAD_MS before the next tick beyond the armed window, or on the
            # instant of a tick that could not be armed.
            horizon = now + ARM_AHEAD_MS
            beyond = ctx.journal.earliest_fire_ms(after=horizon)
            timeout_s = IDLE_CAP_MS / 1000
            if beyond is not None:
                timeout_s = min(timeout_s, seconds_until(beyond - ARM_AHEAD_MS))
            if sched.deferred_ms is not None:
                timeout_s = min(timeout_s, seconds_until(sched.deferred_ms))
            sweep = control.next_sweep_s() if control is not None else None
            if sweep is not None:
                timeout_s = min(timeout_s, sweep)
            timeout_s = max(0.0, timeout_s)
            burst = files.next_deadline_s()
            if burst is not None:
                timeout_s = min(timeout_s, burst)
            ctx.wait(timeout_s)
    finally:
        if control is not None:
            control.close()
        observer.stop()
