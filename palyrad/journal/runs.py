"""Run records (``runs``): inserting, deciding, reading, finalizing, cancelling, pruning.

Uniqueness the product promises lives in the schema: one run per ``(routine_id,
scheduled_for, attempt)``. The executor's side of a run's life (leases, start, heartbeats)
is in ``leases``; this module has what every process does with run records.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from palyrad.domain.runs import ACTIVE_STATUSES, Run, RunStatus, ulid_floor
from palyrad.journal.connection import Domain
from palyrad.journal.records import RunDecision
from palyrad.journal.run_rows import (
    ACTIVE_SQL,
    CANCELLED_KIND_SQL,
    CANCELLED_SQL,
    PENDING_SQL,
    RUN_INSERT,
    RUN_INSERT_OR_IGNORE,
    RUN_SELECT,
    RUNNING_SQL,
    SKIPPED_SQL,
    run_row,
    run_values,
)

PRUNE_BATCH = 500

_GET = RUN_SELECT + " WHERE run_id = ?"
_ACTIVE_COUNTS = (
    f"SELECT routine_id, COUNT(*) FROM runs WHERE status IN {ACTIVE_SQL}"
    " AND decided = 1 GROUP BY routine_id"
)
_ACTIVE_HEADS = (
    f"SELECT routine_id, MIN(chain_id) FROM runs WHERE status IN {ACTIVE_SQL}"
    " AND decided = 1 GROUP BY routine_id"
)
_UNDECIDED = RUN_SELECT + f" WHERE decided = 0 AND status = {PENDING_SQL} ORDER BY run_id LIMIT ?"
_DECIDE = (
    "UPDATE runs SET decided = 1, status = ?, error_kind = ?, error_message = ?,"
    f" spec = ?, definition_hash = ?, finished_at_ms = CASE WHEN ? IN"
    f" {ACTIVE_SQL} THEN NULL ELSE ? END WHERE run_id = ? AND decided = 0"
)
_FINISH = (
    "UPDATE runs SET status = ?, finished_at_ms = ?, exit_code = ?, error_kind = ?,"
    " error_message = ?, output_tail = COALESCE(?, output_tail),"
    " log_path = COALESCE(?, log_path) WHERE run_id = ?"
    f" AND status IN {ACTIVE_SQL}"
)
_FINISH_OWNED = _FINISH + " AND lease_owner = ?"
_LAST_START = (
    f"SELECT MAX(CASE WHEN status IN {ACTIVE_SQL} THEN"
    " COALESCE(started_at_ms, queued_at_ms) ELSE started_at_ms END) FROM runs"
    f" WHERE routine_id = ? AND decided = 1 AND status != {SKIPPED_SQL}"
)


class Runs(Domain):
    """``runs``: the records every process reads and the scheduler and operators write."""

    __slots__ = ()

    # --- inserting -----------------------------------------------------------------------

    def insert(self, run: Run) -> None:
        """Insert one run; a duplicate tick raises ``sqlite3.IntegrityError``."""
        with self._write() as db:
            db.execute(RUN_INSERT, run_values(run))

    def insert_many(self, runs: Sequence[Run]) -> None:
        """Insert trigger records (a duplicate raises, rolling back the transaction)."""
        with self._write() as db:
            db.executemany(RUN_INSERT, [run_values(r) for r in runs])

    def insert_new(self, runs: Sequence[Run]) -> int:
        """Insert the runs for due ticks, ignoring a run whose ``(routine_id, scheduled_for,
        attempt)`` already exists (the schema's uniqueness makes a retried claim harmless).
        Returns the rows inserted."""
        with self._write() as db:
            before = db.total_changes
            db.executemany(RUN_INSERT_OR_IGNORE, [run_values(r) for r in runs])
            return db.total_changes - before

    # --- reading -------------------------------------------------------------------------

    def get(self, run_id: str) -> Run | None:
        """One run by id, or None."""
        row = self._db.execute(_GET, (run_id,)).fetchone()
        return None if row is None else run_row(row)

    def for_routine(
        self,
        routine_id: str,
        *,
        limit: int = 50,
        before_run_id: str | None = None,
        status: str | None = None,
    ) -> list[Run]:
        """A routine's runs, newest first (paged by ``before_run_id``)."""
        sql = RUN_SELECT + " WHERE routine_id = ?"
        args: list[Any] = [routine_id]
        if before_run_id is not None:
            sql += " AND run_id < ?"
            args.append(before_run_id)
        if status is not None:
            sql += " AND status = ?"
            args.append(status)
        sql += " ORDER BY run_id DESC LIMIT ?"
        args.append(limit)
        return [run_row(r) for r in self._db.execute(sql, args)]

    def latest_per_routine(self) -> dict[str, Run]:
        """The newest run of every routine (one indexed query, not one per routine)."""
        rows = self._db.execute(
            RUN_SELECT + " WHERE run_id IN (SELECT MAX(run_id) FROM runs GROUP BY routine_id)"
        )
        return {r["routine_id"]: run_row(r) for r in rows}

    def active(self, routine_id: str | None = None) -> list[Run]:
        """Pending and running runs (of one routine, if given), oldest first."""
        sql = RUN_SELECT + f" WHERE status IN {ACTIVE_SQL}"
        args: tuple[Any, ...] = ()
        if routine_id is not None:
            sql += " AND routine_id = ?"
            args = (routine_id,)
        return [run_row(r) for r in self._db.execute(sql + " ORDER BY run_id", args)]

    def count_running(self) -> int:
        """How many runs are running now."""
        sql = f"SELECT COUNT(*) FROM runs WHERE status = {RUNNING_SQL}"
        return int(self._db.execute(sql).fetchone()[0])

    def active_counts(self) -> dict[str, int]:
        """Active (running or decided pending) runs per routine, for concurrency policy."""
        return {r[0]: int(r[1]) for r in self._db.execute(_ACTIVE_COUNTS)}

    def active_heads(self) -> dict[str, str]:
        """Per routine, the oldest chain among its active runs: for one-at-a-time routines
        only that chain may run next (a retry wait keeps its place ahead of queued runs)."""
        return {r[0]: r[1] for r in self._db.execute(_ACTIVE_HEADS)}

    def last_start_ms(self, routine_id: str) -> int | None:
        """When the routine's last run started — or will start, for decided pending runs
        (cooldown must not let two queued runs start back to back)."""
        row = self._db.execute(_LAST_START, (routine_id,)).fetchone()
        return None if row[0] is None else int(row[0])

    # --- deciding ------------------------------------------------------------------------

    def undecided(self, limit: int) -> list[Run]:
        """Trigger records (run-now, events) the scheduler has not yet run through policy."""
        return [run_row(r) for r in self._db.execute(_UNDECIDED, (limit,))]

    def decisions(self, run_ids: Sequence[str]) -> dict[str, tuple[str, str | None]]:
        """``(status, error_kind)`` of each of ``run_ids`` the scheduler has decided — only
        those columns, so a waiter polling for its triggers' decisions never reads their
        payloads (a webhook's can be a megabyte)."""
        if not run_ids:
            return {}
        marks = ", ".join("?" for _ in run_ids)
        rows = self._db.execute(
            "SELECT run_id, status, error_kind FROM runs"
            f" WHERE decided = 1 AND run_id IN ({marks})",
            tuple(run_ids),
        )
        return {r[0]: (str(r[1]), r[2]) for r in rows}

    def decide(self, decisions: Sequence[RunDecision], now_ms: int) -> None:
        """Apply policy decisions to undecided triggers; a final status also stamps
        ``finished_at``."""
        with self._write() as db:
            db.executemany(
                _DECIDE,
                [
                    (
                        d.status,
                        d.error_kind,
                        d.error_message,
                        d.spec,
                        d.definition_hash,
                        d.status,
                        now_ms,
                        d.run_id,
                    )
                    for d in decisions
                ],
            )

    # --- finishing and cancelling --------------------------------------------------------

    def finish(
        self,
        run_id: str,
        *,
        status: RunStatus,
        finished_ms: int,
        exit_code: int | None = None,
        error_kind: str | None = None,
        error_message: str | None = None,
        output_tail: str | None = None,
        owner: str | None = None,
        log_path: str | None = None,
        follow_up: Run | None = None,
    ) -> bool:
        """Finalize an active run; with ``owner`` only while that owner holds the lease.

        ``follow_up`` (the next retry attempt) is inserted in the same transaction, so a
        crash can never lose a retry nor create one for a run that was not finalized.
        """
        args: list[Any] = [
            status.value,
            finished_ms,
            exit_code,
            error_kind,
            error_message,
            output_tail,
            log_path,
            run_id,
        ]
        sql = _FINISH
        if owner is not None:
            sql = _FINISH_OWNED
            args.append(owner)
        with self._write() as db:
            done = db.execute(sql, args).rowcount == 1
            if done and follow_up is not None:
                db.execute(RUN_INSERT_OR_IGNORE, run_values(follow_up))
            return done

    def request_cancel(self, run_id: str) -> Run | None:
        """Mark an active run for cancellation; a pending one is cancelled at once."""
        with self._write() as db:
            row = db.execute(_GET, (run_id,)).fetchone()
            if row is None or row["status"] not in ACTIVE_STATUSES:
                return None if row is None else run_row(row)
            db.execute("UPDATE runs SET cancel_requested = 1 WHERE run_id = ?", (run_id,))
            if row["status"] == RunStatus.PENDING and row["lease_owner"] is None:
                db.execute(
                    f"UPDATE runs SET status = {CANCELLED_SQL},"
                    f" error_kind = {CANCELLED_KIND_SQL},"
                    " error_message = 'cancelled before it started',"
                    " finished_at_ms = CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)"
                    " WHERE run_id = ?",
                    (run_id,),
                )
            row = db.execute(_GET, (run_id,)).fetchone()
        return run_row(row)

    def cancel_active(self, routine_id: str, now_ms: int) -> int:
        """Cancel every active run of a routine (``replace``): unstarted ones at once, running
        ones by flagging them for the executor. Returns how many were affected."""
        with self._write() as db:
            n = db.execute(
                f"UPDATE runs SET status = {CANCELLED_SQL},"
                f" error_kind = {CANCELLED_KIND_SQL},"
                " error_message = 'replaced by a newer trigger', finished_at_ms = ?,"
                f" cancel_requested = 1 WHERE routine_id = ? AND status = {PENDING_SQL}"
                " AND decided = 1 AND lease_owner IS NULL",
                (now_ms, routine_id),
            ).rowcount
            n += db.execute(
                "UPDATE runs SET cancel_requested = 1 WHERE routine_id = ? AND decided = 1"
                f" AND (status = {RUNNING_SQL} OR (status = {PENDING_SQL}"
                " AND lease_owner IS NOT NULL))",
                (routine_id,),
            ).rowcount
        return n

    # --- pruning -------------------------------------------------------------------------

    def prune(
        self, max_per_routine: int, older_than_ms: int, *, batch: int = PRUNE_BATCH
    ) -> list[str]:
        """Delete finished runs beyond the per-routine cap or older than the age limit.

        Works in small write transactions (``batch`` rows each) found through indexes, so
        pruning a million-row history never holds the write lock long enough to delay a tick.
        Age is judged by the run id (a ULID carries the instant the run was queued).
        Returns the deleted runs' log paths so the caller can remove the files.
        """
        db = self._db
        logs: list[str] = []
        floor = ulid_floor(older_than_ms)
        while True:
            rows = db.execute(
                f"SELECT run_id, log_path FROM runs WHERE run_id < ? AND status NOT IN"
                f" {ACTIVE_SQL} LIMIT ?",
                (floor, batch),
            ).fetchall()
            if not rows:
                break
            logs += self._delete_finished(rows)
        over = db.execute(
            "SELECT routine_id FROM runs GROUP BY routine_id HAVING COUNT(*) > ?",
            (max_per_routine,),
        ).fetchall()
        for (routine_id,) in over:
            cutoff = db.execute(
                "SELECT run_id FROM runs WHERE routine_id = ? ORDER BY run_id DESC"
                " LIMIT 1 OFFSET ?",
                (routine_id, max_per_routine - 1),
            ).fetchone()
            if cutoff is None:
                continue
            while True:
                rows = db.execute(
                    "SELECT run_id, log_path FROM runs WHERE routine_id = ? AND run_id < ?"
                    f" AND status NOT IN {ACTIVE_SQL} LIMIT ?",
                    (routine_id, cutoff[0], batch),
                ).fetchall()
                if not rows:
                    break
                logs += self._delete_finished(rows)
        return logs

    def _delete_finished(self, rows: Sequence[sqlite3.Row]) -> list[str]:
        with self._write() as db:
            db.executemany(
                f"DELETE FROM runs WHERE run_id = ? AND status NOT IN {ACTIVE_SQL}",
                [(r[0],) for r in rows],
            )
        return [r[1] for r in rows if r[1]]
