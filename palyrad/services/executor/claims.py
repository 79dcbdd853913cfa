"""Which runs this executor takes: recovery at start, then choosing and leasing runnable runs.

A lease (``BEGIN IMMEDIATE``, the owner as fencing token) makes a run this executor's alone.
Runs due within ``ARM_AHEAD_MS`` are claimed ahead and prepared, so they spawn on their
instant (``armed``); see docs/daemon.md, "Starting on the instant".
"""

from __future__ import annotations

import logging

from palyrad.domain.run_spec import RunSpec
from palyrad.domain.runs import ARM_AHEAD_MS, Run, RunStatus, retry_follow_up
from palyrad.runtime.process_groups import kill_orphan_run, run_process_table
from palyrad.services.executor.spawn import LAUNCH_LEAD_S, Launcher
from palyrad.services.executor.state import ExecutorPart, ExecutorState
from routines.kinds import ErrorKind
from routines.model import Concurrency

log = logging.getLogger("palyrad.executor")


class Claims(ExecutorPart):
    """Recovers a dead executor's runs and claims runnable ones up to capacity."""

    def __init__(self, state: ExecutorState, launcher: Launcher) -> None:
        super().__init__(state)
        self.launcher = launcher

    def recover(self) -> None:
        """Finalize the runs a dead executor left behind; retry them if policy allows.

        Runs it left ``running``, and runs it leased and *may* have spawned (their id is in
        the spawn-intent log, the journal's ``started`` may not have been written), end
        ``failed`` / ``daemon_crashed`` and what they started is killed: re-spawning such a
        run as if new could execute its tick twice. Only leased runs that were provably
        never spawned (no intent) go back to the queue. The log is cleared last, so a crash
        during recovery just recovers again.
        """
        now = self.clock.now_ms()
        intents = self.intents.recorded()
        maybe_started = [
            run
            for run in self.journal.leases.leased_not_owned_by(self.owner)
            if run.run_id in intents and not run.cancel_requested
        ]
        orphans = self.journal.leases.running_not_owned_by(self.owner)
        # One /proc scan for all of them (a scan each would cost seconds after a busy crash).
        table = run_process_table() if maybe_started or orphans else {}
        # One transaction for all of them: hundreds of orphans after a busy crash, and the
        # start waits for this.
        with self.journal.transaction():
            for run in maybe_started:
                killed = kill_orphan_run(run.run_id, None, None, table=table)
                self._crashed(
                    run,
                    now,
                    "the daemon died while starting this run (it may have started)"
                    + ("; its processes were killed" if killed else ""),
                )
            released = self.journal.leases.release_foreign(self.owner, now)
            for run in orphans:
                killed = kill_orphan_run(run.run_id, run.pid, run.started_at_ms, table=table)
                self._crashed(
                    run,
                    now,
                    "the daemon died while this run was running"
                    + ("; its process group was killed" if killed else ""),
                )
        self.intents.clear()
        if orphans or released or maybe_started:
            log.warning(
                "recovered runs of a crashed executor",
                extra={
                    "orphans": len(orphans),
                    "maybe_started": len(maybe_started),
                    "released": released,
                },
            )

    def _crashed(self, run: Run, now: int, message: str) -> None:
        """End a dead executor's run ``daemon_crashed``, with its retry if policy allows."""
        self.journal.runs.finish(
            run.run_id,
            status=RunStatus.FAILED,
            finished_ms=now,
            error_kind=ErrorKind.DAEMON_CRASHED,
            error_message=message,
            follow_up=retry_follow_up(run, RunStatus.FAILED, now),
        )

    def claim_and_start(self) -> None:
        """Claim runnable runs up to capacity: due ones spawn now; ones due within
        ``ARM_AHEAD_MS`` are prepared and wait in ``armed`` for their instant."""
        capacity = self.ctx.config.max_concurrent_runs - len(self.active) - len(self.armed)
        if capacity <= 0 or self.ctx.stopping:
            return
        now = self.clock.now_ms()
        candidates = self.journal.leases.runnable(now + ARM_AHEAD_MS, capacity * 4 + 16)
        if not candidates:
            return
        busy = self.journal.leases.running_routine_ids()
        busy |= {a.run.routine_id for a in self.active.values()}
        busy |= {p.run.routine_id for p in self.armed.values()}
        heads = self.journal.runs.active_heads()
        chosen: list[Run] = []
        for run in candidates:
            spec = RunSpec.from_json(run.spec)
            exclusive = spec is None or spec.concurrency is not Concurrency.ALLOW
            if exclusive and (run.routine_id in busy or heads.get(run.routine_id) != run.chain_id):
                # One at a time, oldest chain first: queued and catch-up runs wait their
                # turn, and a retry waiting out its backoff keeps its place in line.
                continue
            chosen.append(run)
            if exclusive:
                busy.add(run.routine_id)
            if len(chosen) >= capacity:
                break
        leased = set(self.journal.leases.acquire([r.run_id for r in chosen], self.owner, now))
        for run in chosen:
            if run.run_id in leased and (prepared := self.launcher.prepare(run)) is not None:
                self.armed[run.run_id] = prepared
        # Due-now runs spawn at once (launch_ms 0 or past), the others on their instant.
        self.launcher.launch_due(LAUNCH_LEAD_S)
