"""Definitions in force: read ``definitions.json``, validate-then-swap, keep the last good.

A file that does not validate is recorded for doctor and never applied; at start with a broken
file the last applied one (``routines/.definitions.last-good.json``) runs, as a running daemon
would have kept it. Applying syncs each routine's state into the journal (a change to routine
A never touches B's row), publishes the events routines listen to, reconciles the file-watch
observers, publishes the webhook routines for node_rpc's listener and (re)requests
``before_enable`` approvals.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path

import orjson
from watchdog.events import FileSystemEvent, FileSystemEventHandler

from palyrad.domain import webhook_routes
from palyrad.domain.runs import run_spec
from palyrad.journal import (
    STATE_APPROVALS_CHANGED,
    STATE_DEFINITIONS_APPLIED,
    STATE_DEFINITIONS_ERROR,
    STATE_LISTENED_EVENTS,
    STATE_WEBHOOKS,
    ApprovalRequest,
    RoutineState,
)
from palyrad.services.context import ServiceContext
from palyrad.services.scheduler.file_watch import FileWatchManager
from palyrad.services.scheduler.state import Loaded, SchedulerState
from routines.definitions_file import atomic_write, read_document
from routines.jitter import fire_at_ms
from routines.kinds import SystemEvent
from routines.model import Approval, Definitions, FileWatchTrigger, SystemEventTrigger
from routines.schedules import next_fire
from routines.validate import (
    ValidationResult,
    file_issue,
    format_issue,
    internal_error,
    validate_text,
)

log = logging.getLogger("palyrad.scheduler")

DEBOUNCE_S = 0.05
MISSING_MESSAGE = (
    "the file is missing; the daemon keeps running the last good definitions (to remove"
    ' every routine, write {"schema_version": 1, "routines": []})'
)


def _file_signature(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except OSError:  # missing, or not reachable: reading it will say which
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


_CHANGE_EVENTS = frozenset({"created", "modified", "moved", "deleted", "closed"})


class DefinitionsEvents(FileSystemEventHandler):
    """Wakes the loop when definitions.json is created, written, or renamed into place."""

    def __init__(self, names: set[str], on_change: threading.Event, ctx: ServiceContext) -> None:
        self.names = names
        self.on_change = on_change
        self.ctx = ctx

    def on_any_event(self, event: FileSystemEvent) -> None:
        """Any change to one of ``names``: flag it and wake the scheduler's loop."""
        if event.event_type not in _CHANGE_EVENTS:
            return  # a reader opening the file (every CLI command) is not a change
        paths = [event.src_path, getattr(event, "dest_path", "")]
        if any(os.path.basename(os.fsdecode(p)) in self.names for p in paths if p):
            self.on_change.set()
            self.ctx.wake()


