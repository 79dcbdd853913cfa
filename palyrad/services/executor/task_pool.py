"""The background queue's workers: ``[executor] task_workers`` threads in the executor
process, each claiming one task at a time with a lease and a fencing token (SPEC §6).

Slots: routine runs and tasks never share them. Runs have ``max_concurrent_runs``
subprocess slots, driven by the executor's one-thread loop; tasks have their own worker
threads. So a queue of 100 runs cannot delay a maintenance task, and a slow delivery or
vacuum cannot hold up a run's start (the loop only nudges the workers; they never run on it).

Each worker has its own journal connection. It claims when the queue changed (its counter,
one primary-key read) or when the next pending task becomes ready / a lease expires, and it
sleeps otherwise, woken by ``nudge`` (a poke of the executor, a delivery enqueued by the
finalizer). A handler that raises fails the attempt (retried with backoff), never the
process. A handler that works for long calls ``task.heartbeat()`` to extend its lease; past
its lease, another claim takes the task over under a new token, and the stale worker's
result is refused by the journal.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field

import orjson

from palyrad.domain.runs import new_token
from palyrad.journal import Journal, Task
from palyrad.seams import TaskHandler, TaskReport, TaskRun
from palyrad.services.context import ServiceContext

log = logging.getLogger("palyrad.tasks")

# A worker claims up to BATCH_MAX ready tasks at once and records them with the next claim;
# tasks not started within BATCH_WINDOW_MS of the batch go back to the queue.
BATCH_MAX = 32
BATCH_WINDOW_MS = 50
# A handler running this long has its batch's earlier successes recorded (and the leases of
# the tasks waiting behind it extended) by the watchdog, checking every WATCHDOG_S.
FLUSH_AFTER_S = 1.0
WATCHDOG_S = 0.5
IDLE_CHECK_MS = 3_000  # re-read the queue at least this often (a lost poke costs no more)


@dataclass
class _Batch:
    """One worker's current batch, shared with the pool's watchdog and ``stop`` (under
    ``lock``): what ran and succeeded but is not recorded yet (``done``), what is claimed
    but not started (``waiting``), and since when the handler running now has run."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    done: list[Task] = field(default_factory=list)
    waiting: list[Task] = field(default_factory=list)
    running_since: float | None = None  # monotonic

    def take(self) -> tuple[list[Task], list[Task]]:
        """Hand over (done, waiting) to be recorded / released: they are no longer the
        worker's (it runs nothing taken from ``waiting``)."""
        with self.lock:
            done, waiting = self.done, self.waiting
            self.done, self.waiting = [], []
            return done, waiting


