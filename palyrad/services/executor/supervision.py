"""Watching started runs: cancel requests, timeouts, the kill grace, the EOF grace, and the
graceful stop of them all.

A run is finalized only once its main process exited *and* its output pipe is drained, so the
log and the tail are complete; whatever is left in its process group then is killed.
"""

from __future__ import annotations

import contextlib
import signal
import subprocess
import time

from palyrad.domain.runs import RunStatus
from palyrad.runtime.process_groups import signal_group
from palyrad.services.executor.active_run import ActiveRun
from palyrad.services.executor.finalize import Finalizer
from palyrad.services.executor.output import ChildIO
from palyrad.services.executor.spawn import LAUNCH_LEAD_S, Launcher
from palyrad.services.executor.state import ExecutorPart, ExecutorState
from routines.kinds import ErrorKind

KILL_GRACE_MS = 10_000
EOF_GRACE_MS = 2_000
FORCE_EOF_MS = 1_000


class RunSupervision(ExecutorPart):
    """Applies cancels and timeouts to this executor's runs and finalizes the ended ones."""

    def __init__(
        self, state: ExecutorState, io: ChildIO, finalizer: Finalizer, launcher: Launcher
    ) -> None:
        super().__init__(state)
        self.io = io
        self.finalizer = finalizer
        self.launcher = launcher

    def _terminate(self, active: ActiveRun, reason: ErrorKind, now: int) -> None:
        if active.term_sent_ms is None:
            active.reason = active.reason or reason
            active.term_sent_ms = now
            active.signal(signal.SIGTERM)

    def supervise(self, now: int) -> None:
        """Cancel what was asked, stop what ran past its timeout (SIGTERM, then SIGKILL after
        the grace), and finalize runs that ended; armed runs due meanwhile still spawn on
        their instant."""
        for run_id in self.journal.leases.cancel_requested(self.owner):
            active = self.active.get(run_id)
            if active is not None:
                self._terminate(active, ErrorKind.CANCELLED, now)
            elif (prepared := self.armed.pop(run_id, None)) is not None:
                prepared.discard()
                self.journal.runs.finish(
                    run_id,
                    status=RunStatus.CANCELLED,
                    finished_ms=now,
                    error_kind=ErrorKind.CANCELLED,
                    error_message="cancelled before it started",
                    owner=self.owner,
                )
        for active in list(self.active.values()):
            if active.exited_ms is None:
                if now >= active.deadline_ms:
                    self._terminate(active, ErrorKind.TIMEOUT, now)
                if (
                    active.term_sent_ms is not None
                    and not active.killed
                    and now - active.term_sent_ms >= KILL_GRACE_MS
                ):
                    active.killed = True
                    active.signal(signal.SIGKILL)
                continue
            if not active.eof:
                if now - active.exited_ms < EOF_GRACE_MS:
                    continue
                # The main process is gone but something holds the pipe open: kill the group
                # (and, for a run we are stopping, what left it), and if the pipe outlives
                # that too, stop waiting for it.
                if active.reason is not None:
                    active.signal(signal.SIGKILL)
                else:
                    signal_group(active.proc.pid, signal.SIGKILL)
                if now - active.exited_ms < EOF_GRACE_MS + FORCE_EOF_MS:
                    continue
                self.io.force_eof(active)
            self.finalizer.finalize(active, now)
            self.launcher.launch_due(LAUNCH_LEAD_S)

    def finish_ready(self) -> None:
        """Finalize the runs whose process exited and whose output pipe is drained."""
        now = self.clock.now_ms()
        for active in list(self.active.values()):
            if active.exited_ms is not None and active.eof:
                self.finalizer.finalize(active, now)

    def stop_all(self) -> None:
        """Stop: SIGTERM every run, SIGKILL after the deadline, finalize them. Armed runs
        never started: they go back to the queue for the next start.

        A requested stop ends the runs ``daemon_stopped``; a stop because the supervisor died
        (the daemon crashed, SPEC §3) ends them ``daemon_crashed``, as the next start's
        recovery would have — either way with their retry policy."""
        reason = ErrorKind.DAEMON_CRASHED if self.ctx.supervisor_lost else ErrorKind.DAEMON_STOPPED
        for prepared in self.armed.values():
            prepared.discard()
            self.journal.leases.release(prepared.run.run_id, self.owner, self.clock.now_ms())
        self.armed.clear()
        now = self.clock.now_ms()
        for active in self.active.values():
            if active.exited_ms is None:  # finished runs are finalized as what they were
                self._terminate(active, reason, now)
        # The stop deadline is a duration (monotonic), whatever the wall clock does meanwhile.
        grace_ms = self.ctx.stop_timeout_ms
        if grace_ms is None:
            grace_ms = self.ctx.config.stop_timeout_ms
        deadline = time.monotonic() + grace_ms / 1000
        while self.active and time.monotonic() < deadline:
            self.ctx.wait(0.2)
            self.finish_ready()
        for active in list(self.active.values()):
            active.signal(signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                active.proc.wait(timeout=5)
            self.io.reap(active)
            if not active.eof:
                self.io.force_eof(active)
            self.finalizer.finalize(active, self.clock.now_ms())
