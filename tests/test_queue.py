"""The background queue below the daemon (SPEC §6 "Background queue", "Maintenance ticks"):
the executor's ``TaskPool`` workers and the scheduler's ``MaintenanceTicks`` on a real
journal in a temp home, time injected through a ``ManualClock``.

- order: priority first, FIFO within a priority, as the worker runs them (not only as the
  SQL sorts them), including tasks enqueued while the worker is busy;
- retries: a raising handler's attempts are spaced 2 s then 4 s, and the task stays
  ``failed`` with its error after ``max_attempts`` 3;
- fencing: a worker whose lease was taken over can neither heartbeat, finish nor fail the
  task; a restarted executor's pool takes over its predecessor's running task at once;
- a raising handler fails its attempt only: the worker thread goes on with the next task;
- maintenance ticks: each kind once when due, once (not once per missed interval) after a
  long downtime, never two of a kind pending or running.
"""

from __future__ import annotations

import multiprocessing
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

from palyrad.domain.runs import new_token, new_ulid
from palyrad.domain.tasks import (
    EMBEDDINGS_BACKFILL,
    JOURNAL_VACUUM,
    MAINTENANCE_KINDS,
    MEMORY_MAINTENANCE,
    SKILL_REAUDIT,
)
from palyrad.journal import STATE_MAINTENANCE, Journal, Task, task_backoff_ms
from palyrad.runtime.clock import ManualClock
from palyrad.runtime.home import Home
from palyrad.seams import TaskHandler, TaskRun
from palyrad.services.context import ServiceContext
from palyrad.services.executor import task_pool
from palyrad.services.executor.task_pool import TaskPool
from palyrad.services.scheduler.maintenance import MaintenanceTicks
from tests.daemon_harness import wait_until

pytestmark = pytest.mark.timeout(60)

# 2031-03-04T05:06:07Z: years away from the machine's clock, so a stray wall-clock read shows.
T0 = 1_930_453_567_000
KIND = MEMORY_MAINTENANCE  # any kind: each test gives the pool its own handler for it
DAY_MS = 86_400_000


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


def _context(root: Path, clock: ManualClock, config: str = "") -> Iterator[ServiceContext]:
    home = Home.at(root).ensure()
    home.config.write_text(config)
    parent, child = multiprocessing.Pipe()
    ctx = ServiceContext("executor", home, child, "i1", 0, clock=clock)
    try:
        yield ctx
    finally:
        if ctx._journal is not None:
            ctx._journal.close()
        parent.close()
        child.close()


@pytest.fixture
def ctx(tmp_path: Path, clock: ManualClock) -> Iterator[ServiceContext]:
    yield from _context(tmp_path / "home", clock)


class Recorder:
    """A handler that records what it ran (payload["n"], attempt, the clock's time), and
    raises when told to."""

    def __init__(self, kind: str = KIND, fail: Callable[[TaskRun], bool] | None = None) -> None:
        self.kind = kind
        self.fail = fail
        self.seen: list[tuple[object, int, int]] = []
        self.lock = threading.Lock()

    def run(self, task: TaskRun) -> str | None:
        with self.lock:
            self.seen.append((task.payload.get("n"), task.attempt, task.clock.now_ms()))
        if self.fail is not None and self.fail(task):
            raise RuntimeError(f"boom on attempt {task.attempt}")
        return "recorded"

    def order(self) -> list[object]:
        with self.lock:
            return [n for n, _, _ in self.seen]


def _enqueue(journal: Journal, n: object, now: int, **kw: object) -> Task:
    task, added = journal.tasks.enqueue(
        new_ulid(now), str(kw.pop("kind", KIND)), orjson.dumps({"n": n}).decode(), now, **kw
    )
    assert added
    return task


def _pool(ctx: ServiceContext, *handlers: TaskHandler, workers: int = 1) -> TaskPool:
    return TaskPool(ctx, {h.kind: h for h in handlers}, workers)


# --- order -----------------------------------------------------------------------------------


