"""The journal's background queue (SPEC §6 "Background queue", §4.6), with "now" injected.

Order (priority, then FIFO within a priority even for many tasks made in one millisecond,
never before ``not_before``), claims restricted to kinds, leases and their fencing tokens (a
worker whose lease was taken over changes nothing), the last attempt lost with its worker,
the backoff ``min(2 s · 2^(k−1), 10 min)``, dead tasks kept ``failed``, the operator's retry
and cancel, one active task per ``unique_key``, pruning, the worker's wake time, the change
counter and the stale-heartbeat read self-healing uses.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from palyrad.journal import SCHEMA_VERSION, Journal, Task, task_backoff_ms
from palyrad.journal.tasks import BACKOFF_MAX_MS, MAX_ERROR_CHARS, TASK_STATUSES

pytestmark = pytest.mark.timeout(60)

T0 = 1_700_000_000_000
LEASE = 30_000
S = 1_000


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = Journal(tmp_path / "journal.sqlite3")
    yield j
    j.close()


def put(
    journal: Journal,
    task_id: str,
    kind: str = "journal_vacuum",
    now: int = T0,
    **kw: object,
) -> Task:
    task, added = journal.tasks.enqueue(task_id, kind, '{"n": 1}', now, **kw)  # type: ignore[arg-type]
    assert added
    return task


def claim_one(
    journal: Journal, token: str, now: int, *, owner: str = "w1", kinds: list[str] | None = None
) -> Task | None:
    got = journal.tasks.claim(owner, [token], now, LEASE, kinds=kinds)
    assert len(got) <= 1
    return got[0] if got else None


def status(journal: Journal, task_id: str) -> str:
    task = journal.tasks.get(task_id)
    assert task is not None
    return task.status


# --- the schema and enqueue ------------------------------------------------------------------


def test_the_tasks_table_is_migrated_and_a_new_task_is_pending(journal: Journal) -> None:
    assert journal.schema_version() == SCHEMA_VERSION
    task = put(journal, "t1", priority=5)
    assert task == journal.tasks.get("t1")
    assert (task.status, task.attempt, task.max_attempts, task.priority) == ("pending", 0, 3, 5)
    assert task.not_before_ms == task.created_ms == T0
    assert task.payload == '{"n": 1}'
    assert (task.started_ms, task.finished_ms, task.lease_token, task.error) == (
        None,
        None,
        None,
        None,
    )
    assert journal.tasks.get("nope") is None
    assert set(TASK_STATUSES) == {"pending", "running", "succeeded", "failed", "cancelled"}


# --- order -----------------------------------------------------------------------------------


def test_higher_priority_first_then_fifo_within_a_priority_even_in_one_millisecond(
    journal: Journal,
) -> None:
    # 60 tasks made in the same millisecond, priorities interleaved; ids sort against FIFO
    # so only the insertion order can explain the result.
    expected: dict[int, list[str]] = {10: [], 0: [], -5: []}
    for i in range(60):
        prio = (10, 0, -5)[i % 3]
        task_id = f"z{99 - i:02d}"
        put(journal, task_id, priority=prio)
        expected[prio].append(task_id)
    order: list[str] = []
    for n in range(60):
        task = claim_one(journal, f"tok{n}", T0)
        assert task is not None
        order.append(task.task_id)
    assert order == expected[10] + expected[0] + expected[-5]
    assert claim_one(journal, "more", T0) is None


def test_one_claim_takes_several_tasks_in_order_one_token_each(journal: Journal) -> None:
    for i, prio in enumerate([0, 1, 0, 2]):
        put(journal, f"t{i}", priority=prio)
    got = journal.tasks.claim("w1", ["a", "b", "c"], T0, LEASE)
    assert [(t.task_id, t.lease_token) for t in got] == [("t3", "a"), ("t1", "b"), ("t0", "c")]
    assert all(t.status == "running" and t.attempt == 1 for t in got)
    assert all(t.lease_until_ms == T0 + LEASE and t.heartbeat_ms == T0 for t in got)
    assert all(t.started_ms == T0 and t.lease_owner == "w1" for t in got)
    assert journal.tasks.claim("w1", [], T0, LEASE) == []
    assert [t.task_id for t in journal.tasks.claim("w1", ["d", "e"], T0, LEASE)] == ["t2"]


def test_not_before_holds_a_task_back_even_over_lower_priorities(journal: Journal) -> None:
    put(journal, "later", priority=100, not_before_ms=T0 + 10 * S)
    put(journal, "now", priority=0)
    assert journal.tasks.get("later").not_before_ms == T0 + 10 * S  # type: ignore[union-attr]
    first = claim_one(journal, "a", T0)
    assert first is not None and first.task_id == "now"
    assert claim_one(journal, "b", T0 + 10 * S - 1) is None
    second = claim_one(journal, "c", T0 + 10 * S)
    assert second is not None and second.task_id == "later"


def test_a_claim_takes_only_the_kinds_it_was_asked_for(journal: Journal) -> None:
    put(journal, "v", "journal_vacuum", priority=9)
    put(journal, "d", "delivery")
    put(journal, "m", "memory_maintenance")
    assert claim_one(journal, "x", T0, kinds=["skill_reaudit"]) is None
    assert claim_one(journal, "x", T0, kinds=[]) is None
    got = journal.tasks.claim(
        "w1", ["a", "b", "c"], T0, LEASE, kinds=["delivery", "memory_maintenance"]
    )
    assert [t.task_id for t in got] == ["d", "m"]
    assert status(journal, "v") == "pending"
    # An expired lease of another kind is not taken over by a claim for other kinds.
    journal.tasks.expire_lease("d", T0 + S)
    assert claim_one(journal, "y", T0 + 2 * S, kinds=["journal_vacuum"]).task_id == "v"  # type: ignore[union-attr]
    taken = claim_one(journal, "z", T0 + 2 * S, kinds=["delivery"])
    assert taken is not None and (taken.task_id, taken.attempt) == ("d", 2)


# --- leases and fencing ----------------------------------------------------------------------


def test_a_heartbeat_extends_the_lease_only_for_its_token(journal: Journal) -> None:
    put(journal, "t")
    claim_one(journal, "tok", T0)
    assert journal.tasks.heartbeat("t", "tok", T0 + 20 * S, LEASE)
    task = journal.tasks.get("t")
    assert task is not None
    assert (task.heartbeat_ms, task.lease_until_ms) == (T0 + 20 * S, T0 + 20 * S + LEASE)
    assert not journal.tasks.heartbeat("t", "other", T0 + 21 * S, LEASE)
    assert not journal.tasks.heartbeat("missing", "tok", T0 + 21 * S, LEASE)
    # Kept alive by the heartbeat: not taken over at the first lease's end.
    assert claim_one(journal, "thief", T0 + LEASE + 1) is None


def test_a_taken_over_lease_leaves_the_old_worker_powerless(journal: Journal) -> None:
    put(journal, "t")
    first = claim_one(journal, "old", T0, owner="w1")
    assert first is not None and first.attempt == 1
    assert claim_one(journal, "early", T0 + LEASE) is None  # the lease holds until its end
    second = claim_one(journal, "new", T0 + LEASE + 1, owner="w2")
    assert second is not None
    assert (second.task_id, second.attempt, second.lease_token, second.lease_owner) == (
        "t",
        2,
        "new",
        "w2",
    )
    later = T0 + LEASE + 2
    assert not journal.tasks.heartbeat("t", "old", later, LEASE)
    assert not journal.tasks.succeed("t", "old", later)
    assert journal.tasks.fail("t", "old", later, "boom") is None
    assert not journal.tasks.release("t", "old", later)
    task = journal.tasks.get("t")
    assert task is not None
    assert (task.status, task.attempt, task.lease_token, task.error) == ("running", 2, "new", None)
    assert journal.tasks.succeed("t", "new", later)
    done = journal.tasks.get("t")
    assert done is not None and (done.status, done.finished_ms) == ("succeeded", later)
    assert done.lease_token is None
    assert not journal.tasks.succeed("t", "new", later + 1)  # finished: nothing more to do


def test_an_expired_lease_on_the_last_attempt_fails_the_task(journal: Journal) -> None:
    put(journal, "t", max_attempts=2)
    put(journal, "other")
    claim_one(journal, "a", T0)  # t, attempt 1
    claim_one(journal, "b", T0)  # other
    journal.tasks.succeed("other", "b", T0)
    retaken = claim_one(journal, "c", T0 + LEASE + 1)
    assert retaken is not None and (retaken.task_id, retaken.attempt) == ("t", 2)
    v = journal.tasks.version()
    # Its second (last) worker is lost too: the claim fails it instead of running it a third time.
    assert claim_one(journal, "d", T0 + 2 * LEASE + 2) is None
    task = journal.tasks.get("t")
    assert task is not None
    assert (task.status, task.attempt, task.finished_ms) == ("failed", 2, T0 + 2 * LEASE + 2)
    assert task.error is not None and "worker was lost" in task.error
    assert task.lease_token is None and task.lease_until_ms is None
    assert journal.tasks.version() > v
    assert not journal.tasks.succeed("t", "c", T0 + 2 * LEASE + 3)


def test_release_gives_a_task_back_without_counting_the_attempt(journal: Journal) -> None:
    put(journal, "t")
    claim_one(journal, "a", T0)
    assert journal.tasks.release("t", "a", T0 + S)
    task = journal.tasks.get("t")
    assert task is not None
    assert (task.status, task.attempt, task.started_ms, task.lease_token) == (
        "pending",
        0,
        None,
        None,
    )
    assert not journal.tasks.release("t", "a", T0 + S)
    again = claim_one(journal, "b", T0 + S)
    assert again is not None and again.attempt == 1


def test_expire_lease_requeues_a_running_task_under_a_new_token(journal: Journal) -> None:
    put(journal, "t")
    put(journal, "p")
    claim_one(journal, "a", T0)
    assert journal.tasks.expire_lease("t", T0 + 5 * S)
    assert not journal.tasks.expire_lease("p", T0 + 5 * S)  # pending: not running
    assert not journal.tasks.expire_lease("missing", T0 + 5 * S)
    # The worker it was taken from wakes before the next claim: it can change nothing, not
    # even win its lease back with a heartbeat (else the requeue would be undone).
    assert not journal.tasks.heartbeat("t", "a", T0 + 5 * S, LEASE)
    assert not journal.tasks.succeed("t", "a", T0 + 5 * S)
    assert journal.tasks.fail("t", "a", T0 + 5 * S, "late") is None
    assert not journal.tasks.release("t", "a", T0 + 5 * S)
    retaken = claim_one(journal, "b", T0 + 5 * S)
    assert retaken is not None and (retaken.task_id, retaken.attempt) == ("t", 2)
    assert journal.tasks.succeed("t", "b", T0 + 6 * S)


# --- failure, backoff, dead tasks ------------------------------------------------------------


def test_the_backoff_is_two_seconds_doubling_up_to_ten_minutes() -> None:
    expected = [min(2_000 * 2 ** (k - 1), 600_000) for k in range(1, 13)]
    assert [task_backoff_ms(k) for k in range(1, 13)] == expected
    assert expected[:4] == [2_000, 4_000, 8_000, 16_000]
    assert expected[9:] == [600_000] * 3 and BACKOFF_MAX_MS == 600_000
    assert task_backoff_ms(1_000) == BACKOFF_MAX_MS  # no overflow for absurd attempts


def test_fail_sets_not_before_by_the_backoff_for_every_attempt(journal: Journal) -> None:
    put(journal, "t", max_attempts=12)
    now = T0
    for k in range(1, 13):
        task = claim_one(journal, f"tok{k}", now)
        assert task is not None and task.attempt == k
        failed = journal.tasks.fail("t", f"tok{k}", now + 100, f"error {k}")
        assert failed is not None
        if k < 12:
            assert failed.status == "pending"
            assert failed.not_before_ms == now + 100 + task_backoff_ms(k)
            assert failed.finished_ms is None and failed.lease_token is None
            assert failed.error == f"error {k}"
            assert claim_one(journal, "early", failed.not_before_ms - 1) is None
            now = failed.not_before_ms
        else:
            assert failed.status == "failed"
    dead = journal.tasks.get("t")
    assert dead is not None
    assert (dead.status, dead.attempt, dead.error, dead.finished_ms) == (
        "failed",
        12,
        "error 12",
        now + 100,
    )
    assert claim_one(journal, "never", now + 10**9) is None  # dead tasks stay failed
    assert journal.tasks.next_wake_ms() is None


def test_a_long_error_is_clipped(journal: Journal) -> None:
    put(journal, "t", max_attempts=1)
    claim_one(journal, "a", T0)
    failed = journal.tasks.fail("t", "a", T0, "x" * (MAX_ERROR_CHARS + 500))
    assert failed is not None and failed.error == "x" * MAX_ERROR_CHARS


# --- operators: retry and cancel -------------------------------------------------------------


def _dead(journal: Journal, task_id: str, now: int = T0, **kw: object) -> Task:
    put(journal, task_id, max_attempts=1, now=now, **kw)
    claim_one(journal, f"tok-{task_id}", now)
    task = journal.tasks.fail(task_id, f"tok-{task_id}", now, "it broke")
    assert task is not None and task.status == "failed"
    return task


def test_retry_puts_only_a_failed_task_back_with_its_attempts_from_zero(journal: Journal) -> None:
    _dead(journal, "t")
    retried = journal.tasks.retry("t", T0 + 50 * S)
    assert retried is not None
    assert (retried.status, retried.attempt, retried.not_before_ms, retried.finished_ms) == (
        "pending",
        0,
        T0 + 50 * S,
        None,
    )
    assert retried.error == "it broke"  # kept until it runs again
    again = claim_one(journal, "b", T0 + 50 * S)
    assert again is not None and again.attempt == 1
    for state in ("running", "pending", "succeeded", "cancelled"):
        put(journal, state, kind=state)  # a kind of its own, so each claim takes it alone
        if state == "running":
            claim_one(journal, "r", T0, kinds=[state])
        elif state == "succeeded":
            claim_one(journal, "s", T0, kinds=[state])
            journal.tasks.succeed(state, "s", T0)
        elif state == "cancelled":
            journal.tasks.cancel(state, T0)
        assert status(journal, state) == state
        assert journal.tasks.retry(state, T0) is None
        assert status(journal, state) == state
    assert journal.tasks.retry("missing", T0) is None


def test_cancel_only_cancels_a_pending_task(journal: Journal) -> None:
    put(journal, "t")
    cancelled = journal.tasks.cancel("t", T0 + S)
    assert cancelled is not None
    assert (cancelled.status, cancelled.finished_ms) == ("cancelled", T0 + S)
    assert claim_one(journal, "a", T0 + S) is None
    assert journal.tasks.cancel("t", T0 + 2 * S) is None  # already cancelled
    put(journal, "r")
    claim_one(journal, "b", T0)
    assert journal.tasks.cancel("r", T0) is None and status(journal, "r") == "running"
    _dead(journal, "f")
    assert journal.tasks.cancel("f", T0) is None and status(journal, "f") == "failed"
    assert journal.tasks.cancel("missing", T0) is None


# --- unique keys -----------------------------------------------------------------------------


def test_one_active_task_per_unique_key(journal: Journal) -> None:
    first, added = journal.tasks.enqueue("a", "journal_vacuum", "null", T0, unique_key="vac")
    assert added
    v = journal.tasks.version()
    same, added = journal.tasks.enqueue("b", "journal_vacuum", "null", T0 + 1, unique_key="vac")
    assert not added and same == first
    assert journal.tasks.get("b") is None and journal.tasks.version() == v
    # Still one while it runs.
    claim_one(journal, "tok", T0 + 2)
    running, added = journal.tasks.enqueue("c", "journal_vacuum", "null", T0 + 3, unique_key="vac")
    assert not added and running.task_id == "a" and running.status == "running"
    # Other keys (and no key) are independent.
    assert journal.tasks.enqueue("d", "memory_maintenance", "null", T0, unique_key="mem")[1]
    assert journal.tasks.enqueue("e", "journal_vacuum", "null", T0)[1]
    # Once it finished, the key is free again.
    assert journal.tasks.succeed("a", "tok", T0 + 4)
    new, added = journal.tasks.enqueue("f", "journal_vacuum", "null", T0 + 5, unique_key="vac")
    assert added and new.task_id == "f" and new.unique_key == "vac"
    assert journal.tasks.cancel("f", T0 + 6) is not None
    assert journal.tasks.enqueue("g", "journal_vacuum", "null", T0 + 7, unique_key="vac")[1]


def test_a_duplicate_task_id_is_still_an_error(journal: Journal) -> None:
    import sqlite3

    put(journal, "t")
    with pytest.raises(sqlite3.IntegrityError):
        journal.tasks.enqueue("t", "journal_vacuum", "null", T0)


def test_retry_refuses_a_failed_task_whose_key_is_active_again(journal: Journal) -> None:
    _dead(journal, "old", unique_key="vac")
    assert journal.tasks.enqueue("new", "journal_vacuum", "null", T0 + 1, unique_key="vac")[1]
    assert journal.tasks.active_for_key("vac") == journal.tasks.get("new")
    assert journal.tasks.retry("old", T0 + 2) is None  # not a constraint error
    assert status(journal, "old") == "failed"
    journal.tasks.cancel("new", T0 + 3)
    assert journal.tasks.active_for_key("vac") is None
    retried = journal.tasks.retry("old", T0 + 4)
    assert retried is not None and retried.status == "pending"


# --- prune, next wake, version, stale heartbeats ---------------------------------------------


def test_prune_deletes_only_finished_tasks_older_than_the_cutoff(journal: Journal) -> None:
    _dead(journal, "failed-old", now=T0)
    put(journal, "done-old")
    claim_one(journal, "s", T0)
    journal.tasks.succeed("done-old", "s", T0 + 1)
    put(journal, "cancelled-new")
    journal.tasks.cancel("cancelled-new", T0 + 100 * S)
    put(journal, "pending-old")
    put(journal, "running-old")
    claim_one(journal, "r", T0)
    assert journal.tasks.prune(T0 + 50 * S) == 2
    left = {t.task_id for t in journal.tasks.newest(limit=100)}
    assert left == {"cancelled-new", "pending-old", "running-old"}
    assert journal.tasks.prune(T0 + 50 * S) == 0


def test_newest_filters_by_status_and_kind(journal: Journal) -> None:
    put(journal, "a", "journal_vacuum")
    put(journal, "b", "delivery")
    put(journal, "c", "journal_vacuum")
    journal.tasks.cancel("c", T0)
    assert [t.task_id for t in journal.tasks.newest()] == ["c", "b", "a"]
    assert [t.task_id for t in journal.tasks.newest(kind="journal_vacuum")] == ["c", "a"]
    assert [t.task_id for t in journal.tasks.newest(status="pending")] == ["b", "a"]
    assert [t.task_id for t in journal.tasks.newest(status="pending", kind="delivery")] == ["b"]
    assert [t.task_id for t in journal.tasks.newest(limit=1)] == ["c"]


def test_next_wake_is_the_earliest_ready_time_or_lease_end(journal: Journal) -> None:
    assert journal.tasks.next_wake_ms() is None
    put(journal, "later", not_before_ms=T0 + 60 * S)
    assert journal.tasks.next_wake_ms() == T0 + 60 * S
    put(journal, "run")
    assert journal.tasks.next_wake_ms() == T0
    claim_one(journal, "a", T0)  # "run": priority 0, FIFO, but "later" is not ready
    assert journal.tasks.get("run").status == "running"  # type: ignore[union-attr]
    # The running task's lease can be taken over one ms after it ends.
    assert journal.tasks.next_wake_ms() == T0 + LEASE + 1
    assert claim_one(journal, "b", T0 + LEASE) is None
    journal.tasks.succeed("run", "a", T0 + S)
    assert journal.tasks.next_wake_ms() == T0 + 60 * S
    journal.tasks.cancel("later", T0 + S)
    assert journal.tasks.next_wake_ms() is None


def test_every_change_bumps_the_version_and_reads_do_not(journal: Journal) -> None:
    seen = [journal.tasks.version()]

    def bumped() -> None:
        now = journal.tasks.version()
        assert now > seen[-1]
        seen.append(now)

    def unchanged() -> None:
        assert journal.tasks.version() == seen[-1]

    put(journal, "t", max_attempts=2)
    bumped()
    claim_one(journal, "a", T0)
    bumped()
    assert journal.tasks.claim("w", ["x"], T0, LEASE) == []
    unchanged()
    journal.tasks.heartbeat("t", "a", T0 + 1, LEASE)
    journal.tasks.get("t")
    journal.tasks.newest()
    journal.tasks.next_wake_ms()
    unchanged()
    journal.tasks.fail("t", "a", T0 + 2, "e")
    bumped()
    claim_one(journal, "b", T0 + 10 * S)
    bumped()
    journal.tasks.release("t", "b", T0 + 10 * S)
    bumped()
    claim_one(journal, "c", T0 + 10 * S)
    bumped()
    journal.tasks.expire_lease("t", T0 + 11 * S)
    bumped()
    claim_one(journal, "d", T0 + 11 * S)  # the last attempt was lost: failed
    bumped()
    journal.tasks.retry("t", T0 + 12 * S)
    bumped()
    journal.tasks.cancel("t", T0 + 12 * S)
    bumped()
    assert seen[-1] == journal.tasks.version() and len(seen) == 11


def test_stale_running_finds_running_tasks_with_an_old_heartbeat(journal: Journal) -> None:
    put(journal, "quiet")
    put(journal, "beating")
    put(journal, "waiting")
    journal.tasks.claim("w", ["q", "b"], T0, LEASE * 100)
    journal.tasks.heartbeat("beating", "b", T0 + 100 * S, LEASE * 100)
    assert [t.task_id for t in journal.tasks.stale_running(T0 + 100 * S)] == ["quiet"]
    assert journal.tasks.stale_running(T0) == []  # strictly older
    assert {t.task_id for t in journal.tasks.stale_running(T0 + 100 * S + 1)} == {
        "quiet",
        "beating",
    }
    journal.tasks.succeed("quiet", "q", T0 + 101 * S)
    assert [t.task_id for t in journal.tasks.stale_running(T0 + 200 * S)] == ["beating"]
