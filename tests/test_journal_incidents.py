"""The journal's incidents domain (SPEC §4.6, §6 "Self-healing"): at most one open incident
per (domain, subject), severity that only escalates, numbered remediation attempts, the
incident JSON object, pruning and the change counter."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from palyrad.journal import (
    SCHEMA_VERSION,
    STATE_INCIDENTS_CHANGED,
    Incident,
    Journal,
    RemediationAttempt,
    connection,
    incident_to_json,
)
from palyrad.journal.migrations import MIGRATIONS

T0 = 1_700_000_000_000  # 2023-11-14T22:13:20Z


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    return Journal(tmp_path / "j.sqlite3")


def _open(
    journal: Journal,
    incident_id: str = "inc1",
    subject: str = "run-1",
    *,
    domain: str = "run",
    severity: str = "warning",
    summary: str = "heartbeat stale",
    now_ms: int = T0,
) -> tuple[Incident, bool]:
    return journal.incidents.open(incident_id, domain, subject, severity, summary, now_ms)


# --- migration -------------------------------------------------------------------------------


def test_migration_applies_on_a_fresh_journal(journal: Journal) -> None:
    assert SCHEMA_VERSION == len(MIGRATIONS) >= 5
    assert journal.schema_version() == SCHEMA_VERSION
    tables = {
        r[0] for r in journal.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    }
    assert {"incidents", "incident_remediations"} <= tables


def test_migration_applies_on_a_journal_at_the_previous_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "old.sqlite3"
    with monkeypatch.context() as m:  # a journal written by the Palyra before migration 5
        m.setattr(connection, "MIGRATIONS", MIGRATIONS[:4])
        m.setattr(connection, "SCHEMA_VERSION", 4)
        old = Journal(path)
        assert old.schema_version() == 4
        old.close()
    j = Journal(path)
    assert j.schema_version() == SCHEMA_VERSION
    assert _open(j)[1] is True


def test_the_schema_admits_one_open_incident_per_subject(journal: Journal) -> None:
    _open(journal)
    insert = "INSERT INTO incidents VALUES (?, 'run', 'run-1', 'warning', ?, 's', 1, ?)"
    with pytest.raises(sqlite3.IntegrityError):
        journal.db.execute(insert, ("inc2", "open", None))
    journal.db.execute(insert, ("inc3", "resolved", 2))  # resolved ones do not count
    with pytest.raises(sqlite3.IntegrityError):  # a resolved incident has its time
        journal.db.execute(insert, ("inc4", "resolved", None))


def test_unknown_domain_severity_or_outcome_is_refused(journal: Journal) -> None:
    with pytest.raises(ValueError, match="domain"):
        _open(journal, domain="weather")
    with pytest.raises(ValueError, match="severity"):
        _open(journal, severity="fatal")
    _open(journal)
    with pytest.raises(ValueError, match="outcome"):
        journal.incidents.record_attempt("inc1", "kill", "maybe", "", T0)
    with pytest.raises(KeyError):
        journal.incidents.record_attempt("nope", "kill", "failed", "", T0)
    assert journal.incidents.all() == [journal.incidents.get("inc1")]


# --- open / resolve --------------------------------------------------------------------------


def test_open_twice_is_one_incident(journal: Journal) -> None:
    first, opened = _open(journal)
    assert opened is True
    assert first == Incident("inc1", "run", "run-1", "warning", "open", "heartbeat stale", T0)
    again, opened = _open(journal, "inc2", now_ms=T0 + 5)
    assert (again, opened) == (first, False)
    assert journal.incidents.get("inc2") is None
    assert journal.incidents.open_incidents() == [first]
    # another subject, or the same subject in another domain, is another incident
    assert _open(journal, "inc3", "run-2")[1] is True
    assert _open(journal, "inc4", "run-1", domain="task")[1] is True
    assert len(journal.incidents.open_incidents()) == 3


def test_severity_only_escalates_and_the_summary_follows(journal: Journal) -> None:
    _open(journal)
    up, opened = _open(journal, "x", severity="critical", summary="dead for 5 min")
    assert not opened and (up.severity, up.summary) == ("critical", "dead for 5 min")
    down, _ = _open(journal, "y", severity="warning", summary="dead for 6 min")
    assert (down.incident_id, down.severity, down.summary) == (
        "inc1",
        "critical",
        "dead for 6 min",
    )
    assert down.opened_ms == T0


def test_resolve_then_open_again_is_a_new_incident(journal: Journal) -> None:
    assert journal.incidents.resolve("run", "run-1", T0) is None
    _open(journal)
    resolved = journal.incidents.resolve("run", "run-1", T0 + 1_000)
    assert resolved is not None
    assert (resolved.incident_id, resolved.state, resolved.resolved_ms) == (
        "inc1",
        "resolved",
        T0 + 1_000,
    )
    assert journal.incidents.resolve("run", "run-1", T0 + 2_000) is None
    assert journal.incidents.open_incidents() == []
    again, opened = _open(journal, "inc2", now_ms=T0 + 3_000)
    assert opened and again.incident_id == "inc2" and again.state == "open"
    assert [i.incident_id for i in journal.incidents.all()] == ["inc2", "inc1"]
    assert journal.incidents.get("inc1") == resolved


def test_a_second_connection_racing_open_gets_the_same_incident(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    Journal(path).close()
    contenders = 6
    barrier = threading.Barrier(contenders)
    results: list[tuple[Incident, bool]] = []
    lock = threading.Lock()

    def contend(n: int) -> None:
        j = Journal(path)
        try:
            barrier.wait()
            got = j.incidents.open(f"inc{n}", "process", "executor", "critical", "silent", T0)
            with lock:
                results.append(got)
        finally:
            j.close()

    threads = [threading.Thread(target=contend, args=(n,)) for n in range(contenders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(results) == contenders
    assert sum(opened for _, opened in results) == 1
    assert len({incident.incident_id for incident, _ in results}) == 1
    j = Journal(path)
    rows = j.db.execute("SELECT COUNT(*) FROM incidents WHERE state = 'open'").fetchone()
    assert rows[0] == 1
    assert j.incidents.version() == 1


# --- attempts --------------------------------------------------------------------------------


def test_attempts_are_numbered_and_returned_in_order(journal: Journal) -> None:
    _open(journal)
    _open(journal, "other", "run-2")
    inc = journal.incidents
    inc.record_attempt("inc1", "kill_process_group", "failed", "ESRCH", T0 + 10)
    inc.record_attempt("other", "kill_process_group", "skipped", "observe_only", T0 + 15)
    inc.record_attempt("inc1", "fail_run", "succeeded", "", T0 + 20)
    inc.record_attempt("inc1", "fail_run", "skipped", "already final", T0 + 5)  # clock skew
    seqs = journal.db.execute(
        "SELECT seq FROM incident_remediations WHERE incident_id = 'inc1' ORDER BY seq"
    ).fetchall()
    assert [s[0] for s in seqs] == [1, 2, 3]
    got = inc.get("inc1")
    assert got is not None
    assert got.remediations == (
        RemediationAttempt("kill_process_group", T0 + 10, "failed", "ESRCH"),
        RemediationAttempt("fail_run", T0 + 20, "succeeded", ""),
        RemediationAttempt("fail_run", T0 + 5, "skipped", "already final"),
    )
    assert [len(i.remediations) for i in inc.open_incidents()] == [1, 3]  # tie: id desc
    assert _open(journal)[0].remediations == got.remediations
    assert inc.recent_attempts("run", "run-1", T0 + 10) == 2
    assert inc.recent_attempts("run", "run-1", 0) == 3
    assert inc.recent_attempts("run", "run-9", 0) == 0
    # a resolved incident's attempts no longer count; a new incident starts from 1
    inc.resolve("run", "run-1", T0 + 30)
    assert inc.recent_attempts("run", "run-1", 0) == 0
    inc.record_attempt("inc1", "fail_run", "succeeded", "late", T0 + 31)  # kept
    _open(journal, "inc2", now_ms=T0 + 40)
    inc.record_attempt("inc2", "fail_run", "succeeded", "", T0 + 41)
    assert inc.recent_attempts("run", "run-1", 0) == 1
    new = inc.get("inc2")
    assert new is not None and len(new.remediations) == 1
    old = inc.get("inc1")
    assert old is not None and len(old.remediations) == 4


# --- listing, JSON, prune, counter -----------------------------------------------------------


def test_listing_is_newest_first_and_limited(journal: Journal) -> None:
    for n in range(5):
        _open(journal, f"inc{n}", f"s{n}", now_ms=T0 + n)
    journal.incidents.resolve("run", "s1", T0 + 10)
    journal.incidents.resolve("run", "s3", T0 + 10)
    assert [i.incident_id for i in journal.incidents.open_incidents()] == [
        "inc4",
        "inc2",
        "inc0",
    ]
    assert [i.incident_id for i in journal.incidents.all()] == [f"inc{n}" for n in range(4, -1, -1)]
    assert [i.incident_id for i in journal.incidents.all(limit=2)] == ["inc4", "inc3"]


def test_incident_json_is_the_spec_object(journal: Journal) -> None:
    _open(journal, domain="process", subject="executor", severity="critical", summary="silent")
    journal.incidents.record_attempt("inc1", "restart_process", "succeeded", "pid 42", T0 + 250)
    open_incident = journal.incidents.get("inc1")
    assert open_incident is not None
    assert incident_to_json(open_incident) == {
        "incident_id": "inc1",
        "domain": "process",
        "subject": "executor",
        "severity": "critical",
        "state": "open",
        "summary": "silent",
        "opened_at": "2023-11-14T22:13:20.000+00:00",
        "opened_at_unix_ms": T0,
        "resolved_at": None,
        "resolved_at_unix_ms": None,
        "remediations": [
            {
                "action": "restart_process",
                "at": "2023-11-14T22:13:20.250+00:00",
                "at_unix_ms": T0 + 250,
                "outcome": "succeeded",
                "detail": "pid 42",
            }
        ],
    }
    resolved = journal.incidents.resolve("process", "executor", T0 + 60_000)
    assert resolved is not None
    out = incident_to_json(resolved)
    assert (out["state"], out["resolved_at"], out["resolved_at_unix_ms"]) == (
        "resolved",
        "2023-11-14T22:14:20.000+00:00",
        T0 + 60_000,
    )
    assert len(out["remediations"]) == 1


def test_prune_deletes_old_resolved_incidents_and_their_attempts(journal: Journal) -> None:
    inc = journal.incidents
    _open(journal, "old", "a")
    inc.record_attempt("old", "fail_run", "succeeded", "", T0 + 1)
    inc.resolve("run", "a", T0 + 100)
    _open(journal, "recent", "b")
    inc.resolve("run", "b", T0 + 200)
    _open(journal, "still_open", "c", now_ms=T0 - 1_000_000)
    inc.record_attempt("still_open", "fail_run", "failed", "", T0 + 2)
    assert inc.prune(T0 + 100) == 0  # resolved *before* the time
    assert inc.prune(T0 + 150) == 1
    assert inc.get("old") is None
    assert {i.incident_id for i in inc.all()} == {"recent", "still_open"}
    left = journal.db.execute("SELECT incident_id FROM incident_remediations").fetchall()
    assert [r[0] for r in left] == ["still_open"]
    assert inc.prune(T0 + 10**9) == 1
    assert [i.incident_id for i in inc.all()] == ["still_open"]


def test_changes_bump_the_counter(journal: Journal) -> None:
    inc = journal.incidents
    assert inc.version() == 0
    _open(journal)
    assert inc.version() == 1
    _open(journal, "x")  # the same report again: no change
    assert inc.version() == 1
    _open(journal, "x", summary="still stale")  # a new summary
    assert inc.version() == 2
    _open(journal, "x", summary="still stale", severity="critical")  # escalation
    assert inc.version() == 3
    _open(journal, "x", summary="still stale", severity="warning")  # never down: no change
    assert inc.version() == 3
    inc.record_attempt("inc1", "fail_run", "succeeded", "", T0 + 1)
    assert inc.version() == 4
    inc.resolve("run", "run-1", T0 + 2)
    assert inc.version() == 5
    inc.resolve("run", "run-1", T0 + 3)  # nothing open
    assert inc.version() == 5
    assert journal.state.get(STATE_INCIDENTS_CHANGED) == "5"


def test_open_rolls_back_with_the_callers_transaction(journal: Journal) -> None:
    with pytest.raises(RuntimeError), journal.transaction():
        _open(journal)
        raise RuntimeError("boom")
    assert journal.incidents.all() == [] and journal.incidents.version() == 0