def test_one_worker_runs_higher_priority_first_and_fifo_within_a_priority(
    ctx: ServiceContext,
) -> None:
    journal = ctx.journal
    plan = [("a", 0), ("b", 5), ("c", 0), ("d", -10), ("e", 5), ("f", 0), ("g", 100), ("h", -10)]
    for n, prio in plan:
        _enqueue(journal, n, T0, priority=prio)
    rec = Recorder()
    pool = _pool(ctx, rec)
    pool.start()
    try:
        wait_until(lambda: len(rec.order()) == len(plan), timeout=20)
    finally:
        pool.stop(5.0)
    assert rec.order() == ["g", "b", "e", "a", "c", "f", "d", "h"]
    tasks = journal.tasks.newest(limit=100)
    assert {t.status for t in tasks} == {"succeeded"} and {t.attempt for t in tasks} == {1}


def test_tasks_enqueued_while_the_worker_is_busy_keep_priority_then_fifo(
    ctx: ServiceContext,
) -> None:
    journal = ctx.journal
    busy = threading.Event()
    go_on = threading.Event()

    class Gate(Recorder):
        def run(self, task: TaskRun) -> str | None:
            if task.payload.get("n") == "gate":
                busy.set()
                assert go_on.wait(20)
            return super().run(task)

    rec = Gate()
    pool = _pool(ctx, rec)
    pool.start()
    try:
        _enqueue(journal, "gate", T0)
        pool.nudge()
        assert busy.wait(20)
        # the one worker is inside "gate": these queue up behind it, through a poke each
        for n, prio in [
            ("low1", -1),
            ("mid1", 0),
            ("hi1", 3),
            ("mid2", 0),
            ("hi2", 3),
            ("low2", -1),
        ]:
            _enqueue(journal, n, T0, priority=prio)
            pool.nudge()
        go_on.set()
        wait_until(lambda: len(rec.order()) == 7, timeout=20)
    finally:
        go_on.set()
        pool.stop(5.0)
    assert rec.order() == ["gate", "hi1", "hi2", "mid1", "mid2", "low1", "low2"]


def test_a_task_is_not_run_before_its_not_before(ctx: ServiceContext, clock: ManualClock) -> None:
    journal = ctx.journal
    _enqueue(journal, "later", T0, not_before_ms=T0 + 5_000, priority=100)
    _enqueue(journal, "now", T0)
    rec = Recorder()
    pool = _pool(ctx, rec)
    assert pool._claim_and_run(journal, T0)
    assert not pool._claim_and_run(journal, T0 + 4_999)
    assert journal.tasks.next_wake_ms() == T0 + 5_000  # the worker's sleep ends right then
    clock.set(T0 + 5_000)
    assert pool._claim_and_run(journal, T0 + 5_000)
    assert rec.order() == ["now", "later"]


# --- retries and backoff ----------------------------------------------------------------------


def test_backoff_doubles_from_two_seconds_to_its_ten_minute_cap() -> None:
    assert [task_backoff_ms(k) for k in (1, 2, 3, 4, 9, 10, 50)] == [
        2_000, 4_000, 8_000, 16_000, 512_000, 600_000, 600_000,
    ]  # fmt: skip


def test_a_raising_handler_is_retried_2s_then_4s_later_then_stays_failed_with_its_error(
    ctx: ServiceContext, clock: ManualClock
) -> None:
    journal = ctx.journal
    rec = Recorder(fail=lambda _t: True)
    pool = _pool(ctx, rec)
    task = _enqueue(journal, "x", T0)
    assert task.max_attempts == 3

    def step(at: int) -> bool:
        clock.set(at)
        return pool._claim_and_run(journal, at)

    assert step(T0)
    t = journal.tasks.get(task.task_id)
    assert t is not None and (t.status, t.attempt, t.not_before_ms) == ("pending", 1, T0 + 2_000)
    assert t.error == "RuntimeError: boom on attempt 1" and t.finished_ms is None
    assert not step(T0 + 1_999)  # not a millisecond early
    assert step(T0 + 2_000)
    t = journal.tasks.get(task.task_id)
    assert t is not None and (t.status, t.attempt, t.not_before_ms) == ("pending", 2, T0 + 6_000)
    assert not step(T0 + 5_999)
    assert step(T0 + 6_000)
    t = journal.tasks.get(task.task_id)
    assert t is not None and (t.status, t.attempt) == ("failed", 3)
    assert t.error == "RuntimeError: boom on attempt 3" and t.finished_ms == T0 + 6_000
    assert not step(T0 + DAY_MS)  # a dead task is kept, never run again
    assert rec.seen == [("x", 1, T0), ("x", 2, T0 + 2_000), ("x", 3, T0 + 6_000)]
    assert journal.tasks.next_wake_ms() is None


