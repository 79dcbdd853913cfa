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

import logging
import os
import threading
from collections.abc import Mapping

import orjson

from palyrad.domain.runs import new_token
from palyrad.journal import Journal, Task
from palyrad.seams import TaskHandler, TaskRun
from palyrad.services.context import ServiceContext

log = logging.getLogger("palyrad.tasks")

# A worker claims up to BATCH_MAX ready tasks at once and records them with the next claim;
# tasks not started within BATCH_WINDOW_MS of the batch go back to the queue.
BATCH_MAX = 32
BATCH_WINDOW_MS = 50
IDLE_CHECK_MS = 3_000  # re-read the queue at least this often (a lost poke costs no more)


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
            thread = threading.Thread(target=self._work, name=f"task-worker-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)

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
        for thread in self._threads:
            thread.join(timeout=timeout_s)

    # --- the workers -------------------------------------------------------------------------

    def _work(self) -> None:
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
                        if self._claim_and_run(journal, now):
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

    def _claim_and_run(self, journal: Journal, now: int) -> bool:
        """Claim a batch of ready tasks and run them in order, then record their successes
        together with the next batch's claim: a backlog drains at one transaction per
        batch, not two per task. False when nothing was ready.

        A batch is short: once ``BATCH_WINDOW_MS`` has passed, the tasks not yet started go
        back to the queue unrun (so a higher-priority task enqueued meanwhile waits at most
        that, plus the handler running), and a handler's ``heartbeat()`` first records the
        batch's successes so far (so a slow handler never lets an earlier task's lease run
        out unrecorded, and run again)."""
        lease_ms = self.ctx.config.stale_task_ms
        clock = self.ctx.clock
        batch = journal.tasks.claim(self.owner, _tokens(BATCH_MAX), now, lease_ms)
        if not batch:
            return False
        while batch:
            started = clock.now_ms()
            done: list[Task] = []
            rest: list[Task] = []
            for i, task in enumerate(batch):
                if i and (clock.now_ms() - started > BATCH_WINDOW_MS or self._is_stopping()):
                    rest = batch[i:]
                    break
                if self._execute(journal, task, lease_ms, done, batch[i + 1 :]):
                    done.append(task)
            now = clock.now_ms()
            with journal.transaction():
                refused = self._record(journal, done, now)
                for task in rest:
                    journal.tasks.release(task.task_id, str(task.lease_token), now)
                batch = (
                    []
                    if self._is_stopping()
                    else journal.tasks.claim(self.owner, _tokens(BATCH_MAX), now, lease_ms)
                )
            for task in refused:
                log.warning(
                    "task finished after its lease was taken over; its result was refused",
                    extra={"task_id": task.task_id, "kind": task.kind},
                )
        return True

    def _is_stopping(self) -> bool:
        with self._cond:
            return self._stopping

    @staticmethod
    def _record(journal: Journal, done: list[Task], now: int) -> list[Task]:
        """Record ``done`` tasks as succeeded (inside the caller's transaction, or its own);
        those whose lease was taken over meanwhile are refused and returned. Empties
        ``done``."""
        refused = [t for t in done if not journal.tasks.succeed(t.task_id, str(t.lease_token), now)]
        done.clear()
        return refused

    def _execute(
        self,
        journal: Journal,
        task: Task,
        lease_ms: int,
        done: list[Task],
        waiting: list[Task],
    ) -> bool:
        """Run one attempt: True when its handler succeeded (the caller records it with the
        batch); a failure is recorded here at once (retry with backoff, or failed)."""
        token = str(task.lease_token)
        clock = self.ctx.clock

        def heartbeat() -> bool:
            now = clock.now_ms()
            with journal.transaction():
                self._record(journal, done, now)
                for other in waiting:
                    journal.tasks.heartbeat(other.task_id, str(other.lease_token), now, lease_ms)
                return journal.tasks.heartbeat(task.task_id, token, now, lease_ms)

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
            return False
        log.debug("task ran", extra={"task_id": task.task_id, "note": note})
        return True


def _retry_wait_s(failures: int) -> float:
    """The wait after ``failures`` journal failures in a row: 50 ms doubling, at most
    IDLE_CHECK_MS."""
    return min(0.05 * (1 << min(failures - 1, 10)), IDLE_CHECK_MS / 1000)


def _tokens(n: int) -> list[str]:
    return [new_token() for _ in range(n)]
