"""Approvals (``approvals``): one row per ``(routine_id, definition_hash)``.

Keyed by the definition's content hash, so any edit needs a new approval. A grant must be
visible to the scheduler, which notices grants through ``STATE_APPROVALS_CHANGED``; the
grant and that bump are one transaction at the call site (``palyrad.ops.approvals``)::

    with journal.transaction():
        journal.approvals.grant(routine_id, digest, mode, now)
        journal.state.set(STATE_APPROVALS_CHANGED, str(now), now)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from palyrad.journal.connection import Domain
from palyrad.journal.records import ApprovalRequest, PendingApproval


class Approvals(Domain):
    """Requests, grants and the lookups the scheduler and the views make."""

    __slots__ = ()

    def is_approved(self, routine_id: str, definition_hash: str) -> bool:
        """Whether this definition of the routine was granted."""
        row = self._db.execute(
            "SELECT granted_at_ms FROM approvals WHERE routine_id = ? AND definition_hash = ?",
            (routine_id, definition_hash),
        ).fetchone()
        return row is not None and row[0] is not None

    def granted(self) -> set[tuple[str, str]]:
        """Every granted ``(routine_id, definition_hash)`` (a set the scheduler keeps)."""
        rows = self._db.execute(
            "SELECT routine_id, definition_hash FROM approvals WHERE granted_at_ms IS NOT NULL"
        )
        return {(r[0], r[1]) for r in rows}

    def pending(self) -> list[PendingApproval]:
        """Requests not yet granted, oldest first."""
        rows = self._db.execute(
            "SELECT routine_id, mode, definition_hash, requested_at_ms FROM approvals"
            " WHERE granted_at_ms IS NULL ORDER BY requested_at_ms, routine_id"
        )
        return [PendingApproval(r[0], r[1], r[2], r[3]) for r in rows]

    def request(self, requests: Sequence[ApprovalRequest], now_ms: int) -> None:
        """Record pending approvals: one per definition hash (a repeat is ignored)."""
        if not requests:
            return
        with self._write() as db:
            db.executemany(
                "INSERT OR IGNORE INTO approvals (routine_id, definition_hash, mode,"
                " requested_at_ms) VALUES (?, ?, ?, ?)",
                [(q.routine_id, q.definition_hash, q.mode, now_ms) for q in requests],
            )

    def grant(self, routine_id: str, definition_hash: str, mode: str, now_ms: int) -> None:
        """Grant this definition (requested or not). Bump ``STATE_APPROVALS_CHANGED`` in the
        same transaction (see the module docstring), or the scheduler will not notice."""
        with self._write() as db:
            db.execute(
                "INSERT INTO approvals (routine_id, definition_hash, mode, requested_at_ms,"
                " granted_at_ms) VALUES (?, ?, ?, ?, ?) ON CONFLICT(routine_id, definition_hash)"
                " DO UPDATE SET granted_at_ms = excluded.granted_at_ms",
                (routine_id, definition_hash, mode, now_ms, now_ms),
            )

    def drop_stale_requests(self, current: Mapping[str, str]) -> None:
        """Forget ungranted requests for hashes that are no longer the definition's
        (``current`` maps routine id to its definition hash)."""
        with self._write() as db:
            rows = db.execute(
                "SELECT routine_id, definition_hash FROM approvals WHERE granted_at_ms IS NULL"
            ).fetchall()
            stale = [(r[0], r[1]) for r in rows if current.get(r[0]) != r[1]]
            db.executemany(
                "DELETE FROM approvals WHERE routine_id = ? AND definition_hash = ?", stale
            )