def test_a_retry_that_succeeds_clears_the_error(ctx: ServiceContext, clock: ManualClock) -> None:
    journal = ctx.journal
    pool = _pool(ctx, Recorder(fail=lambda t: t.attempt == 1))
    task = _enqueue(journal, "x", T0)
    assert pool._claim_and_run(journal, T0)
    clock.set(T0 + 2_000)
    assert pool._claim_and_run(journal, T0 + 2_000)
    t = journal.tasks.get(task.task_id)
    assert t is not None and (t.status, t.attempt, t.error) == ("succeeded", 2, None)


def test_a_raising_or_missing_handler_fails_its_attempt_and_the_worker_goes_on(
    ctx: ServiceContext,
) -> None:
    journal = ctx.journal
    bad = Recorder(kind=KIND, fail=lambda _t: True)
    good = Recorder(kind=SKILL_REAUDIT)
    pool = _pool(ctx, bad, good)
    pool.start()
    try:
        raising = _enqueue(journal, "bad", T0, priority=5, max_attempts=1)
        orphan = _enqueue(journal, "orphan", T0, kind=JOURNAL_VACUUM, priority=5, max_attempts=1)
        pool.nudge()
        wait_until(
            lambda: all(
                (t := journal.tasks.get(x.task_id)) and t.status == "failed"
                for x in (raising, orphan)
            ),
            timeout=20,
        )
        after = _enqueue(journal, "after", T0, kind=SKILL_REAUDIT)
        pool.nudge()
        wait_until(lambda: (t := journal.tasks.get(after.task_id)) and t.status == "succeeded")
    finally:
        pool.stop(5.0)
    o = journal.tasks.get(orphan.task_id)
    assert o is not None and o.error == "LookupError: no handler for task kind 'journal_vacuum'"
    assert all(th.is_alive() is False for th in pool._threads)  # stopped, not crashed earlier


# --- leases and fencing -----------------------------------------------------------------------


def test_a_taken_over_lease_fences_out_the_stale_worker(ctx: ServiceContext) -> None:
    tasks = ctx.journal.tasks
    task = _enqueue(ctx.journal, "x", T0)
    (stale,) = tasks.claim("worker-a", ["token-a"], T0, 1_000)
    assert (stale.attempt, stale.lease_until_ms) == (1, T0 + 1_000)
    assert tasks.heartbeat(task.task_id, "token-a", T0 + 500, 1_000)  # lease now T0+1500
    assert tasks.claim("worker-b", ["token-b"], T0 + 1_500, 1_000) == []  # not expired yet
    (fresh,) = tasks.claim("worker-b", ["token-b"], T0 + 1_501, 1_000)
    assert (fresh.task_id, fresh.attempt, fresh.lease_token) == (task.task_id, 2, "token-b")
    # worker-a wakes up: nothing it says counts any more
    assert not tasks.heartbeat(task.task_id, "token-a", T0 + 1_600, 1_000)
    assert not tasks.succeed(task.task_id, "token-a", T0 + 1_600)
    assert tasks.fail(task.task_id, "token-a", T0 + 1_600, "late") is None
    assert not tasks.release(task.task_id, "token-a", T0 + 1_600)
    t = tasks.get(task.task_id)
    assert t is not None and (t.status, t.lease_token, t.error) == ("running", "token-b", None)
    assert tasks.heartbeat(task.task_id, "token-b", T0 + 1_700, 1_000)
    assert tasks.succeed(task.task_id, "token-b", T0 + 1_800)
    assert not tasks.succeed(task.task_id, "token-b", T0 + 1_900)  # once
    t = tasks.get(task.task_id)
    assert t is not None and (t.status, t.attempt, t.finished_ms) == ("succeeded", 2, T0 + 1_800)


def test_a_lease_lost_on_the_last_attempt_fails_the_task(ctx: ServiceContext) -> None:
    tasks = ctx.journal.tasks
    task = _enqueue(ctx.journal, "x", T0, max_attempts=1)
    tasks.claim("worker-a", ["token-a"], T0, 1_000)
    assert tasks.claim("worker-b", ["token-b"], T0 + 1_001, 1_000) == []
    t = tasks.get(task.task_id)
    assert t is not None and t.status == "failed" and "lease expired" in str(t.error)


