"""Routine runtime state (``routine_state``): when each routine fires next.

Definitions say *what* a routine is; this table says *when*: the schedule key it was
computed for, the next nominal and jittered fire, the last tick handled. The scheduler syncs
it on every definitions reload and advances it as ticks are recorded.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Sequence

from palyrad.journal.connection import Domain
from palyrad.journal.records import RoutineAdvance, RoutineState


def _state_row(row: sqlite3.Row) -> RoutineState:
    return RoutineState(
        routine_id=row["routine_id"],
        definition_hash=row["definition_hash"],
        schedule_key=row["schedule_key"],
        enabled=bool(row["enabled"]),
        first_seen_ms=row["first_seen_ms"],
        next_nominal_ms=row["next_nominal_ms"],
        next_fire_ms=row["next_fire_ms"],
        last_nominal_ms=row["last_nominal_ms"],
    )


class Routines(Domain):
    """``routine_state``: reads for views and the scheduler, sync and advance writes."""

    __slots__ = ()

    def states(self) -> dict[str, RoutineState]:
        """Every routine's state, by routine id."""
        rows = self._db.execute("SELECT * FROM routine_state")
        return {r["routine_id"]: _state_row(r) for r in rows}

    def get(self, routine_id: str) -> RoutineState | None:
        """One routine's state, or None when the daemon has not seen it yet."""
        row = self._db.execute(
            "SELECT * FROM routine_state WHERE routine_id = ?", (routine_id,)
        ).fetchone()
        return None if row is None else _state_row(row)

    def sync(self, upserts: Sequence[RoutineState], deletes: Iterable[str], now_ms: int) -> None:
        """Apply a definitions reload: only the rows that changed are written."""
        with self._write() as db:
            db.executemany(
                "INSERT INTO routine_state (routine_id, definition_hash, schedule_key, enabled,"
                " first_seen_ms, next_nominal_ms, next_fire_ms, last_nominal_ms, updated_ms)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(routine_id) DO UPDATE SET"
                " definition_hash = excluded.definition_hash,"
                " schedule_key = excluded.schedule_key, enabled = excluded.enabled,"
                " first_seen_ms = excluded.first_seen_ms,"
                " next_nominal_ms = excluded.next_nominal_ms,"
                " next_fire_ms = excluded.next_fire_ms,"
                " last_nominal_ms = excluded.last_nominal_ms, updated_ms = excluded.updated_ms",
                [
                    (
                        s.routine_id,
                        s.definition_hash,
                        s.schedule_key,
                        int(s.enabled),
                        s.first_seen_ms,
                        s.next_nominal_ms,
                        s.next_fire_ms,
                        s.last_nominal_ms,
                        now_ms,
                    )
                    for s in upserts
                ],
            )
            db.executemany(
                "DELETE FROM routine_state WHERE routine_id = ?", [(d,) for d in deletes]
            )

    def due(self, now_ms: int, limit: int) -> list[RoutineState]:
        """Enabled routines whose next fire is at or before ``now_ms``, in fire order."""
        rows = self._db.execute(
            "SELECT * FROM routine_state WHERE enabled = 1 AND next_fire_ms IS NOT NULL"
            " AND next_fire_ms <= ? ORDER BY next_fire_ms LIMIT ?",
            (now_ms, limit),
        )
        return [_state_row(r) for r in rows]

    def count_due(self, now_ms: int) -> int:
        """How many enabled routines have their next fire at or before ``now_ms`` (doctor's
        overdue count: ``due`` with a cutoff in the past, counted on the same index)."""
        row = self._db.execute(
            "SELECT COUNT(*) FROM routine_state WHERE enabled = 1 AND next_fire_ms IS NOT NULL"
            " AND next_fire_ms <= ?",
            (now_ms,),
        ).fetchone()
        return int(row[0])

    def earliest_fire_ms(self, after: int | None = None) -> int | None:
        """The earliest next fire of an enabled routine (later than ``after``, if given)."""
        row = self._db.execute(
            "SELECT MIN(next_fire_ms) FROM routine_state WHERE enabled = 1"
            " AND next_fire_ms IS NOT NULL AND next_fire_ms > ?",
            (-(2**62) if after is None else after,),
        ).fetchone()
        return None if row[0] is None else int(row[0])

    def advance(self, advances: Sequence[RoutineAdvance]) -> None:
        """Move each routine's schedule past the ticks just handled.

        Recording a tick is two domains in one transaction — the run records and the
        advance — so a crash can neither lose a tick nor record it twice::

            with journal.transaction():
                journal.runs.insert_new(runs)
                journal.routines.advance(advances)
        """
        with self._write() as db:
            db.executemany(
                "UPDATE routine_state SET last_nominal_ms = ?, next_nominal_ms = ?,"
                " next_fire_ms = ? WHERE routine_id = ?",
                [
                    (a.last_nominal_ms, a.next_nominal_ms, a.next_fire_ms, a.routine_id)
                    for a in advances
                ],
            )
