"""Self-healing incidents (``incidents``) and their remediation attempts
(``incident_remediations``), SPEC §4.6 and §6 "Self-healing".

At most one incident is open per (domain, subject): a partial UNIQUE index enforces it, and
``open`` is one write transaction that inserts only when none is open (``INSERT … ON
CONFLICT DO NOTHING`` on that index), so two processes racing to open the same incident
get the same one. While open, an incident's severity only escalates (warning → critical)
and its summary follows the latest report. Every open, escalation, resolution and
remediation attempt bumps ``STATE_INCIDENTS_CHANGED`` in the same transaction.

``incident_to_json`` is the incident object of SPEC §4.6 (``palyra incidents list/show``
and the payload of the ``incident.opened`` / ``incident.resolved`` system events).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from typing import Any

from palyrad.journal.connection import Domain
from palyrad.journal.records import Incident, RemediationAttempt
from palyrad.journal.state import STATE_INCIDENTS_CHANGED, bump_counter, read_counter
from routines.timefmt import format_rfc3339

INCIDENT_DOMAINS = frozenset(
    {"run", "task", "process", "node_stream", "definitions", "skills", "disk", "journal"}
)
SEVERITIES = ("warning", "critical")  # in escalating order
OUTCOMES = frozenset({"succeeded", "failed", "skipped"})
DEFAULT_LIST_LIMIT = 200
_IN_CHUNK = 500  # incident ids per "IN (…)" when loading attempts (well under SQLite's limit)

_COLUMNS = "incident_id, domain, subject, severity, state, summary, opened_ms, resolved_ms"
_SELECT = f"SELECT {_COLUMNS} FROM incidents"
_NEWEST_FIRST = " ORDER BY opened_ms DESC, incident_id DESC"
_INSERT = (
    f"INSERT INTO incidents ({_COLUMNS}) VALUES (?, ?, ?, ?, 'open', ?, ?, NULL)"
    " ON CONFLICT(domain, subject) WHERE state = 'open' DO NOTHING"
)
# An open incident reported again: escalate (never lower) and take the new summary; the
# WHERE makes an unchanged report write nothing (and bump nothing).
_REFRESH = (
    "UPDATE incidents SET summary = ?1,"
    " severity = CASE WHEN ?2 = 'critical' THEN 'critical' ELSE severity END"
    " WHERE domain = ?3 AND subject = ?4 AND state = 'open'"
    " AND (summary != ?1 OR (?2 = 'critical' AND severity != 'critical'))"
)
_RESOLVE = (
    "UPDATE incidents SET state = 'resolved', resolved_ms = ?"
    f" WHERE domain = ? AND subject = ? AND state = 'open' RETURNING {_COLUMNS}"
)
_ATTEMPT = (
    "INSERT INTO incident_remediations (incident_id, seq, action, at_ms, outcome, detail)"
    " SELECT ?1, COALESCE(MAX(seq), 0) + 1, ?2, ?3, ?4, ?5 FROM incident_remediations"
    " WHERE incident_id = ?1"
)


def _check(value: str, allowed: Sequence[str] | frozenset[str], what: str) -> None:
    if value not in allowed:
        raise ValueError(f"unknown incident {what} {value!r} (one of {sorted(allowed)})")


def _time(ms: int | None) -> str | None:
    return None if ms is None else format_rfc3339(ms, always_ms=True)


def incident_to_json(incident: Incident) -> dict[str, Any]:
    """The incident object of SPEC §4.6, with ``*_unix_ms`` twins of its times (as runs
    and approvals have)."""
    i = incident
    return {
        "incident_id": i.incident_id,
        "domain": i.domain,
        "subject": i.subject,
        "severity": i.severity,
        "state": i.state,
        "summary": i.summary,
        "opened_at": _time(i.opened_ms),
        "opened_at_unix_ms": i.opened_ms,
        "resolved_at": _time(i.resolved_ms),
        "resolved_at_unix_ms": i.resolved_ms,
        "remediations": [
            {
                "action": a.action,
                "at": _time(a.at_ms),
                "at_unix_ms": a.at_ms,
                "outcome": a.outcome,
                "detail": a.detail,
            }
            for a in i.remediations
        ],
    }


class Incidents(Domain):
    """Open, escalate, resolve and list incidents; record and count remediation attempts."""

    __slots__ = ()

    # --- writes ----------------------------------------------------------------------------

    def open(
        self,
        incident_id: str,
        domain: str,
        subject: str,
        severity: str,
        summary: str,
        now_ms: int,
    ) -> tuple[Incident, bool]:
        """The open incident of (``domain``, ``subject``) and whether this call opened it.
        ``incident_id`` (a ULID made by the caller) is used only when none was open;
        otherwise the open one is kept, escalated to ``critical`` if asked (never lowered)
        and given the new ``summary``. One write transaction."""
        _check(domain, INCIDENT_DOMAINS, "domain")
        _check(severity, SEVERITIES, "severity")
        with self._write() as db:
            cur = db.execute(_INSERT, (incident_id, domain, subject, severity, summary, now_ms))
            opened = bool(cur.rowcount)
            changed = opened or bool(
                db.execute(_REFRESH, (summary, severity, domain, subject)).rowcount
            )
            if changed:
                bump_counter(db, STATE_INCIDENTS_CHANGED, now_ms)
            row = db.execute(
                _SELECT + " WHERE domain = ? AND subject = ? AND state = 'open'",
                (domain, subject),
            ).fetchone()
            (incident,) = self._with_attempts(db, [row])
        return incident, opened

    def resolve(self, domain: str, subject: str, now_ms: int) -> Incident | None:
        """Resolve the open incident of (``domain``, ``subject``): the resolved incident, or
        None when none was open (nothing changes)."""
        with self._write() as db:
            row = db.execute(_RESOLVE, (now_ms, domain, subject)).fetchone()
            if row is None:
                return None
            bump_counter(db, STATE_INCIDENTS_CHANGED, now_ms)
            (incident,) = self._with_attempts(db, [row])
        return incident

    def record_attempt(
        self, incident_id: str, action: str, outcome: str, detail: str, now_ms: int
    ) -> None:
        """Append a remediation attempt (numbered after the incident's last one). An
        unknown incident raises ``KeyError``; an attempt on a resolved incident (a
        remediation that finished after its condition cleared) is kept."""
        _check(outcome, OUTCOMES, "outcome")
        with self._write() as db:
            known = db.execute("SELECT 1 FROM incidents WHERE incident_id = ?", (incident_id,))
            if known.fetchone() is None:
                raise KeyError(incident_id)
            db.execute(_ATTEMPT, (incident_id, action, now_ms, outcome, detail))
            bump_counter(db, STATE_INCIDENTS_CHANGED, now_ms)

    def prune(self, older_than_ms: int) -> int:
        """Delete the incidents resolved before ``older_than_ms``, with their attempts; how
        many incidents went. Open incidents are never pruned. (Moves no counter: no listed
        open incident changes.)"""
        with self._write() as db:
            db.execute(
                "DELETE FROM incident_remediations WHERE incident_id IN (SELECT incident_id"
                " FROM incidents WHERE state = 'resolved' AND resolved_ms < ?)",
                (older_than_ms,),
            )
            cur = db.execute(
                "DELETE FROM incidents WHERE state = 'resolved' AND resolved_ms < ?",
                (older_than_ms,),
            )
            return cur.rowcount

    # --- reads -----------------------------------------------------------------------------

    def get(self, incident_id: str) -> Incident | None:
        """The incident with its attempts, or None when it is unknown (or was pruned)."""
        row = self._db.execute(_SELECT + " WHERE incident_id = ?", (incident_id,)).fetchone()
        return None if row is None else self._with_attempts(self._db, [row])[0]

    def open_incidents(self) -> list[Incident]:
        """Every open incident, newest first."""
        rows = self._db.execute(_SELECT + " WHERE state = 'open'" + _NEWEST_FIRST).fetchall()
        return self._with_attempts(self._db, rows)

    def all(self, limit: int = DEFAULT_LIST_LIMIT) -> list[Incident]:
        """Open and resolved incidents, newest first, at most ``limit``."""
        rows = self._db.execute(_SELECT + _NEWEST_FIRST + " LIMIT ?", (limit,)).fetchall()
        return self._with_attempts(self._db, rows)

    def recent_attempts(self, domain: str, subject: str, since_ms: int) -> int:
        """How many remediation attempts the open incident of (``domain``, ``subject``)
        has had at or after ``since_ms`` (0 when none is open): a remediation's rate
        limit."""
        row = self._db.execute(
            "SELECT COUNT(*) FROM incident_remediations r JOIN incidents i"
            " ON i.incident_id = r.incident_id"
            " WHERE i.domain = ? AND i.subject = ? AND i.state = 'open' AND r.at_ms >= ?",
            (domain, subject, since_ms),
        ).fetchone()
        return int(row[0])

    def attempt_times(self, domain: str, subject: str, since_ms: int) -> list[int]:
        """When the remediations of (``domain``, ``subject``) were attempted at or after
        ``since_ms``, oldest first, across all its incidents — the open one and those that
        resolved since — leaving out ``skipped`` ones (no fix ran): the rate limit of a fix
        that clears its condition for a moment only (a service that runs, then crash-loops
        to ``fatal`` again, is a new incident each time)."""
        rows = self._db.execute(
            "SELECT r.at_ms FROM incident_remediations r WHERE r.incident_id IN ("
            " SELECT incident_id FROM incidents"
            " WHERE domain = ?1 AND subject = ?2 AND state = 'open'"
            " UNION ALL SELECT incident_id FROM incidents"
            " WHERE state = 'resolved' AND resolved_ms >= ?3 AND domain = ?1 AND subject = ?2)"
            " AND r.at_ms >= ?3 AND r.outcome != 'skipped' ORDER BY r.at_ms",
            (domain, subject, since_ms),
        ).fetchall()
        return [int(r[0]) for r in rows]

    def version(self) -> int:
        """The incidents' change counter (``STATE_INCIDENTS_CHANGED``)."""
        return read_counter(self._db, STATE_INCIDENTS_CHANGED)

    # --- helpers ---------------------------------------------------------------------------

    @staticmethod
    def _with_attempts(db: sqlite3.Connection, rows: Sequence[sqlite3.Row]) -> list[Incident]:
        """The incidents of ``rows`` (``_COLUMNS`` order) with their attempts, in order."""
        ids = [r[0] for r in rows]
        attempts: dict[str, list[RemediationAttempt]] = {}
        for start in range(0, len(ids), _IN_CHUNK):
            chunk = ids[start : start + _IN_CHUNK]
            marks = ", ".join("?" * len(chunk))
            for r in db.execute(
                "SELECT incident_id, action, at_ms, outcome, detail FROM incident_remediations"
                f" WHERE incident_id IN ({marks}) ORDER BY incident_id, seq",
                chunk,
            ):
                attempts.setdefault(r[0], []).append(RemediationAttempt(r[1], r[2], r[3], r[4]))
        return [
            Incident(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7], tuple(attempts.get(r[0], ())))
            for r in rows
        ]