def test_a_stalled_handler_past_its_lease_is_taken_over_and_its_result_refused(
    ctx: ServiceContext, clock: ManualClock
) -> None:
    """Through two pools: the first one's handler outlives its lease (the clock jumps while
    it runs), the second claims the task under a new token and finishes it; the first
    one's success then changes nothing."""
    journal = ctx.journal
    lease = ctx.config.stale_task_ms
    other = ctx.open_journal()
    took_over: list[Task] = []

    def stall(task: TaskRun) -> bool:
        if task.attempt == 1:
            clock.set(T0 + lease + 1)
            second = _pool(ctx, Recorder())
            assert second._claim_and_run(other, clock.now_ms())
            took_over.append(other.tasks.get(task.task_id))  # type: ignore[arg-type]
            assert not task.heartbeat()  # the handler learns it lost its lease
        return False

    first = _pool(ctx, Recorder(fail=stall))
    task = _enqueue(journal, "x", T0)
    assert first._claim_and_run(journal, T0)
    other.close()
    (done,) = took_over
    assert (done.status, done.attempt) == ("succeeded", 2)
    t = journal.tasks.get(task.task_id)
    assert t is not None and (t.status, t.attempt, t.finished_ms) == (
        "succeeded",
        2,
        T0 + lease + 1,
    )


def test_a_restarted_pool_takes_over_its_dead_predecessors_task_at_once(
    ctx: ServiceContext,
) -> None:
    journal = ctx.journal
    task = _enqueue(journal, "x", T0)
    # the predecessor (another pid) claimed it with a 2-minute lease, then was kill -9ed
    (_old,) = journal.tasks.claim("tasks:i0:1", ["old-token"], T0, 120_000)
    rec = Recorder()
    pool = _pool(ctx, rec)
    pool.start()  # the clock has not moved: only the restart expires the lease
    try:
        wait_until(lambda: (t := journal.tasks.get(task.task_id)) and t.status == "succeeded")
    finally:
        pool.stop(5.0)
    assert rec.seen == [("x", 2, T0)]
    assert not journal.tasks.succeed(task.task_id, "old-token", T0)


# --- maintenance ticks ------------------------------------------------------------------------

INTERVALS = {
    MEMORY_MAINTENANCE: 1_000,
    EMBEDDINGS_BACKFILL: 60_000,
    SKILL_REAUDIT: 3_600_000,
    JOURNAL_VACUUM: DAY_MS,
}
MAINTENANCE_TOML = (
    "[maintenance]\nmemory_interval_ms = 1000\nbackfill_interval_ms = 60000\n"
    "skill_reaudit_interval_ms = 3600000\nvacuum_interval_ms = 86400000\n"
)


@pytest.fixture
def mctx(tmp_path: Path, clock: ManualClock) -> Iterator[ServiceContext]:
    yield from _context(tmp_path / "home", clock, MAINTENANCE_TOML)


def _maintenance(journal: Journal, status: str | None = None) -> list[Task]:
    return [t for t in journal.tasks.newest(status=status, limit=10_000) if t.kind in INTERVALS]


def _finish_all(journal: Journal, now: int) -> None:
    claimed = journal.tasks.claim("w", [new_token() for _ in range(10)], now, 60_000)
    for t in claimed:
        assert journal.tasks.succeed(t.task_id, str(t.lease_token), now)


def test_a_new_home_starts_each_kind_one_interval_after_its_first_start(
    mctx: ServiceContext,
) -> None:
    ticks = MaintenanceTicks(mctx)
    ticks.load(T0)
    assert ticks.next_due == {k: T0 + v for k, v in INTERVALS.items()}
    assert ticks.earliest_ms == T0 + 1_000
    assert not ticks.run(T0 + 999)
    assert ticks.run(T0 + 1_000)
    (t,) = _maintenance(mctx.journal)
    assert (t.kind, t.priority, t.unique_key) == (MEMORY_MAINTENANCE, -10, MEMORY_MAINTENANCE)
    saved = orjson.loads(mctx.journal.state.get(STATE_MAINTENANCE) or b"{}")
    assert saved[MEMORY_MAINTENANCE] == T0 + 2_000