class DefinitionsLoader:
    """Loads, validates and applies the definitions; the one writer of ``state.routines``."""

    def __init__(
        self, ctx: ServiceContext, state: SchedulerState, files: FileWatchManager | None = None
    ) -> None:
        self.ctx = ctx
        self.state = state
        self.journal = state.journal
        self.clock = state.clock
        self.path = ctx.home.definitions
        self.last_good = ctx.home.last_good_definitions
        self.signature: tuple[int, int, int] | None = (-1, -1, -1)
        self.webhooks_published: str | None = None  # the STATE_WEBHOOKS document last written
        self.changed = threading.Event()
        self.env: Mapping[str, str] = os.environ
        self.files = files

    def _validate(self, now: int) -> tuple[bytes, ValidationResult]:
        """The file's bytes and what validating them found. Never raises: whatever is at the
        path (a directory, a FIFO, an unreadable file) or goes wrong while reading and
        validating it makes the document invalid, so the last good definitions stay."""
        data = b""
        try:
            read = read_document(self.path)
            if read.missing and (self.state.routines or self.last_good.exists()):
                # Not an empty document: an editor's save, an `mv` away and back, a sync tool
                # briefly deleting it. Emptying the daemon would forget every schedule's
                # place; removing all routines is an explicit empty "routines" list.
                return data, ValidationResult(None, [file_issue(MISSING_MESSAGE)])
            if read.missing:  # a new home: nothing has ever been applied
                data = b'{"schema_version": 1, "routines": []}'
            elif read.data is None:
                return data, ValidationResult(None, [read.issue or file_issue("cannot read")])
            else:
                data = read.data
            return data, validate_text(
                data,
                filename=str(self.path),
                now_ms=now,
                env=self.env,
                default_timezone=self.ctx.config.scheduler_timezone,
            )
        except Exception as exc:  # validate_text never raises; this covers the rest
            log.exception("definitions could not be read or validated")
            return data, ValidationResult(None, [file_issue(internal_error(exc))])

    def reload(self, *, startup: bool = False) -> None:
        """Validate-then-swap: an invalid file is recorded for doctor and never applied."""
        self.signature = _file_signature(self.path)
        now = self.clock.now_ms()
        data, result = self._validate(now)
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if result.definitions is None:
            lines = [format_issue(str(self.path), e) for e in result.errors]
            log.error(
                "definitions invalid; keeping the last good ones", extra={"errors": lines[:20]}
            )
            self.journal.state.set(
                STATE_DEFINITIONS_ERROR,
                orjson.dumps({"at_ms": now, "file_hash": digest, "errors": lines[:100]}).decode(),
                now,
            )
            if startup and not self.state.routines:
                self._load_last_good(now)
            return
        self.apply(result.definitions, now)
        self.journal.state.delete(STATE_DEFINITIONS_ERROR)
        self.journal.state.set(
            STATE_DEFINITIONS_APPLIED,
            orjson.dumps(
                {"at_ms": now, "file_hash": digest, "count": len(result.definitions.routines)}
            ).decode(),
            now,
        )
        if self.path.exists():
            try:
                atomic_write(self.last_good, data, keep_backup=False)
            except OSError as exc:  # applied all the same; only the copy for a start is stale
                log.warning("could not keep the last good definitions", extra={"error": str(exc)})

    def _load_last_good(self, now: int) -> None:
        """At start with a broken file: run what was last applied, as a running daemon would."""
        read = read_document(self.last_good)
        if read.data is None:
            return
        result = validate_text(
            read.data,
            filename=str(self.last_good),
            now_ms=now,
            env=self.env,
            default_timezone=self.ctx.config.scheduler_timezone,
        )
        if result.definitions is not None:
            log.warning("started with the last good definitions")
            self.apply(result.definitions, now)

    def apply(self, defs: Definitions, now: int) -> None:
        """Sync definitions into the journal; unchanged routines keep their schedule.

        A change to routine A never touches B's row. A routine whose schedule changed, that
        is new, or that was (re-)enabled restarts its schedule from now: ticks before the
        daemon applied it, or while it was disabled, are never "missed".
        """
        state = self.state
        # Every run is kept from every webhook secret variable, not just its own routine's.
        secrets = defs.webhook_secret_envs()
        loaded = {
            r.id: Loaded(r, r.content_hash(), run_spec(r, secrets), r.schedule_key())
            for r in defs.routines
        }
        previous = state.routines
        state.approved = self.journal.approvals.granted()
        state.approvals_marker = self.journal.state.get(STATE_APPROVALS_CHANGED)
        states = self.journal.routines.states()
        # "Now" for new schedules is taken after the expensive part (validating, hashing),
        # so a large file's first ticks are not already late when they are written.
        now = max(now, self.clock.now_ms())
        upserts: list[RoutineState] = []
        for rid, item in loaded.items():
            r = item.routine
            enabled = state.effective_enabled(item)
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
        webhooks = webhook_routes.publish(
            (item.routine, item.definition_hash) for item in loaded.values()
        )
        # One transaction: the listener never sees a routine's new hash with its old trigger.
        with self.journal.transaction():
            if upserts or deletes:
                self.journal.routines.sync(upserts, deletes, now)
            if webhooks != self.webhooks_published:
                self.journal.state.set(STATE_WEBHOOKS, webhooks, now)
        self.webhooks_published = webhooks
        state.routines = loaded
        self._sync_approval_requests(now)
        listened = sorted(
            {
                item.routine.trigger.event
                for item in loaded.values()
                if isinstance(item.routine.trigger, SystemEventTrigger)
            }
        )
        self.journal.state.set(STATE_LISTENED_EVENTS, orjson.dumps(listened).decode(), now)
        if self.files is not None:
            self.files.reconcile(
                {
                    rid: item.routine.trigger
                    for rid, item in loaded.items()
                    if isinstance(item.routine.trigger, FileWatchTrigger)
                    and state.effective_enabled(item)
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
            self.journal.events.emit(
                SystemEvent.ROUTINE_CHANGED,
                orjson.dumps({"routine_ids": changed[:1000]}).decode(),
                now,
            )
        log.info(
            "definitions applied",
            extra={"routines": len(loaded), "changed": len(upserts), "deleted": len(deletes)},
        )

    def _sync_approval_requests(self, now: int) -> None:
        state = self.state
        current = {rid: item.definition_hash for rid, item in state.routines.items()}
        self.journal.approvals.drop_stale_requests(current)
        self.journal.approvals.request(
            [
                ApprovalRequest(rid, item.definition_hash, Approval.BEFORE_ENABLE.value)
                for rid, item in state.routines.items()
                if item.routine.approval is Approval.BEFORE_ENABLE
                and (rid, item.definition_hash) not in state.approved
            ],
            now,
        )

    def reload_if_changed(self) -> None:
        """Reload when the watchdog saw a change, the file's signature moved (the backstop for
        a missed event), or SIGHUP asked; re-apply when approvals changed."""
        if self.changed.is_set():
            time.sleep(DEBOUNCE_S)  # let a multi-step save settle (a duration, not an instant)
            self.changed.clear()
            if _file_signature(self.path) != self.signature:
                self.reload()
        elif _file_signature(self.path) != self.signature or self.ctx.reload_event.is_set():
            self.ctx.reload_event.clear()
            self.reload()
        elif self.journal.state.get(STATE_APPROVALS_CHANGED) != self.state.approvals_marker:
            self.apply(
                Definitions(tuple(i.routine for i in self.state.routines.values())),
                self.clock.now_ms(),
            )
