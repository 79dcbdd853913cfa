"""The executor's side of a run's life: claiming runnable runs with a lease (a fencing
token), starting them, heartbeating them, giving back what it could not start, and finding
runs left behind by a dead executor.

Every state change here is conditional on the lease owner, so an executor that lost its
lease (another instance recovered its runs) can no longer start or finalize them. The hot
loop's queries are module constants: the SQL text is built once.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from palyrad.domain.runs import Run
from palyrad.journal.connection import Domain
from palyrad.journal.run_rows import (
    ACTIVE_SQL,
    CANCELLED_KIND_SQL,
    CANCELLED_SQL,
    MANUAL_SQL,
    PENDING_SQL,
    RUN_SELECT,
    RUNNING_SQL,
    run_row,
)

_RUNNABLE = (
    RUN_SELECT + f" WHERE status = {PENDING_SQL} AND decided = 1 AND lease_owner IS NULL"
    " AND cancel_requested = 0 AND (not_before_ms IS NULL OR not_before_ms <= ?)"
    f" ORDER BY trigger_kind != {MANUAL_SQL}, run_id LIMIT ?"
)
_RUNNING_ROUTINES = f"SELECT DISTINCT routine_id FROM runs WHERE status = {RUNNING_SQL}"
_ACQUIRE = (
    "UPDATE runs SET lease_owner = ?, heartbeat_ms = ? WHERE run_id = ?"
    f" AND status = {PENDING_SQL} AND lease_owner IS NULL AND cancel_requested = 0"
)
_NEXT_RUNNABLE = (
    f"SELECT MIN(COALESCE(not_before_ms, 0)) FROM runs WHERE status = {PENDING_SQL}"
    " AND lease_owner IS NULL AND decided = 1 AND cancel_requested = 0"
)
_MARK_STARTED = (
    f"UPDATE runs SET status = {RUNNING_SQL}, pid = ?, started_at_ms = ?,"
    " heartbeat_ms = ?, log_path = ? WHERE run_id = ? AND lease_owner = ?"
    f" AND status = {PENDING_SQL} AND cancel_requested = 0"
)
_HEARTBEAT = f"UPDATE runs SET heartbeat_ms = ? WHERE lease_owner = ? AND status = {RUNNING_SQL}"
_CANCEL_REQUESTED = (
    "SELECT run_id FROM runs WHERE cancel_requested = 1 AND lease_owner = ?"
    f" AND status IN {ACTIVE_SQL}"
)
_CANCEL_LEASED = (
    f"UPDATE runs SET status = {CANCELLED_SQL}, error_kind = {CANCELLED_KIND_SQL},"
    " error_message = 'cancelled before it started', finished_at_ms = ?"
    f" WHERE status = {PENDING_SQL} AND cancel_requested = 1 AND "
)


class Leases(Domain):
    """Leases on runs: the executor's claim, start and heartbeat protocol."""

    __slots__ = ()

    def runnable(self, now_ms: int, limit: int) -> list[Run]:
        """Decided, unleased pending runs whose wait is over: manual triggers first (someone
        is waiting at a prompt), then oldest first (FIFO)."""
        return [run_row(r) for r in self._db.execute(_RUNNABLE, (now_ms, limit))]

    def running_routine_ids(self) -> set[str]:
        """Routines with a run running now."""
        return {r[0] for r in self._db.execute(_RUNNING_ROUTINES)}

    def next_runnable_ms(self) -> int | None:
        """The earliest instant an unleased pending run becomes runnable (retry waits)."""
        row = self._db.execute(_NEXT_RUNNABLE).fetchone()
        return None if row[0] is None else int(row[0])

    def acquire(self, run_ids: Sequence[str], owner: str, now_ms: int) -> list[str]:
        """Lease pending runs to ``owner``; returns the ids actually leased (fencing)."""
        leased: list[str] = []
        with self._write() as db:
            for run_id in run_ids:
                cur = db.execute(_ACQUIRE, (owner, now_ms, run_id))
                if cur.rowcount == 1:
                    leased.append(run_id)
        return leased

    def mark_started(
        self, run_id: str, owner: str, pid: int, started_ms: int, log_path: str
    ) -> bool:
        """pending → running, only while ``owner`` still holds the lease (fencing)."""
        with self._write() as db:
            cur = db.execute(_MARK_STARTED, (pid, started_ms, started_ms, log_path, run_id, owner))
            return cur.rowcount == 1

    def heartbeat(self, owner: str, now_ms: int) -> None:
        """Stamp every run ``owner`` is running as alive now."""
        with self._write() as db:
            db.execute(_HEARTBEAT, (now_ms, owner))

    def release(self, run_id: str, owner: str, now_ms: int) -> None:
        """Give a claimed-but-unstarted run back to the queue (e.g. on graceful stop); one
        cancelled meanwhile is finalized ``cancelled`` instead."""
        with self._write() as db:
            if _cancel_leased(db, "run_id = ?", run_id, now_ms):
                return
            db.execute(
                "UPDATE runs SET lease_owner = NULL WHERE run_id = ? AND lease_owner = ?"
                f" AND status = {PENDING_SQL}",
                (run_id, owner),
            )

    def release_foreign(self, owner: str, now_ms: int) -> int:
        """Give back pending runs leased by a dead executor instance (never started); the
        ones cancelled while leased are finalized ``cancelled`` instead — released, they
        could never be leased again (``acquire`` refuses them) and would block their routine."""
        with self._write() as db:
            n = _cancel_leased(db, "lease_owner IS NOT NULL AND lease_owner != ?", owner, now_ms)
            return (
                n
                + db.execute(
                    f"UPDATE runs SET lease_owner = NULL WHERE status = {PENDING_SQL}"
                    " AND lease_owner IS NOT NULL AND lease_owner != ?",
                    (owner,),
                ).rowcount
            )

    def cancel_requested(self, owner: str) -> list[str]:
        """Ids of ``owner``'s active runs that an operator or ``replace`` asked to cancel."""
        return [r[0] for r in self._db.execute(_CANCEL_REQUESTED, (owner,))]

    def leased_not_owned_by(self, owner: str) -> list[Run]:
        """Pending runs leased by another executor instance: claimed by a dead executor,
        started or not (its spawn-intent log tells)."""
        rows = self._db.execute(
            RUN_SELECT + f" WHERE status = {PENDING_SQL} AND lease_owner IS NOT NULL"
            " AND lease_owner != ?",
            (owner,),
        )
        return [run_row(r) for r in rows]

    def running_not_owned_by(self, owner: str) -> list[Run]:
        """Runs left ``running`` by another executor instance: crash orphans."""
        rows = self._db.execute(
            RUN_SELECT
            + f" WHERE status = {RUNNING_SQL} AND (lease_owner IS NULL OR lease_owner != ?)",
            (owner,),
        )
        return [run_row(r) for r in rows]

    def stale_running(self, older_than_ms: int) -> list[Run]:
        """Running runs whose last heartbeat is older than ``older_than_ms``."""
        rows = self._db.execute(
            RUN_SELECT + f" WHERE status = {RUNNING_SQL} AND heartbeat_ms < ?", (older_than_ms,)
        )
        return [run_row(r) for r in rows]


def _cancel_leased(db: sqlite3.Connection, where: str, arg: str, now_ms: int) -> int:
    """Finalize leased pending runs flagged for cancellation (matching ``where``)."""
    return db.execute(_CANCEL_LEASED + where, (now_ms, arg)).rowcount
