"""The journal: schema guarantees, fencing, replace of unstarted runs, pruning."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from palyrad.domain.runs import Run, RunStatus, new_ulid, retry_follow_up
from palyrad.journal import SCHEMA_VERSION, Journal, RoutineState


def _run(rid: str = "r", **kw: object) -> Run:
    run_id = new_ulid()
    base = Run(
        run_id=run_id,
        chain_id=run_id,
        routine_id=rid,
        attempt=1,
        trigger_kind="schedule",
        status="pending",
        queued_at_ms=1_000,
        spec='{"retry": {"max_attempts": 3, "backoff_ms": 100, "max_backoff_ms": 1000}}',
    )
    return replace(base, **kw)  # type: ignore[arg-type]


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    return Journal(tmp_path / "journal.sqlite3")


def test_wal_and_schema_version(journal: Journal) -> None:
    assert journal.pragma("journal_mode") == "wal"
    assert journal.schema_version() == SCHEMA_VERSION
    # re-opening migrates nothing twice
    again = Journal(journal.path)
    assert again.schema_version() == SCHEMA_VERSION


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    j = Journal(tmp_path / "j.sqlite3")
    with j.write() as db:
        db.execute("INSERT INTO schema_migrations VALUES (999, 0)")
    with pytest.raises(Exception, match="newer than this Palyra"):
        Journal(tmp_path / "j.sqlite3")


def test_a_tick_can_never_be_recorded_twice(journal: Journal) -> None:
    journal.sync_routine_states([RoutineState("r", "h", "k", True, 0, 1_000, 1_000, None)], [], 0)
    a = _run(scheduled_for_ms=1_000)
    b = _run(scheduled_for_ms=1_000)  # the same tick again (e.g. a retried claim)
    assert journal.record_ticks([a], [("r", 1_000, 2_000, 2_000)]) == 1
    assert journal.record_ticks([b], [("r", 1_000, 2_000, 2_000)]) == 0
    assert len(journal.runs_for_routine("r")) == 1
    with pytest.raises(sqlite3.IntegrityError):
        journal.insert_run(_run(scheduled_for_ms=1_000))


def test_lease_is_fenced_and_started_only_by_its_owner(journal: Journal) -> None:
    run = _run()
    journal.insert_run(run)
    assert journal.lease([run.run_id], "a", 1) == [run.run_id]
    assert journal.lease([run.run_id], "b", 1) == []
    assert not journal.mark_started(run.run_id, "b", 123, 5, "/x")
    assert journal.mark_started(run.run_id, "a", 123, 5, "/x")
    assert journal.get_run(run.run_id).status == "running"


def test_replace_cancels_a_run_that_has_not_started(journal: Journal) -> None:
    waiting = _run()
    leased = _run()
    running = _run()
    for r in (waiting, leased, running):
        journal.insert_run(r)
    journal.lease([leased.run_id, running.run_id], "ex", 1)
    journal.mark_started(running.run_id, "ex", 42, 2, "/log")
    assert journal.cancel_active_runs("r", 10) == 3
    assert journal.get_run(waiting.run_id).status == "cancelled"  # never started: at once
    # the leased one may not start any more; the running one is flagged for the executor
    assert not journal.mark_started(leased.run_id, "ex", 43, 11, "/log")
    assert set(journal.cancel_requested_ids("ex")) == {leased.run_id, running.run_id}


def test_retry_follow_up_is_inserted_with_the_finish(journal: Journal) -> None:
    run = _run(scheduled_for_ms=5_000)
    journal.insert_run(run)
    journal.lease([run.run_id], "ex", 1)
    journal.mark_started(run.run_id, "ex", 1, 2, "/l")
    follow = retry_follow_up(journal.get_run(run.run_id), "failed", 10_000)
    assert follow is not None and follow.attempt == 2 and follow.not_before_ms == 10_100
    assert follow.chain_id == run.run_id and follow.scheduled_for_ms == 5_000
    journal.finish_run(run.run_id, status=RunStatus.FAILED, finished_ms=10_000, follow_up=follow)
    runs = journal.runs_for_routine("r")
    assert [(r.attempt, r.status) for r in sorted(runs, key=lambda r: r.attempt)] == [
        (1, "failed"),
        (2, "pending"),
    ]
    # a retry wait is active for concurrency and keeps the chain's place in line
    assert journal.active_counts() == {"r": 1}
    assert journal.active_heads() == {"r": run.run_id}
    assert retry_follow_up(journal.get_run(run.run_id), "cancelled", 10_000) is None


def test_prune_keeps_the_newest_per_routine_and_active_runs(journal: Journal) -> None:
    from palyrad.domain.runs import ulid_floor

    day = 86_400_000
    # five finished runs queued on days 1..5, and one still active
    runs = [
        _run(
            run_id=ulid_floor(k * day),
            status="succeeded",
            finished_at_ms=k * day,
            log_path=f"/l{k}",
        )
        for k in range(1, 6)
    ]
    active = _run()
    for r in [*runs, active]:
        journal.insert_run(r)
    removed = journal.prune_runs(max_per_routine=2, older_than_ms=0, batch=2)
    assert sorted(removed) == ["/l1", "/l2", "/l3", "/l4"]
    left = {r.run_id for r in journal.runs_for_routine("r")}
    assert left == {runs[4].run_id, active.run_id}
    # the age limit goes by when the run was queued (its ULID)
    assert journal.prune_runs(max_per_routine=100, older_than_ms=5 * day) == []
    assert journal.prune_runs(max_per_routine=100, older_than_ms=5 * day + 1) == ["/l5"]
    assert journal.get_run(active.run_id) is not None


@pytest.mark.parametrize(
    ("reason", "code", "status", "kind"),
    [
        (None, 0, "succeeded", None),
        (None, 3, "failed", "exit_code"),
        (None, -9, "failed", "exit_code"),
        ("timeout", -15, "failed", "timeout"),
        ("cancelled", -15, "cancelled", "cancelled"),
        ("daemon_stopped", -15, "failed", "daemon_stopped"),
        # a run that had already exited 0 when the stop came is a success, not a failure
        # the retry policy would run again
        ("daemon_stopped", 0, "succeeded", None),
    ],
)
def test_outcome_classification(
    reason: str | None, code: int, status: str, kind: str | None
) -> None:
    from palyrad.services.executor.finalize import classify_outcome

    got_status, got_kind, _ = classify_outcome(reason, code)
    assert (got_status.value, got_kind) == (status, kind)


def test_a_leased_run_cancelled_before_it_started_is_finalized_not_released(
    journal: Journal,
) -> None:
    run = _run(decided=True)
    journal.insert_run(run)
    assert journal.lease([run.run_id], "executor:dead", 2_000) == [run.run_id]
    journal.request_cancel(run.run_id)  # leased: only flagged for the executor
    # The executor died before it saw the flag; the next one recovers.
    journal.release_foreign_leases("executor:new", 3_000)
    got = journal.get_run(run.run_id)
    assert got is not None and got.status == "cancelled" and got.finished_at_ms == 3_000
    assert journal.runnable_pending(10_000, 10) == [] and journal.next_pending_ms() is None
    # The same on a graceful release.
    other = _run(decided=True)
    journal.insert_run(other)
    journal.lease([other.run_id], "executor:a", 2_000)
    journal.request_cancel(other.run_id)
    journal.release_lease(other.run_id, "executor:a", 4_000)
    got = journal.get_run(other.run_id)
    assert got is not None and got.status == "cancelled"
