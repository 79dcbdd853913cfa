"""Stuck runs: a ``running`` run whose executor stopped heartbeating (SPEC §3 "Stuck runs").

One implementation of "release a stuck run", shared by the self-healing process (its ``run``
remediation) and ``palyra doctor --repair`` (its ``stuck_runs`` check): fail the run as
``heartbeat_lost``, kill its process group if it is still alive, and schedule the retry its
policy allows. Idempotent: ``runs.finish`` only finalizes a run that is still active, so a
second release (a retry after a crash, doctor and self-healing at once) changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

from palyrad.domain.runs import Run, RunStatus, retry_follow_up
from palyrad.journal import Journal
from palyrad.runtime.process_groups import kill_orphan_run, run_process_table
from routines.kinds import ErrorKind


@dataclass(frozen=True, slots=True)
class Released:
    run_id: str
    routine_id: str
    killed: bool  # its process group was still alive and got SIGKILL

    def describe(self) -> str:
        what = "failed it as heartbeat_lost"
        return what + ("; killed its process group" if self.killed else "")


def stuck_runs(journal: Journal, now_ms: int, stale_run_ms: int) -> list[Run]:
    """Running runs whose last heartbeat is older than ``stale_run_ms``."""
    return journal.leases.stale_running(now_ms - stale_run_ms)


def release_runs(
    journal: Journal, runs: list[Run], now_ms: int, stale_run_ms: int
) -> list[Released]:
    """Fail ``runs`` (stuck) as ``heartbeat_lost``, kill their process groups and queue the
    retries their policies allow. The caller pokes the executor and scheduler."""
    table = run_process_table() if runs else {}
    released = []
    for run in runs:
        killed = kill_orphan_run(run.run_id, run.pid, run.started_at_ms, table=table)
        journal.runs.finish(
            run.run_id,
            status=RunStatus.FAILED,
            finished_ms=now_ms,
            error_kind=ErrorKind.HEARTBEAT_LOST,
            error_message=f"no heartbeat for {stale_run_ms} ms"
            + ("; its process group was killed" if killed else ""),
            follow_up=retry_follow_up(run, RunStatus.FAILED, now_ms),
        )
        released.append(Released(run.run_id, run.routine_id, killed))
    return released
