"""The scheduler service: decides *when*, and turns due ticks and triggers into run records.

Loop: reload definitions if they changed (watchdog + a stat check as backstop), run new
triggers through policy, claim due ticks in batches (run records and the routine's next fire
in one transaction), then sleep until the earliest next fire, the 15 s cap (so clock jumps
and suspend are noticed), or a poke.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import orjson
from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

from palyrad.journal import Journal, RoutineState
from palyrad.runs import Run, new_trigger_run, run_spec
from palyrad.services import ServiceContext
from routines.definitions_file import atomic_write
from routines.jitter import fire_at_ms
from routines.model import Definitions, Routine
from routines.policies import RUN, decide_concurrency, plan_due
from routines.schedules import next_fire
from routines.timefmt import format_rfc3339, now_ms
from routines.validate import format_issue, validate_text

log = logging.getLogger("palyrad.scheduler")

IDLE_CAP_MS = 15_000
DUE_BATCH = 1_000
DEBOUNCE_S = 0.05
STATE_DEFINITIONS_ERROR = "definitions_error"
STATE_DEFINITIONS_APPLIED = "definitions_applied"


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


class _DefinitionsEvents(FileSystemEventHandler):
    """Wakes the loop when definitions.json is created, written, or renamed into place."""

    def __init__(self, names: set[str], on_change: threading.Event, wake: ServiceContext) -> None:
        self.names = names
        self.on_change = on_change
        self.ctx = wake

    def on_any_event(self, event: FileSystemEvent) -> None:
        paths = [event.src_path, getattr(event, "dest_path", "")]
        if any(os.path.basename(os.fsdecode(p)) in self.names for p in paths if p):
            self.on_change.set()
            self.ctx.wake()


class Scheduler:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.journal: Journal = ctx.journal
        self.path = ctx.home.definitions
        self.last_good = ctx.home.routines_dir / ".definitions.last-good.json"
        self.routines: dict[str, Loaded] = {}
        self.signature: tuple[int, int, int] | None = (-1, -1, -1)
        self.changed = threading.Event()
        self.env: Mapping[str, str] = os.environ

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

    def apply(self, defs: Definitions, now: int) -> None:
        """Sync definitions into the journal; unchanged routines keep their schedule."""
        loaded: dict[str, Loaded] = {}
        for r in defs.routines:
            loaded[r.id] = Loaded(r, r.content_hash(), run_spec(r), r.schedule_key())
        states = self.journal.routine_states()
        upserts: list[RoutineState] = []
        for rid, item in loaded.items():
            r = item.routine
            st = states.get(rid)
            if (
                st is not None
                and st.schedule_key == item.schedule_key
                and (st.enabled or not r.enabled)
            ):
                if st.definition_hash != item.definition_hash or st.enabled != r.enabled:
                    upserts.append(
                        RoutineState(
                            rid,
                            item.definition_hash,
                            item.schedule_key,
                            r.enabled,
                            st.first_seen_ms,
                            st.next_nominal_ms,
                            st.next_fire_ms,
                            st.last_nominal_ms,
                        )
                    )
                continue
            # New routine, changed schedule, or re-enabled: the schedule restarts from now
            # (ticks before the daemon applied it, or while disabled, are never "missed").
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
                    r.enabled,
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
        log.info(
            "definitions applied",
            extra={"routines": len(loaded), "changed": len(upserts), "deleted": len(deletes)},
        )

    def reload_if_changed(self) -> None:
        if self.changed.is_set():
            time.sleep(DEBOUNCE_S)  # let a multi-step save settle
            self.changed.clear()
            self.reload()
        elif _file_signature(self.path) != self.signature or self.ctx.reload_event.is_set():
            self.ctx.reload_event.clear()
            self.reload()

    # --- triggers and ticks --------------------------------------------------------------

    def decide_triggers(self, now: int) -> bool:
        """Run undecided triggers (run-now, events) through policy; True if any may run."""
        undecided = self.journal.undecided_runs(DUE_BATCH)
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
            if not item.routine.enabled:
                decisions.append(
                    (
                        run.run_id,
                        "skipped",
                        "routine_disabled",
                        "the routine is disabled",
                        None,
                        item.definition_hash,
                    )
                )
                continue
            d = decide_concurrency(item.routine, active.get(run.routine_id, 0))
            if d is RUN:
                active[run.routine_id] = active.get(run.routine_id, 0) + 1
                runnable = True
            decisions.append(
                (
                    run.run_id,
                    d.status,
                    d.error_kind,
                    d.error_message,
                    item.spec if d is RUN else None,
                    item.definition_hash,
                )
            )
        self.journal.decide_runs(decisions, now)
        return runnable

    def fire_due(self, now: int) -> tuple[int, bool]:
        """Record runs for every due tick (one transaction per batch); returns
        (routines handled, whether any run may start)."""
        due = self.journal.due_routines(now, DUE_BATCH)
        if not due:
            return 0, False
        active = self.journal.active_counts()
        runs: list[Run] = []
        advances: list[tuple[str, int, int | None, int | None]] = []
        runnable = False
        for st in due:
            item = self.routines.get(st.routine_id)
            assert st.next_nominal_ms is not None
            if item is None or item.routine.schedule is None:
                advances.append((st.routine_id, st.next_nominal_ms, None, None))
                continue
            r = item.routine
            plan = plan_due(r, st.next_nominal_ms, st.first_seen_ms, now)
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
                    error_message=f"{count} tick(s) missed their grace period",
                )
                runs.append(_with_missed(skip, count, first, last))
            decision = decide_concurrency(r, active.get(r.id, 0))
            for tick in plan.run_ticks:
                # Catch-up runs of one tick range are one decision: they queue behind each
                # other instead of forbid-skipping each other.
                run = new_trigger_run(
                    r.id,
                    definition_hash=item.definition_hash,
                    spec=item.spec,
                    trigger_kind="schedule",
                    now_ms=now,
                    decision_status=decision.status,
                    error_kind=decision.error_kind,
                    error_message=decision.error_message,
                    scheduled_for_ms=tick,
                    fire_at_ms=fire_at_ms(r.id, tick, r.jitter_ms),
                    payload=orjson.dumps(
                        {"scheduled_for": format_rfc3339(tick, always_ms=True)}
                    ).decode(),
                )
                runs.append(run)
                if decision is RUN:
                    runnable = True
                    active[r.id] = active.get(r.id, 0) + 1
            advances.append((r.id, plan.last_nominal, plan.next_nominal, plan.next_fire))
        self.journal.record_ticks(runs, advances)
        return len(due), runnable


def _with_missed(run: Run, count: int, first: int, last: int) -> Run:
    from dataclasses import replace

    return replace(run, missed_count=count, first_missed_ms=first, last_missed_ms=last)


def run_scheduler(ctx: ServiceContext) -> None:
    sched = Scheduler(ctx)
    sched.reload(startup=True)
    observer = Observer()
    handler = _DefinitionsEvents({"definitions.json"}, sched.changed, ctx)
    ctx.home.routines_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    observer.schedule(handler, str(ctx.home.routines_dir), recursive=False)
    observer.daemon = True
    observer.start()
    ctx.ready({"routines": len(sched.routines)})
    try:
        while not ctx.stopping:
            sched.reload_if_changed()
            now = now_ms()
            runnable = sched.decide_triggers(now)
            handled, fired = sched.fire_due(now)
            if runnable or fired:
                ctx.poke("executor")
            if handled >= DUE_BATCH:
                continue  # more due right now
            earliest = ctx.journal.earliest_fire_ms()
            timeout = IDLE_CAP_MS if earliest is None else min(IDLE_CAP_MS, earliest - now_ms())
            ctx.wait(max(0, timeout) / 1000)
    finally:
        observer.stop()