class TaskPool:
    """The executor's task workers."""

    def __init__(
        self, ctx: ServiceContext, handlers: Mapping[str, TaskHandler], workers: int
    ) -> None:
        self.ctx = ctx
        self.handlers = dict(handlers)
        self.owner = f"tasks:{ctx.instance}:{os.getpid()}"
        self.workers = max(1, workers)
        self._cond = threading.Condition()
        self._generation = 0
        self._stopping = False
        self._threads: list[threading.Thread] = []
        self._batches: list[_Batch] = []

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Give back the tasks a dead executor left running (their leases end now, so they
        are taken over at once under new tokens), then start the workers."""
        journal = self.ctx.journal
        now = self.ctx.clock.now_ms()
        for task in journal.tasks.newest(status="running", limit=10_000):
            if task.lease_owner != self.owner:
                journal.tasks.expire_lease(task.task_id, now)
        for index in range(self.workers):
            batch = _Batch()
            self._batches.append(batch)
            thread = threading.Thread(
                target=self._work, args=(batch,), name=f"task-worker-{index}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        threading.Thread(target=self._watchdog, name="task-watchdog", daemon=True).start()

    def nudge(self) -> None:
        """Something may have been enqueued: workers look at the queue again."""
        with self._cond:
            self._generation += 1
            self._cond.notify_all()

    def stop(self, timeout_s: float) -> None:
        """Let running handlers finish (up to ``timeout_s`` in all); claim nothing new. A
        handler still running then keeps its lease, and the next executor takes it over."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
        # A handler still running keeps its own lease; what its batch already ran is
        # recorded, and what it had not started goes back to the queue unrun (attempt not
        # counted) instead of waiting for the next executor to take it over as lost.
        journal = self.ctx.journal
        now = self.ctx.clock.now_ms()
        for thread, batch in zip(self._threads, self._batches, strict=True):
            if thread.is_alive():
                done, waiting = batch.take()
                with journal.transaction():
                    self._record(journal, done, now)
                    for task in waiting:
                        journal.tasks.release(task.task_id, str(task.lease_token), now)

    # --- the workers -------------------------------------------------------------------------

    def _watchdog(self) -> None:
        """While a handler runs long, record its batch's earlier successes and extend the
        leases of the tasks waiting behind it (its own connection: sqlite3 connections
        belong to their thread). A slow handler thus never lets a finished task's lease run
        out unrecorded — it would be taken over and run again — nor the waiting ones'."""
        journal: Journal | None = None
        try:
            while True:
                with self._cond:
                    if self._stopping:
                        return
                    self._cond.wait(WATCHDOG_S)
                    if self._stopping:
                        return
                for batch in self._batches:
                    with batch.lock:
                        since = batch.running_since
                        if since is None or time.monotonic() - since < FLUSH_AFTER_S:
                            continue
                        done, batch.done = batch.done, []
                        waiting = list(batch.waiting)
                    if not done and not waiting:
                        continue
                    try:
                        journal = journal or self.ctx.open_journal()
                        self._flush(journal, done, waiting)
                    except Exception:
                        log.warning("task watchdog: could not record a batch", exc_info=True)
        finally:
            if journal is not None:
                journal.close()

    def _flush(self, journal: Journal, done: list[Task], waiting: list[Task]) -> None:
        """Record ``done`` and extend the leases of ``waiting`` (one transaction)."""
        now = self.ctx.clock.now_ms()
        lease_ms = self.ctx.config.stale_task_ms
        with journal.transaction():
            refused = self._record(journal, done, now)
            for task in waiting:
                journal.tasks.heartbeat(task.task_id, str(task.lease_token), now, lease_ms)
        _log_refused(refused)

    def _work(self, batch: _Batch) -> None:
        journal = self.ctx.open_journal()
        seen_version = -1
        next_check = 0
        generation = -1
        failures = 0
        try:
            while True:
                with self._cond:
                    if self._stopping:
                        return
                    generation = self._generation
                try:
                    now = self.ctx.clock.now_ms()
                    version = journal.tasks.version()
                    if version != seen_version or now >= next_check:
                        seen_version = version  # read first: a change after it wakes us again
                        if self._claim_and_run(journal, now, batch):
                            failures = 0
                            continue  # there may be more: claim again before sleeping
                        nxt = journal.tasks.next_wake_ms()
                        next_check = (
                            now + IDLE_CHECK_MS if nxt is None else min(nxt, now + IDLE_CHECK_MS)
                        )
                    failures = 0
                except Exception:
                    # The journal failed under this worker (disk full, locked too long): its
                    # claimed tasks' leases run out and are taken over; the worker waits and
                    # tries again (a worker that ended here would leave the queue unserved
                    # until the executor restarts, with self-healing requeueing in vain).
                    failures += 1
                    log.exception("task worker: the journal failed; trying again")
                    seen_version = -1
                    with self._cond:
                        if not self._stopping:
                            self._cond.wait(_retry_wait_s(failures))
                    continue
                with self._cond:
                    if self._generation == generation and not self._stopping:
                        self._cond.wait(max(0.0, (next_check - self.ctx.clock.now_ms()) / 1000))
        finally:
            journal.close()

    def _claim_and_run(self, journal: Journal, now: int, batch: _Batch | None = None) -> bool:
        """Claim a batch of ready tasks and run them in order, then record their successes
        together with the next batch's claim: a backlog drains at one transaction per
        batch, not two per task. False when nothing was ready.

        A batch is short: once ``BATCH_WINDOW_MS`` has passed, the tasks not yet started go
        back to the queue unrun (so a higher-priority task enqueued meanwhile waits at most
        that, plus the handler running), and a handler's ``heartbeat()`` first records the
        batch's successes so far (so a slow handler never lets an earlier task's lease run
        out unrecorded, and run again)."""
        batch = _Batch() if batch is None else batch
        lease_ms = self.ctx.config.stale_task_ms
        clock = self.ctx.clock
        claimed = journal.tasks.claim(self.owner, _tokens(BATCH_MAX), now, lease_ms)
        if not claimed:
            return False
        while claimed:
            with batch.lock:
                batch.waiting = list(claimed)
            started = clock.now_ms()
            for i in range(len(claimed)):
                with batch.lock:
                    late = clock.now_ms() - started > BATCH_WINDOW_MS
                    over = i > 0 and (late or self._is_stopping())
                    if over or not batch.waiting:
                        break  # the rest goes back (or ``stop`` took it)
                    task = batch.waiting.pop(0)
                    batch.running_since = time.monotonic()
                ok, report = self._execute(journal, task, lease_ms, batch)
                with batch.lock:
                    batch.running_since = None
                    if ok:
                        # ``error`` of a done task is what its success records (a report)
                        batch.done.append(dataclasses.replace(task, error=report))
            done, rest = batch.take()
            now = clock.now_ms()
            with journal.transaction():
                refused = self._record(journal, done, now)
                for task in rest:
                    journal.tasks.release(task.task_id, str(task.lease_token), now)
                claimed = (
                    []
                    if self._is_stopping()
                    else journal.tasks.claim(self.owner, _tokens(BATCH_MAX), now, lease_ms)
                )
            _log_refused(refused)
        return True

    def _is_stopping(self) -> bool:
        with self._cond:
            return self._stopping

    @staticmethod
    def _record(journal: Journal, done: list[Task], now: int) -> list[Task]:
        """Record ``done`` tasks as succeeded (inside the caller's transaction, or its own);
        those whose lease was taken over meanwhile are refused and returned."""
        return [
            t
            for t in done
            if not journal.tasks.succeed(t.task_id, str(t.lease_token), now, report=t.error)
        ]

    def _execute(
        self,
        journal: Journal,
        task: Task,
        lease_ms: int,
        batch: _Batch,
    ) -> tuple[bool, str | None]:
        """Run one attempt: True when its handler succeeded (the caller records it with the
        batch, with the handler's ``TaskReport`` if it made one); a failure is recorded here
        at once (retry with backoff, or failed)."""
        token = str(task.lease_token)
        clock = self.ctx.clock

        def heartbeat() -> bool:
            with batch.lock:
                done, batch.done = batch.done, []
                waiting = list(batch.waiting)
            self._flush(journal, done, waiting)
            return journal.tasks.heartbeat(task.task_id, token, clock.now_ms(), lease_ms)

        try:
            handler = self.handlers.get(task.kind)
            if handler is None:
                raise LookupError(f"no handler for task kind {task.kind!r}")
            note = handler.run(
                TaskRun(
                    task_id=task.task_id,
                    kind=task.kind,
                    payload=orjson.loads(task.payload),
                    attempt=task.attempt,
                    max_attempts=task.max_attempts,
                    heartbeat=heartbeat,
                    journal=journal,
                    clock=clock,
                    home=self.ctx.home,
                    config=self.ctx.config,
                    poke=self.ctx.poke,
                )
            )
        except Exception as exc:
            after = journal.tasks.fail(
                task.task_id, token, clock.now_ms(), f"{type(exc).__name__}: {exc}"
            )
            log.warning(
                "task attempt failed",
                extra={
                    "task_id": task.task_id,
                    "kind": task.kind,
                    "attempt": task.attempt,
                    "error": str(exc),
                    "next": None if after is None else after.status,
                },
            )
            return False, None
        log.debug("task ran", extra={"task_id": task.task_id, "note": note})
        return True, (str(note) if isinstance(note, TaskReport) else None)


def _log_refused(refused: list[Task]) -> None:
    for task in refused:
        log.warning(
            "task finished after its lease was taken over; its result was refused",
            extra={"task_id": task.task_id, "kind": task.kind},
        )


def _retry_wait_s(failures: int) -> float:
    """The wait after ``failures`` journal failures in a row: 50 ms doubling, at most
    IDLE_CHECK_MS."""
    return min(0.05 * (1 << min(failures - 1, 10)), IDLE_CHECK_MS / 1000)


def _tokens(n: int) -> list[str]:
    return [new_token() for _ in range(n)]
