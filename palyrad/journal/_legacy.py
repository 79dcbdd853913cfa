"""TEMPORARY: the old one-class method names, for the call sites in
``palyrad/services/scheduler/`` and ``palyrad/services/executor/`` only, while those folders
are being split in another branch. Delete this module (and its base in ``Journal``) at the
end of Phase B of the journal split, once those call sites use the domain API
(``/work/wt/journal_codemod.py`` rewrites most of them).

Each name delegates to the domain method it became, converting the old tuples to records.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from palyrad.domain.runs import Run, RunStatus
from palyrad.journal.approvals import Approvals
from palyrad.journal.connection import JournalConnection
from palyrad.journal.events import Events
from palyrad.journal.leases import Leases
from palyrad.journal.outbox import Outbox
from palyrad.journal.records import (
    ApprovalRequest,
    RoutineAdvance,
    RoutineState,
    RunDecision,
)
from palyrad.journal.routines import Routines
from palyrad.journal.runs import Runs
from palyrad.journal.state import DaemonState


class LegacyJournalNames(JournalConnection):
    """TEMPORARY (see the module docstring): ``Journal`` derives from this instead of
    ``JournalConnection`` until Phase B."""

    state: DaemonState
    routines: Routines
    runs: Runs
    leases: Leases
    approvals: Approvals
    events: Events
    outbox: Outbox

    # scheduler
    def set_state(self, key: str, value: str, now_ms: int) -> None:
        self.state.set(key, value, now_ms)

    def delete_state(self, key: str) -> None:
        self.state.delete(key)

    def get_state(self, key: str) -> str | None:
        return self.state.get(key)

    def approved_set(self) -> set[tuple[str, str]]:
        return self.approvals.granted()

    def routine_states(self) -> dict[str, RoutineState]:
        return self.routines.states()

    def sync_routine_states(
        self, upserts: Sequence[RoutineState], deletes: Iterable[str], now_ms: int
    ) -> None:
        self.routines.sync(upserts, deletes, now_ms)

    def emit_event(self, name: str, payload: str | None, now_ms: int) -> int:
        return self.events.emit(name, payload, now_ms)

    def drop_stale_approval_requests(self, current: Mapping[str, str]) -> None:
        self.approvals.drop_stale_requests(current)

    def request_approvals(self, requests: Sequence[tuple[str, str, str]], now_ms: int) -> None:
        self.approvals.request([ApprovalRequest(*r) for r in requests], now_ms)

    def last_start_ms(self, routine_id: str) -> int | None:
        return self.runs.last_start_ms(routine_id)

    def cancel_active_runs(self, routine_id: str, now_ms: int) -> int:
        return self.runs.cancel_active(routine_id, now_ms)

    def undecided_runs(self, limit: int) -> list[Run]:
        return self.runs.undecided(limit)

    def active_counts(self) -> dict[str, int]:
        return self.runs.active_counts()

    def decide_runs(
        self,
        decisions: Sequence[tuple[str, str, str | None, str | None, str | None, str | None]],
        now_ms: int,
    ) -> None:
        self.runs.decide([RunDecision(*d) for d in decisions], now_ms)

    def unconsumed_events(self, limit: int) -> list[tuple[int, str, str | None, int]]:
        return [
            (e.event_id, e.name, e.payload, e.created_ms) for e in self.events.unconsumed(limit)
        ]

    def insert_runs_consuming_events(
        self, runs: Sequence[Run], event_ids: Sequence[int], now_ms: int
    ) -> None:
        with self.transaction():
            self.runs.insert_many(runs)
            self.events.consume(event_ids, now_ms)

    def due_routines(self, now_ms: int, limit: int) -> list[RoutineState]:
        return self.routines.due(now_ms, limit)

    def record_ticks(
        self,
        runs: Sequence[Run],
        advances: Sequence[tuple[str, int | None, int | None, int | None]],
    ) -> int:
        with self.transaction():
            inserted = self.runs.insert_new(runs)
            self.routines.advance([RoutineAdvance(*a) for a in advances])
        return inserted

    def is_approved(self, routine_id: str, definition_hash: str) -> bool:
        return self.approvals.is_approved(routine_id, definition_hash)

    def insert_run(self, run: Run) -> None:
        self.runs.insert(run)

    def get_run(self, run_id: str) -> Run | None:
        return self.runs.get(run_id)

    def earliest_fire_ms(self, after: int | None = None) -> int | None:
        return self.routines.earliest_fire_ms(after)

    # executor
    def release_foreign_leases(self, owner: str, now_ms: int) -> int:
        return self.leases.release_foreign(owner, now_ms)

    def running_not_owned_by(self, owner: str) -> list[Run]:
        return self.leases.running_not_owned_by(owner)

    def finish_run(self, run_id: str, *, status: RunStatus, finished_ms: int, **kw: Any) -> bool:
        return self.runs.finish(run_id, status=status, finished_ms=finished_ms, **kw)

    def runnable_pending(self, now_ms: int, limit: int) -> list[Run]:
        return self.leases.runnable(now_ms, limit)

    def running_routine_ids(self) -> set[str]:
        return self.leases.running_routine_ids()

    def active_heads(self) -> dict[str, str]:
        return self.runs.active_heads()

    def lease(self, run_ids: Sequence[str], owner: str, now_ms: int) -> list[str]:
        return self.leases.acquire(run_ids, owner, now_ms)

    def mark_started(
        self, run_id: str, owner: str, pid: int, started_ms: int, log_path: str
    ) -> bool:
        return self.leases.mark_started(run_id, owner, pid, started_ms, log_path)

    def cancel_requested_ids(self, owner: str) -> list[str]:
        return self.leases.cancel_requested(owner)

    def heartbeat_runs(self, owner: str, now_ms: int) -> None:
        self.leases.heartbeat(owner, now_ms)

    def next_pending_ms(self) -> int | None:
        return self.leases.next_runnable_ms()

    def release_lease(self, run_id: str, owner: str, now_ms: int) -> None:
        self.leases.release(run_id, owner, now_ms)

    def add_outbox(
        self, channel: str, routine_id: str, run_id: str, payload: str, now_ms: int
    ) -> None:
        self.outbox.add(channel, routine_id, run_id, payload, now_ms)
