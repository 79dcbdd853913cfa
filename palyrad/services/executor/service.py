"""The executor service: claims decided pending runs, runs them, finalizes them.

Running runs are heartbeated; a run the executor can no longer vouch for (its executor died)
is finalized ``daemon_crashed`` at the next start.

One thread does everything: child output pipes, child exits (pidfds) and pokes are fds in
the service's one selector. Two threads per run (a pump and a waiter) cost hundreds of thread
starts a second under load, and every one of them competes for the GIL exactly when the next
run is due — the main source of start-lateness tails we measured.

The background queue's workers are threads of this process (``task_pool``), with slots of
their own: the loop only nudges them.

The jobs live in their own modules: ``claims`` (recovery, choosing and leasing), ``actions``
(one runner per action kind), ``spawn`` (prepare, launch on the instant), ``output`` (pipes,
stdin, exits), ``supervision`` (cancels, timeouts, graceful stop), ``finalize`` (outcome,
retry, delivery, events). This module composes them on one shared state and owns the order
of work and the sleeps.
"""

from __future__ import annotations

from palyrad.domain.runs import ARM_AHEAD_MS
from palyrad.journal import Journal
from palyrad.services.context import ServiceContext
from palyrad.services.executor.actions import default_runners
from palyrad.services.executor.active_run import ActiveRun
from palyrad.services.executor.claims import Claims
from palyrad.services.executor.finalize import Finalizer
from palyrad.services.executor.output import ChildIO
from palyrad.services.executor.spawn import LAUNCH_LEAD_S, Launcher, Prepared
from palyrad.services.executor.state import ExecutorState
from palyrad.services.executor.supervision import EOF_GRACE_MS, KILL_GRACE_MS, RunSupervision
from palyrad.services.executor.task_pool import TaskPool
from palyrad.services.executor.tasks import default_handlers
from routines.timefmt import seconds_until

IDLE_WAIT_S = 3.0


class Executor:
    """One executor's parts over one shared state: what the loop (and the tests) drive."""

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.state = ExecutorState(ctx)
        self.journal: Journal = self.state.journal
        self.owner = self.state.owner
        self.io = ChildIO(self.state)
        self.finalizer = Finalizer(self.state)
        runners = default_runners(
            lambda: ctx.config.agent_command, ctx.home, lambda: self.journal, ctx.clock.now_ms
        )
        self.launcher = Launcher(self.state, runners, self.io, self.finalizer)
        self.claims = Claims(self.state, self.launcher)
        self.supervision = RunSupervision(self.state, self.io, self.finalizer, self.launcher)
        self.tasks = TaskPool(ctx, default_handlers(), ctx.config.task_workers)
        self.state.nudge_tasks = self.tasks.nudge

    @property
    def active(self) -> dict[str, ActiveRun]:
        """Started runs, by run id."""
        return self.state.active

    @property
    def armed(self) -> dict[str, Prepared]:
        """Claimed and prepared runs waiting for their instant, by run id."""
        return self.state.armed

    def recover(self) -> None:
        """Finalize a dead executor's runs (see ``Claims.recover``)."""
        self.claims.recover()

    def claim_and_start(self) -> None:
        """Claim runnable runs up to capacity (see ``Claims.claim_and_start``)."""
        self.claims.claim_and_start()

    def launch_due(self, lead_s: float = 0.0) -> None:
        """Spawn armed runs due within ``lead_s`` (see ``Launcher.launch_due``)."""
        self.launcher.launch_due(lead_s)

    def supervise(self, now: int) -> None:
        """Cancels, timeouts and finalization (see ``RunSupervision.supervise``)."""
        self.supervision.supervise(now)

    def stop_all(self) -> None:
        """Graceful stop (see ``RunSupervision.stop_all``)."""
        self.supervision.stop_all()

    def heartbeat(self, now: int) -> None:
        """Vouch for this executor's running runs (self-healing fails stale ones)."""
        if self.active:
            self.journal.leases.heartbeat(self.owner, now)

    def next_wake_s(self, now: int) -> float:
        """Seconds until the loop has something to do: a deadline, a grace, a heartbeat, an
        armed instant, the next pending run (if there is capacity), or the idle cap."""
        wake = now + int(IDLE_WAIT_S * 1000)
        for a in self.active.values():
            wake = min(wake, a.deadline_ms)
            if a.term_sent_ms is not None:
                wake = min(wake, a.term_sent_ms + KILL_GRACE_MS)
            if a.exited_ms is not None and not a.eof:
                wake = min(wake, a.exited_ms + EOF_GRACE_MS, now + 100)
        wake = min(wake, now + self.ctx.config.heartbeat_interval_ms)
        for p in self.armed.values():
            wake = min(wake, p.launch_ms)
        nxt = self.journal.leases.next_runnable_ms()
        if (
            nxt is not None
            and len(self.active) + len(self.armed) < self.ctx.config.max_concurrent_runs
        ):
            wake = min(wake, max(nxt - ARM_AHEAD_MS, now))
        # A real sleep to a wall instant, at the clock's full resolution: a duration.
        return max(0.0, seconds_until(wake))


def run_executor(ctx: ServiceContext) -> None:
    """The executor process's loop: launch what is due first, then supervise and claim."""
    ex = Executor(ctx)
    ex.recover()
    ex.tasks.start()
    ctx.ready()
    last_heartbeat = 0
    try:
        while not ctx.stopping:
            ex.launch_due(LAUNCH_LEAD_S)
            now = ctx.clock.now_ms()
            ex.supervise(now)
            ex.claim_and_start()
            ex.launch_due(LAUNCH_LEAD_S)
            now = ctx.clock.now_ms()
            if now - last_heartbeat >= ctx.config.heartbeat_interval_ms:
                ex.heartbeat(now)
                last_heartbeat = now
            if ctx.wait(ex.next_wake_s(now)):
                ex.tasks.nudge()  # a poke may be a task enqueued (the CLI, self-healing)
    finally:
        ex.stop_all()
        ex.tasks.stop(timeout_s=5.0)
