"""Learning candidates and reflections (SPEC §4.8, §6 "Learning").

A reflection row per run says its output was read (so a retried ``post_run_reflection``
records nothing twice) and how many candidates it recorded (the per-routine cooldown counts
from the last reflection that recorded any). Candidates are unique per (run, line): the
same line of the same run is one candidate however often it is read. Writing a candidate's
memory item is the caller's, in the same transaction (``palyrad.ops.learning``).
"""

from __future__ import annotations

from collections.abc import Sequence

from palyrad.journal.connection import Domain
from palyrad.journal.records import LearningCandidate

_CANDIDATE = (
    "candidate_id, run_id, line_no, routine_id, kind, text, confidence, created_ms, status,"
    " decided_ms, item_id"
)


def _candidate(row: Sequence[object]) -> LearningCandidate:
    return LearningCandidate(
        candidate_id=str(row[0]),
        run_id=str(row[1]),
        line_no=int(row[2]),  # type: ignore[call-overload]
        routine_id=str(row[3]),
        kind=str(row[4]),
        text=str(row[5]),
        confidence=float(row[6]),  # type: ignore[arg-type]
        created_ms=int(row[7]),  # type: ignore[call-overload]
        status=str(row[8]),
        decided_ms=None if row[9] is None else int(row[9]),  # type: ignore[call-overload]
        item_id=None if row[10] is None else str(row[10]),
    )


class Learning(Domain):
    """Reflections (one per run read) and the candidates they recorded."""

    __slots__ = ()

    def begin_reflection(
        self, run_id: str, routine_id: str, now_ms: int, recorded: int, problems: str | None = None
    ) -> bool:
        """Record that ``run_id``'s output was read (and the problems reported); False when
        it already was (a retry: record nothing)."""
        with self._write() as db:
            cur = db.execute(
                "INSERT OR IGNORE INTO learning_reflections (run_id, routine_id, at_ms, recorded,"
                " problems) VALUES (?, ?, ?, ?, ?)",
                (run_id, routine_id, now_ms, recorded, problems),
            )
            return cur.rowcount == 1

    def reflected(self, run_id: str) -> bool:
        row = self._db.execute(
            "SELECT 1 FROM learning_reflections WHERE run_id = ?", (run_id,)
        ).fetchone()
        return row is not None

    def reported(self, run_id: str) -> str | None:
        """The problems ``run_id``'s reflection reported (None: none, or not reflected)."""
        row = self._db.execute(
            "SELECT problems FROM learning_reflections WHERE run_id = ?", (run_id,)
        ).fetchone()
        return None if row is None or row[0] is None else str(row[0])

    def last_learned_ms(self, routine_id: str) -> int | None:
        """When a run of ``routine_id`` last recorded candidates (the cooldown's start)."""
        row = self._db.execute(
            "SELECT MAX(at_ms) FROM learning_reflections WHERE routine_id = ? AND recorded > 0",
            (routine_id,),
        ).fetchone()
        return None if row[0] is None else int(row[0])

    def add(self, candidate: LearningCandidate) -> None:
        with self._write() as db:
            db.execute(
                f"INSERT INTO learning_candidates ({_CANDIDATE})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    candidate.candidate_id,
                    candidate.run_id,
                    candidate.line_no,
                    candidate.routine_id,
                    candidate.kind,
                    candidate.text,
                    candidate.confidence,
                    candidate.created_ms,
                    candidate.status,
                    candidate.decided_ms,
                    candidate.item_id,
                ),
            )

    def get(self, candidate_id: str) -> LearningCandidate | None:
        row = self._db.execute(
            f"SELECT {_CANDIDATE} FROM learning_candidates WHERE candidate_id = ?",
            (candidate_id,),
        ).fetchone()
        return None if row is None else _candidate(row)

    def of_run(self, run_id: str) -> list[LearningCandidate]:
        rows = self._db.execute(
            f"SELECT {_CANDIDATE} FROM learning_candidates WHERE run_id = ? ORDER BY line_no",
            (run_id,),
        )
        return [_candidate(r) for r in rows]

    def pending(self, limit: int) -> list[LearningCandidate]:
        """Candidates waiting for an operator, oldest first."""
        rows = self._db.execute(
            f"SELECT {_CANDIDATE} FROM learning_candidates WHERE status = 'pending'"
            " ORDER BY created_ms, candidate_id LIMIT ?",
            (limit,),
        )
        return [_candidate(r) for r in rows]

    def pending_count(self) -> int:
        row = self._db.execute(
            "SELECT COUNT(*) FROM learning_candidates WHERE status = 'pending'"
        ).fetchone()
        return int(row[0])

    def decide(self, candidate_id: str, status: str, now_ms: int, item_id: str | None) -> bool:
        """Accept or reject a pending candidate; False when it is not pending (decided
        already, or unknown)."""
        with self._write() as db:
            cur = db.execute(
                "UPDATE learning_candidates SET status = ?, decided_ms = ?, item_id = ?"
                " WHERE candidate_id = ? AND status = 'pending'",
                (status, now_ms, item_id, candidate_id),
            )
            return cur.rowcount == 1

    def prune(self, reflections_before_ms: int, candidates_before_ms: int, limit: int) -> int:
        """Forget up to ``limit`` reflections older than ``reflections_before_ms`` and up to
        ``limit`` candidates (decided or not) created before ``candidates_before_ms``."""
        with self._write() as db:
            cur = db.execute(
                "DELETE FROM learning_reflections WHERE run_id IN (SELECT run_id FROM"
                " learning_reflections WHERE at_ms < ? LIMIT ?)",
                (reflections_before_ms, limit),
            )
            gone = cur.rowcount
            cur = db.execute(
                "DELETE FROM learning_candidates WHERE candidate_id IN (SELECT candidate_id"
                " FROM learning_candidates WHERE created_ms < ? LIMIT ?)",
                (candidates_before_ms, limit),
            )
            return gone + cur.rowcount
