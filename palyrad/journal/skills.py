"""Skill audit state (``skill_audits``) and operators' quarantines (``skill_quarantines``).

The installed skills themselves live in ``skills/installed-index.json`` (hand-editable, like
definitions.json); the journal keeps what the daemon learnt about them: each version's last
audit, and which skill ids an operator quarantined. Every change bumps
``STATE_SKILLS_CHANGED`` in the same transaction, so a process holding a copy (the executor)
notices with one primary-key read.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from palyrad.journal.connection import Domain
from palyrad.journal.records import SkillAudit, SkillQuarantine
from palyrad.journal.state import STATE_SKILLS_CHANGED, bump_counter, read_counter


class Skills(Domain):
    """Audits per (skill_id, version) and sticky operator quarantines per skill_id."""

    __slots__ = ()

    def audits(self) -> dict[tuple[str, str], SkillAudit]:
        """Every recorded audit, by (skill_id, version)."""
        rows = self._db.execute(
            "SELECT skill_id, version, state, reason, audited_key, last_audit_ms FROM skill_audits"
        )
        return {(r[0], r[1]): SkillAudit(r[0], r[1], r[2], r[3], r[4], r[5]) for r in rows}

    def audit(self, skill_id: str, version: str) -> SkillAudit | None:
        row = self._db.execute(
            "SELECT skill_id, version, state, reason, audited_key, last_audit_ms"
            " FROM skill_audits WHERE skill_id = ? AND version = ?",
            (skill_id, version),
        ).fetchone()
        return None if row is None else SkillAudit(*row)

    def record(self, audits: Sequence[SkillAudit], forget: Iterable[tuple[str, str]] = ()) -> None:
        """Store audit results (replacing earlier ones) and forget versions no longer
        installed, in one transaction."""
        with self._write() as db:
            db.executemany(
                "INSERT INTO skill_audits (skill_id, version, state, reason, audited_key,"
                " last_audit_ms) VALUES (?, ?, ?, ?, ?, ?)"
                " ON CONFLICT(skill_id, version) DO UPDATE SET state = excluded.state,"
                " reason = excluded.reason, audited_key = excluded.audited_key,"
                " last_audit_ms = excluded.last_audit_ms",
                [
                    (a.skill_id, a.version, a.state, a.reason, a.audited_key, a.last_audit_ms)
                    for a in audits
                ],
            )
            db.executemany(
                "DELETE FROM skill_audits WHERE skill_id = ? AND version = ?", list(forget)
            )
            bump_counter(
                db, STATE_SKILLS_CHANGED, max((a.last_audit_ms for a in audits), default=0)
            )

    def quarantines(self) -> dict[str, SkillQuarantine]:
        """Operators' quarantines, by skill id."""
        rows = self._db.execute("SELECT skill_id, reason, at_ms FROM skill_quarantines")
        return {r[0]: SkillQuarantine(r[0], r[1], r[2]) for r in rows}

    def quarantine(self, skill_id: str, reason: str | None, now_ms: int) -> None:
        """An operator's quarantine of every version of ``skill_id`` (kept until released)."""
        with self._write() as db:
            db.execute(
                "INSERT INTO skill_quarantines (skill_id, reason, at_ms) VALUES (?, ?, ?)"
                " ON CONFLICT(skill_id) DO UPDATE SET reason = excluded.reason,"
                " at_ms = excluded.at_ms",
                (skill_id, reason, now_ms),
            )
            bump_counter(db, STATE_SKILLS_CHANGED, now_ms)

    def release(self, skill_id: str, now_ms: int) -> bool:
        """Lift an operator's quarantine; False when there was none."""
        with self._write() as db:
            cur = db.execute("DELETE FROM skill_quarantines WHERE skill_id = ?", (skill_id,))
            bump_counter(db, STATE_SKILLS_CHANGED, now_ms)
            return cur.rowcount > 0

    def changes(self) -> int:
        """The change counter (``STATE_SKILLS_CHANGED``)."""
        return read_counter(self._db, STATE_SKILLS_CHANGED)
