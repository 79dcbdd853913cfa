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
        try:
            while True:
                with self._cond:
                    if self._stopping:
                        return
                    generation = self._generation
                now = self.ctx.clock.now_ms()
                version = journal.tasks.version()
                if version != seen_version or now >= next_check:
                    seen_version = version  # read first: a change after it wakes us again
                    if self._claim_and_run(journal, now):
                        continue  # there may be more: claim again before sleeping
                    nxt = journal.tasks.next_wake_ms()
                    next_check = (
                        now + IDLE_CHECK_MS if nxt is None else min(nxt, now + IDLE_CHECK_MS)
                    )
                with self._cond:
                    if self._generation == generation and not self._stopping:
                        self._cond.wait(max(0.0, (next_check - self.ctx.clock.now_ms()) / 1000))
        except Exception:
            # The journal failed under this worker (disk full, locked too long): the thread
            # ends and its claimed task's lease runs out; the process (and its runs) go on.
            log.exception("task worker stopped")
        finally:
            journal.close()

    def _claim_and_run(self, journal: Journal, now: int) -> bool:
        """Claim a task and run it, then the ones claimed in each success's transaction
        (a backlog drains at one transaction per task, not two); False when nothing was
        ready."""
        lease_ms = self.ctx.config.stale_task_ms
        claimed = journal.tasks.claim(self.owner, [new_token()], now, lease_ms)
        if not claimed:
            return False
        task: Task | None = claimed[0]
        while task is not None:
            task = self._execute(journal, task, lease_ms)
        return True

    def _execute(self, journal: Journal, task: Task, lease_ms: int) -> Task | None:
        """Run one attempt and record its outcome. On success the next ready task is
        claimed in the same transaction (unless the pool is stopping) and returned. Should
        that transaction fail, neither change is kept: the task is run again once its lease
        ends, as after a crash between the handler and its success (at least once)."""
        token = str(task.lease_token)
        clock = self.ctx.clock

        def heartbeat() -> bool:
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
            return None
        now = clock.now_ms()
        nxt: list[Task] = []
        with journal.transaction():
            succeeded = journal.tasks.succeed(task.task_id, token, now)
            with self._cond:
                stopping = self._stopping
            if not stopping:
                nxt = journal.tasks.claim(self.owner, [new_token()], now, lease_ms)
        if succeeded:
            log.debug("task succeeded", extra={"task_id": task.task_id, "note": note})
        else:
            log.warning(
                "task finished after its lease was taken over; its result was refused",
                extra={"task_id": task.task_id, "kind": task.kind},
            )
        return nxt[0] if nxt else None
