"""The self-healing service. At this stage: the run-heartbeat sweep.

A run whose executor stopped heartbeating for ``stale_run_ms`` is failed as
``heartbeat_lost`` and its process group killed — within ``stale_run_ms`` plus one sweep,
never the half hour the system we learned from left crashed runs "running".
"""

from __future__ import annotations

import logging

from palyrad.process_groups import kill_orphan_group
from palyrad.runs import RunStatus, retry_follow_up
from palyrad.services import ServiceContext
from routines.timefmt import now_ms

log = logging.getLogger("palyrad.self_healing")


def sweep_stale_runs(ctx: ServiceContext, now: int) -> int:
    """Fail and kill runs with a stale heartbeat; returns how many were remediated."""
    journal = ctx.journal
    stale = journal.stale_running(now - ctx.config.stale_run_ms)
    for run in stale:
        killed = kill_orphan_group(run.pid, run.started_at_ms)
        journal.finish_run(
            run.run_id,
            status=RunStatus.FAILED,
            finished_ms=now,
            error_kind="heartbeat_lost",
            error_message=f"no heartbeat for {ctx.config.stale_run_ms} ms"
            + ("; its process group was killed" if killed else ""),
            follow_up=retry_follow_up(run, RunStatus.FAILED.value, now),
        )
        log.warning("stuck run failed", extra={"run_id": run.run_id, "killed": killed})
    if stale:
        ctx.poke("executor", "scheduler")
    return len(stale)


def run_self_healing(ctx: ServiceContext) -> None:
    interval_s = max(0.5, min(5.0, ctx.config.stale_run_ms / 4000))
    ctx.ready()
    while not ctx.stopping:
        sweep_stale_runs(ctx, now_ms())
        ctx.wait(interval_s)
