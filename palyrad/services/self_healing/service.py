"""The self-healing service. At this stage: the run-heartbeat sweep.

A run whose executor stopped heartbeating for ``stale_run_ms`` is failed as
``heartbeat_lost`` and its process group killed — within ``stale_run_ms`` plus one sweep,
never the half hour the system we learned from left crashed runs "running".
"""

from __future__ import annotations

import contextlib
import logging
import os

from palyrad.domain.runs import RunStatus, retry_follow_up
from palyrad.runtime.process_groups import kill_orphan_run, run_process_table
from palyrad.services.context import ServiceContext
from routines.kinds import ErrorKind

log = logging.getLogger("palyrad.self_healing")


def sweep_stale_runs(ctx: ServiceContext, now: int) -> int:
    """Fail and kill runs with a stale heartbeat; returns how many were remediated."""
    journal = ctx.journal
    stale = journal.leases.stale_running(now - ctx.config.stale_run_ms)
    table = run_process_table() if stale else {}
    for run in stale:
        killed = kill_orphan_run(run.run_id, run.pid, run.started_at_ms, table=table)
        journal.runs.finish(
            run.run_id,
            status=RunStatus.FAILED,
            finished_ms=now,
            error_kind=ErrorKind.HEARTBEAT_LOST,
            error_message=f"no heartbeat for {ctx.config.stale_run_ms} ms"
            + ("; its process group was killed" if killed else ""),
            follow_up=retry_follow_up(run, RunStatus.FAILED, now),
        )
        log.warning("stuck run failed", extra={"run_id": run.run_id, "killed": killed})
    if stale:
        ctx.poke("executor", "scheduler")
    return len(stale)


PRUNE_INTERVAL_MS = 10 * 60_000
CHECKPOINT_INTERVAL_MS = 1_000
DAY_MS = 86_400_000


def prune_history(ctx: ServiceContext, now: int) -> int:
    """Keep the newest ``max_runs_per_routine`` runs per routine, none older than
    ``max_age_days``; logs follow their run. Consumed events older than a day go too."""
    cfg = ctx.config
    logs = ctx.journal.runs.prune(cfg.max_runs_per_routine, now - cfg.max_age_days * DAY_MS)
    for path in logs:
        with contextlib.suppress(OSError):
            os.unlink(path)
    ctx.journal.events.prune(now - DAY_MS)
    if logs:
        log.info("pruned run history", extra={"runs": len(logs)})
    return len(logs)


def run_self_healing(ctx: ServiceContext) -> None:
    """The self-healing loop: checkpoint, sweep stale runs, prune; "now" from ``ctx.clock``."""
    interval_s = min(CHECKPOINT_INTERVAL_MS / 1000, ctx.config.stale_run_ms / 4000)
    ctx.ready()
    next_prune = ctx.clock.now_ms() + 30_000  # not at start-up: let the daemon settle first
    next_checkpoint = 0
    while not ctx.stopping:
        now = ctx.clock.now_ms()
        if now >= next_checkpoint:
            # Checkpoints (the only fsyncs in WAL + synchronous=NORMAL) happen here, so the
            # scheduler and executor never wait on the disk in their loops.
            ctx.journal.checkpoint()
            next_checkpoint = now + CHECKPOINT_INTERVAL_MS
        sweep_stale_runs(ctx, now)
        if now >= next_prune:
            prune_history(ctx, now)
            next_prune = now + PRUNE_INTERVAL_MS
        ctx.wait(interval_s)