def test_ticks_come_each_interval_and_never_queue_two_of_a_kind(mctx: ServiceContext) -> None:
    journal = mctx.journal
    ticks = MaintenanceTicks(mctx)
    ticks.load(T0)
    # the workers are stuck (nothing finishes): ten memory ticks add one task, not ten
    for s in range(1, 11):
        ticks.run(T0 + s * 1_000)
    assert [t.kind for t in _maintenance(journal)] == [MEMORY_MAINTENANCE]
    _finish_all(journal, T0 + 10_500)
    # once it finished, the next tick adds the next one
    assert ticks.run(T0 + 11_000)
    assert [(t.kind, t.status) for t in _maintenance(journal)] == [
        (MEMORY_MAINTENANCE, "pending"), (MEMORY_MAINTENANCE, "succeeded"),
    ]  # fmt: skip
    # a running one blocks the next as well
    journal.tasks.claim("w", ["tok"], T0 + 11_100, 60_000)
    assert not ticks.run(T0 + 12_000)
    assert len(_maintenance(journal)) == 2


def test_after_a_day_of_downtime_each_kind_is_enqueued_once(
    mctx: ServiceContext, clock: ManualClock
) -> None:
    journal = mctx.journal
    first = MaintenanceTicks(mctx)
    first.load(T0)
    first.run(T0 + 1_000)
    _finish_all(journal, T0 + 1_100)
    # the daemon stops here; it comes back a day and a minute later (a new scheduler)
    later = T0 + DAY_MS + 60_000 + 1_000
    back = MaintenanceTicks(mctx)
    back.load(later)
    assert back.earliest_ms is not None and back.earliest_ms < later  # all four overdue
    assert back.run(later)
    pending = _maintenance(journal, "pending")
    assert sorted(t.kind for t in pending) == sorted(MAINTENANCE_KINDS)  # once each
    assert {t.created_ms for t in pending} == {later}
    assert back.next_due == {k: later + v for k, v in INTERVALS.items()}
    assert not back.run(later + 999)
    assert len(_maintenance(journal, "pending")) == 4


def test_a_shorter_interval_after_a_config_change_takes_effect_at_once(
    tmp_path: Path, clock: ManualClock
) -> None:
    root = tmp_path / "home"
    long = MAINTENANCE_TOML.replace("memory_interval_ms = 1000", "memory_interval_ms = 3600000")
    for c in _context(root, clock, long):
        ticks = MaintenanceTicks(c)
        ticks.load(T0)
        ticks.run(T0)  # saves the schedule: memory due in an hour
    for c in _context(root, clock, MAINTENANCE_TOML):
        ticks = MaintenanceTicks(c)
        ticks.load(T0 + 10)
        assert ticks.next_due[MEMORY_MAINTENANCE] == T0 + 1_010


# --- draining a backlog -----------------------------------------------------------------------


def test_a_backlog_drains_in_batches_one_transaction_per_batch(ctx: ServiceContext) -> None:
    """One claim takes a batch in order; its successes are recorded together with the next
    batch's claim (one commit per batch, not two per task)."""
    journal = ctx.journal
    for n in "abc":
        _enqueue(journal, n, T0)
    rec = Recorder()
    pool = _pool(ctx, rec)
    before = journal.tasks.version()
    assert pool._claim_and_run(journal, T0)
    assert rec.order() == ["a", "b", "c"]
    assert {t.status for t in journal.tasks.newest()} == {"succeeded"}
    # claim a, b, c (one bump); succeed a, b, c (three); the next claim found none
    assert journal.tasks.version() - before == 1 + 3


def test_tasks_of_a_batch_not_started_within_its_window_go_back_unrun(
    ctx: ServiceContext, clock: ManualClock
) -> None:
    """A slow task makes the rest of its batch wait at most BATCH_WINDOW_MS: they are
    released (pending again, the attempt not counted) and claimed afresh, so a
    higher-priority task enqueued meanwhile goes first."""
    journal = ctx.journal
    for n in "abc":
        _enqueue(journal, n, T0)
    enqueued_urgent: list[Task] = []

    def slow(task: TaskRun) -> bool:
        if task.payload.get("n") == "a":
            clock.advance(task_pool.BATCH_WINDOW_MS + 1)
            enqueued_urgent.append(_enqueue(journal, "urgent", clock.now_ms(), priority=5))
        return False

    rec = Recorder(fail=slow)
    pool = _pool(ctx, rec)
    assert pool._claim_and_run(journal, T0)
    assert rec.order() == ["a", "urgent", "b", "c"]
    assert [n for n, attempt, _ in rec.seen if attempt != 1] == []  # released: not counted


