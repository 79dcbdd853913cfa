"""The self-healing service: heartbeats and conditions → incidents → safe remediations.

Every sweep (about once a second) runs ``IncidentEngine.sweep`` over the detectors of
``registry`` (stuck runs, silent or fatal services, refused definitions, low disk, failed
journal writes): incidents open and resolve with their conditions, and in ``auto`` mode the
safe fixes run (fail a stuck run and kill its process group; SIGKILL a silent service so the
supervisor restarts it). A stuck run is failed within ``stale_run_ms`` plus one sweep, never
the half hour the system we learned from left crashed runs "running".

It also checkpoints the WAL (off the scheduler's and executor's hot paths) and prunes run
history and old resolved incidents.
"""

from __future__ import annotations

import contextlib
import logging
import os

from palyrad.services.context import ServiceContext
from palyrad.services.self_healing.engine import IncidentEngine
from palyrad.services.self_healing.registry import detectors, remediations

log = logging.getLogger("palyrad.self_healing")


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
    ctx.journal.incidents.prune(now - cfg.max_age_days * DAY_MS)
    # Succeeded tasks (a delivery per run) go after a day; failed and cancelled ones stay
    # as long as run history, for `palyra tasks retry`.
    ctx.journal.tasks.prune(now - DAY_MS, ("succeeded",))
    ctx.journal.tasks.prune(now - cfg.max_age_days * DAY_MS)
    if logs:
        log.info("pruned run history", extra={"runs": len(logs)})
    return len(logs)


def sweep_interval_s(ctx: ServiceContext) -> float:
    """A sweep at least every second, and four per stale-run or silence window (re-read
    every time: SIGHUP may change them)."""
    cfg = ctx.config
    return min(CHECKPOINT_INTERVAL_MS, cfg.stale_run_ms / 4, cfg.process_silence_ms / 4) / 1000


def build_engine(ctx: ServiceContext) -> IncidentEngine:
    return IncidentEngine(
        ctx.journal,
        detectors(ctx),
        remediations(ctx),
        mode=lambda: ctx.config.self_healing_mode,
        on_event=lambda: ctx.poke("scheduler"),  # incident.* events for system_event routines
    )


def run_self_healing(ctx: ServiceContext) -> None:
    """The self-healing loop: checkpoint, sweep, prune; "now" from ``ctx.clock``."""
    engine = build_engine(ctx)
    ctx.ready()
    next_prune = ctx.clock.now_ms() + 30_000  # not at start-up: let the daemon settle first
    next_checkpoint = 0
    while not ctx.stopping:
        now = ctx.clock.now_ms()
        try:
            if now >= next_checkpoint:
                # Checkpoints (the only fsyncs in WAL + synchronous=NORMAL) happen here, so
                # the scheduler and executor never wait on the disk in their loops.
                ctx.journal.checkpoint()
                next_checkpoint = now + CHECKPOINT_INTERVAL_MS
            engine.sweep(now)
            if now >= next_prune:
                prune_history(ctx, now)
                next_prune = now + PRUNE_INTERVAL_MS
        except Exception:
            # A journal that cannot be written (disk full, I/O error) must not kill the one
            # process that reports it: the failure reached the supervisor through the write
            # hook, and the next sweep that can write opens the ``journal`` incident.
            log.exception("self-healing sweep failed; trying again")
        ctx.wait(sweep_interval_s(ctx))
