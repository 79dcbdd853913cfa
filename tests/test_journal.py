"""The journal: schema guarantees, fencing, replace of unstarted runs, pruning."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path

import pytest

from palyrad.domain.runs import Run, RunStatus, new_ulid, retry_follow_up
from palyrad.journal import (
    SCHEMA_VERSION,
    STATE_APPROVALS_CHANGED,
    ApprovalRequest,
    Event,
    Journal,
    OutboxItem,
    PendingApproval,
    ProcessHeartbeat,
    RoutineAdvance,
    RoutineState,
    RunDecision,
)


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


def _record_ticks(journal: Journal, runs: list[Run], advances: list[RoutineAdvance]) -> int:
    """What the scheduler does for due ticks: the runs and the advances, atomically."""
    with journal.transaction():
        inserted = journal.runs.insert_new(runs)
        journal.routines.advance(advances)
    return inserted


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
    journal.routines.sync([RoutineState("r", "h", "k", True, 0, 1_000, 1_000, None)], [], 0)
    a = _run(scheduled_for_ms=1_000)
    b = _run(scheduled_for_ms=1_000)  # the same tick again (e.g. a retried claim)
    assert _record_ticks(journal, [a], [RoutineAdvance("r", 1_000, 2_000, 2_000)]) == 1
    assert _record_ticks(journal, [b], [RoutineAdvance("r", 1_000, 2_000, 2_000)]) == 0
    assert len(journal.runs.for_routine("r")) == 1
    with pytest.raises(sqlite3.IntegrityError):
        journal.runs.insert(_run(scheduled_for_ms=1_000))


def test_lease_is_fenced_and_started_only_by_its_owner(journal: Journal) -> None:
    run = _run()
    journal.runs.insert(run)
    assert journal.leases.acquire([run.run_id], "a", 1) == [run.run_id]
    assert journal.leases.acquire([run.run_id], "b", 1) == []
    assert not journal.leases.mark_started(run.run_id, "b", 123, 5, "/x")
    assert journal.leases.mark_started(run.run_id, "a", 123, 5, "/x")
    assert journal.runs.get(run.run_id).status == "running"


def test_replace_cancels_a_run_that_has_not_started(journal: Journal) -> None:
    waiting = _run()
    leased = _run()
    running = _run()
    for r in (waiting, leased, running):
        journal.runs.insert(r)
    journal.leases.acquire([leased.run_id, running.run_id], "ex", 1)
    journal.leases.mark_started(running.run_id, "ex", 42, 2, "/log")
    assert journal.runs.cancel_active("r", 10) == 3
    assert journal.runs.get(waiting.run_id).status == "cancelled"  # never started: at once
    # the leased one may not start any more; the running one is flagged for the executor
    assert not journal.leases.mark_started(leased.run_id, "ex", 43, 11, "/log")
    assert set(journal.leases.cancel_requested("ex")) == {leased.run_id, running.run_id}


def test_retry_follow_up_is_inserted_with_the_finish(journal: Journal) -> None:
    run = _run(scheduled_for_ms=5_000)
    journal.runs.insert(run)
    journal.leases.acquire([run.run_id], "ex", 1)
    journal.leases.mark_started(run.run_id, "ex", 1, 2, "/l")
    follow = retry_follow_up(journal.runs.get(run.run_id), "failed", 10_000)
    assert follow is not None and follow.attempt == 2 and follow.not_before_ms == 10_100
    assert follow.chain_id == run.run_id and follow.scheduled_for_ms == 5_000
    journal.runs.finish(run.run_id, status=RunStatus.FAILED, finished_ms=10_000, follow_up=follow)
    runs = journal.runs.for_routine("r")
    assert [(r.attempt, r.status) for r in sorted(runs, key=lambda r: r.attempt)] == [
        (1, "failed"),
        (2, "pending"),
    ]
    # a retry wait is active for concurrency and keeps the chain's place in line
    assert journal.runs.active_counts() == {"r": 1}
    assert journal.runs.active_heads() == {"r": run.run_id}
    assert retry_follow_up(journal.runs.get(run.run_id), "cancelled", 10_000) is None


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
        journal.runs.insert(r)
    removed = journal.runs.prune(max_per_routine=2, older_than_ms=0, batch=2)
    assert sorted(removed) == ["/l1", "/l2", "/l3", "/l4"]
    left = {r.run_id for r in journal.runs.for_routine("r")}
    assert left == {runs[4].run_id, active.run_id}
    # the age limit goes by when the run was queued (its ULID)
    assert journal.runs.prune(max_per_routine=100, older_than_ms=5 * day) == []
    assert journal.runs.prune(max_per_routine=100, older_than_ms=5 * day + 1) == ["/l5"]
    assert journal.runs.get(active.run_id) is not None


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
    journal.runs.insert(run)
    assert journal.leases.acquire([run.run_id], "executor:dead", 2_000) == [run.run_id]
    journal.runs.request_cancel(run.run_id)  # leased: only flagged for the executor
    # The executor died before it saw the flag; the next one recovers.
    journal.leases.release_foreign("executor:new", 3_000)
    got = journal.runs.get(run.run_id)
    assert got is not None and got.status == "cancelled" and got.finished_at_ms == 3_000
    assert journal.leases.runnable(10_000, 10) == [] and journal.leases.next_runnable_ms() is None
    # The same on a graceful release.
    other = _run(decided=True)
    journal.runs.insert(other)
    journal.leases.acquire([other.run_id], "executor:a", 2_000)
    journal.runs.request_cancel(other.run_id)
    journal.leases.release(other.run_id, "executor:a", 4_000)
    got = journal.runs.get(other.run_id)
    assert got is not None and got.status == "cancelled"


# --- transactions spanning domains ----------------------------------------------------------


def _write_one_of_each(journal: Journal, run: Run) -> None:
    journal.runs.insert(run)
    journal.routines.advance([RoutineAdvance("r", 1_000, 2_000, 2_000)])
    journal.events.emit("e", None, 1)
    journal.state.set("k", "v", 1)
    journal.approvals.grant("r", "h", "before_first_run", 1)


def test_a_transaction_commits_every_domains_write_at_once(
    journal: Journal, tmp_path: Path
) -> None:
    journal.routines.sync([RoutineState("r", "h", "k", True, 0, 1_000, 1_000, None)], [], 0)
    other = Journal(journal.path)  # another process's view
    run = _run()
    with journal.transaction() as tx:
        assert tx is journal
        _write_one_of_each(journal, run)
        # nested writes joined the open transaction: nothing is committed yet
        assert other.runs.get(run.run_id) is None and other.state.get("k") is None
        assert journal.runs.get(run.run_id) is not None  # but this connection sees them
    assert other.runs.get(run.run_id) is not None
    assert other.state.get("k") == "v" and other.approvals.is_approved("r", "h")
    assert other.events.unconsumed(10)[0].name == "e"
    st = other.routines.get("r")
    assert st is not None and (st.last_nominal_ms, st.next_fire_ms) == (1_000, 2_000)
    other.close()


def test_a_failure_inside_a_transaction_rolls_back_every_domains_write(
    journal: Journal,
) -> None:
    journal.routines.sync([RoutineState("r", "h", "k", True, 0, 1_000, 1_000, None)], [], 0)
    run = _run()
    with pytest.raises(RuntimeError, match="boom"), journal.transaction():
        _write_one_of_each(journal, run)
        raise RuntimeError("boom")
    assert journal.runs.get(run.run_id) is None
    assert journal.state.get("k") is None and not journal.approvals.is_approved("r", "h")
    assert journal.events.unconsumed(10) == []
    st = journal.routines.get("r")
    assert st is not None and (st.last_nominal_ms, st.next_fire_ms) == (None, 1_000)
    # A failing statement rolls back the writes before it too (a duplicate tick here).
    dup = _run(scheduled_for_ms=1_000)
    journal.runs.insert(dup)
    with pytest.raises(sqlite3.IntegrityError), journal.transaction():
        journal.routines.advance([RoutineAdvance("r", 1_000, 2_000, 2_000)])
        journal.runs.insert_many([replace(dup, run_id=new_ulid())])
    st = journal.routines.get("r")
    assert st is not None and st.next_fire_ms == 1_000
    # and the connection is usable afterwards: a plain write commits on its own
    journal.state.set("after", "1", 2)
    assert Journal(journal.path).state.get("after") == "1"


def test_runs_for_events_and_the_events_consumption_are_one_write(journal: Journal) -> None:
    first = journal.events.emit("a", '{"x": 1}', 5)
    journal.events.emit("b", None, 6)
    got = journal.events.unconsumed(10)
    assert got[0] == Event(first, "a", '{"x": 1}', 5) and [e.name for e in got] == ["a", "b"]
    with journal.transaction():
        journal.runs.insert_many([_run(trigger_kind="system_event")])
        journal.events.consume([e.event_id for e in got], 7)
    assert journal.events.unconsumed(10) == [] and len(journal.runs.for_routine("r")) == 1
    journal.events.prune(8)  # consumed at 7: gone
    with journal.write() as db:
        assert db.execute("SELECT COUNT(*) FROM events").fetchone()[0] == 0


# --- typed records --------------------------------------------------------------------------


def test_decisions_are_applied_from_run_decision_records(journal: Journal) -> None:
    go, skip = _run(decided=False, spec=None), _run(decided=False, spec=None)
    journal.runs.insert_many([go, skip])
    assert [r.run_id for r in journal.runs.undecided(10)] == [go.run_id, skip.run_id]
    journal.runs.decide(
        [
            RunDecision(go.run_id, "pending", spec='{"action": 1}', definition_hash="h1"),
            RunDecision(skip.run_id, "skipped", "routine_disabled", "the routine is disabled"),
        ],
        now_ms=9_000,
    )
    assert journal.runs.undecided(10) == []
    a, b = journal.runs.get(go.run_id), journal.runs.get(skip.run_id)
    assert a is not None and b is not None
    assert (a.decided, a.status, a.spec, a.definition_hash, a.finished_at_ms) == (
        True,
        "pending",
        '{"action": 1}',
        "h1",
        None,
    )
    assert (b.status, b.error_kind, b.error_message, b.finished_at_ms) == (
        "skipped",
        "routine_disabled",
        "the routine is disabled",
        9_000,  # a final decision stamps finished_at
    )
    assert journal.runs.active_counts() == {"r": 1}


def test_approval_requests_and_pending_approvals_are_records(journal: Journal) -> None:
    journal.approvals.request(
        [ApprovalRequest("b", "hb", "before_enable"), ApprovalRequest("a", "ha", "x")], 10
    )
    journal.approvals.request([ApprovalRequest("a", "ha", "x")], 20)  # one per hash
    assert journal.approvals.pending() == [
        PendingApproval("a", "x", "ha", 10),
        PendingApproval("b", "before_enable", "hb", 10),
    ]
    with journal.transaction():
        journal.approvals.grant("a", "ha", "x", 30)
        journal.state.set(STATE_APPROVALS_CHANGED, "30", 30)
    assert journal.approvals.is_approved("a", "ha") and journal.approvals.granted() == {("a", "ha")}
    assert journal.state.get(STATE_APPROVALS_CHANGED) == "30"
    journal.approvals.drop_stale_requests({"a": "ha", "b": "edited"})
    assert journal.approvals.pending() == []


def test_outbox_items_and_process_heartbeats_are_records(journal: Journal) -> None:
    journal.outbox.add("phone", "r", "run1", '{"n": 1}', 1)
    journal.outbox.add("pager", "r", "run2", '{"n": 2}', 2)
    (item,) = journal.outbox.pending("pager")
    assert isinstance(item, OutboxItem) and (item.channel, item.payload) == ("pager", '{"n": 2}')
    assert [i.outbox_id for i in journal.outbox.pending(limit=1)] == [item.outbox_id - 1]
    beat = ProcessHeartbeat("executor", 42, "inst", "running", 1, 5_000)
    journal.heartbeats.beat(beat)
    journal.heartbeats.beat(replace(beat, restarts=2, heartbeat_ms=6_000))
    assert journal.heartbeats.all() == {"executor": replace(beat, restarts=2, heartbeat_ms=6_000)}


@pytest.mark.parametrize(
    "record",
    [
        RoutineAdvance("r", 1, 2, 3),
        RunDecision("id", "pending"),
        ApprovalRequest("r", "h", "m"),
        PendingApproval("r", "m", "h", 1),
        Event(1, "n", None, 1),
        OutboxItem(1, "c", "{}"),
        ProcessHeartbeat("n", 1, "i", "running", 0, 1),
        RoutineState("r", "h", None, True, 0, None, None, None),
    ],
)
def test_records_are_frozen_and_slotted(record: object) -> None:
    assert not hasattr(record, "__dict__")
    field = next(iter(record.__dataclass_fields__))  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):  # FrozenInstanceError is an AttributeError
        setattr(record, field, None)


def test_a_dropped_journal_closes_its_connection_at_once(tmp_path: Path) -> None:
    """No reference cycle between the journal, its domains and its write scope: dropping
    an unclosed journal frees it (and its SQLite connection) without waiting for the GC."""
    import gc
    import weakref

    j = Journal(tmp_path / "j.sqlite3")
    with j.transaction():
        j.state.set("k", "v", 1)
    ref = weakref.ref(j)
    gc.disable()
    try:
        del j
        assert ref() is None
    finally:
        gc.enable()


def test_transactions_nest(journal: Journal) -> None:
    with journal.transaction() as outer, journal.transaction() as inner:
        assert outer is inner is journal
        with journal.write() as db:
            db.execute("INSERT INTO daemon_state VALUES ('a', '1', 1)")
        journal.state.set("b", "2", 2)
    other = Journal(journal.path)
    assert (other.state.get("a"), other.state.get("b")) == ("1", "2")