def test_a_slow_handler_does_not_hold_its_batchs_finished_tasks_unrecorded(
    ctx: ServiceContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a handler runs long (without heartbeats), the watchdog records the successes
    its batch already had and extends the leases of the tasks waiting behind it; stopping
    the pool then sends what never started back to the queue, its attempt not counted."""
    monkeypatch.setattr(task_pool, "FLUSH_AFTER_S", 0.05)
    monkeypatch.setattr(task_pool, "WATCHDOG_S", 0.02)
    journal = ctx.journal
    for n in "abc":
        _enqueue(journal, n, T0)
    release = threading.Event()
    seen: list[str] = []

    class SlowB:
        kind = KIND

        def run(self, task: TaskRun) -> str | None:
            seen.append(task.payload.get("n"))
            if task.payload.get("n") == "b":
                release.wait(10)
            return None

    pool = _pool(ctx, SlowB())
    pool.start()
    try:

        def recorded_a() -> bool:
            tasks = {t.payload: t for t in journal.tasks.newest()}
            return tasks['{"n":"a"}'].status == "succeeded"

        deadline = time.monotonic() + 10
        while not recorded_a() and time.monotonic() < deadline:
            time.sleep(0.02)
        assert recorded_a()  # while b still runs
        assert seen == ["a", "b"]
        c = next(t for t in journal.tasks.newest() if t.payload == '{"n":"c"}')
        assert c.status == "running" and (c.heartbeat_ms or 0) >= T0
    finally:
        pool.stop(timeout_s=0.2)  # b is still blocked: stop gives up on it
        c = next(t for t in journal.tasks.newest() if t.payload == '{"n":"c"}')
        assert (c.status, c.attempt) == ("pending", 0)  # back, unrun, not counted
        release.set()


def test_a_heartbeat_records_the_batch_successes_so_far(ctx: ServiceContext) -> None:
    """A long handler's heartbeat first records the tasks its batch already ran, so their
    leases never run out unrecorded while it works."""
    journal = ctx.journal
    for n in "ab":
        _enqueue(journal, n, T0)
    statuses: list[str] = []

    class Beating:
        kind = KIND

        def run(self, task: TaskRun) -> str | None:
            if task.payload.get("n") == "b":
                assert task.heartbeat()
                first = next(t for t in journal.tasks.newest() if t.payload == '{"n":"a"}')
                statuses.append(first.status)
            return None

    pool = _pool(ctx, Beating())
    assert pool._claim_and_run(journal, T0)
    assert statuses == ["succeeded"]  # a was recorded while b was still running


def test_a_stopping_pool_claims_nothing_after_the_task_it_finishes(ctx: ServiceContext) -> None:
    journal = ctx.journal
    pool: TaskPool

    class StopOnA(Recorder):
        def run(self, task: TaskRun) -> str | None:
            with pool._cond:
                pool._stopping = True
            return super().run(task)

    pool = _pool(ctx, StopOnA())
    a, b = _enqueue(journal, "a", T0), _enqueue(journal, "b", T0)
    assert pool._claim_and_run(journal, T0)
    ta, tb = journal.tasks.get(a.task_id), journal.tasks.get(b.task_id)
    assert ta is not None and tb is not None
    assert (ta.status, tb.status, tb.attempt) == ("succeeded", "pending", 0)


def test_a_worker_survives_a_journal_failure_and_goes_on_claiming(
    ctx: ServiceContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A transient journal error (``database is locked`` past the busy timeout) in a claim
    must not end the worker thread: with one worker, the queue would stay unserved until the
    executor restarts."""
    from palyrad.journal.tasks import Tasks

    journal = ctx.journal
    real_claim = Tasks.claim
    calls = {"n": 0}

    def flaky(self: Tasks, *args: object, **kw: object) -> list[Task]:
        calls["n"] += 1
        if calls["n"] == 1:
            raise sqlite3.OperationalError("database is locked")
        return real_claim(self, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(Tasks, "claim", flaky)
    task = _enqueue(journal, "x", T0)
    rec = Recorder()
    pool = _pool(ctx, rec)
    pool.start()
    try:
        wait_until(lambda: (t := journal.tasks.get(task.task_id)) and t.status == "succeeded")
    finally:
        pool.stop(5.0)
    assert calls["n"] >= 2 and rec.order() == ["x"]
