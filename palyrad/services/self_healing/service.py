"""The self-healing service. At this stage: the run-heartbeat sweep.

A run whose executor stopped heartbeating for ``stale_run_ms`` is failed as
``heartbeat_lost`` and its process group killed — within ``stale_run_ms`` plus one sweep,
never the half hour the system we learned from left crashed runs "running".
"""

from __future__ import annotations

import contextlib
import logging
import os

from palyrad.ops.stuck_runs import release_runs, stuck_runs
from palyrad.services.context import ServiceContext

log = logging.getLogger("palyrad.self_healing")


def sweep_stale_runs(ctx: ServiceContext, now: int) -> int:
    """Fail and kill runs with a stale heartbeat; returns how many were remediated."""
    stale = stuck_runs(ctx.journal, now, ctx.config.stale_run_ms)
    for released in release_runs(ctx.journal, stale, now, ctx.config.stale_run_ms):
        log.warning(
            "stuck run failed", extra={"run_id": released.run_id, "killed": released.killed}
        )
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
