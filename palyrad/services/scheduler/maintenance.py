"""Maintenance ticks (SPEC §6): each maintenance kind is enqueued on its ``[maintenance]``
interval, as a background task the executor's workers run.

The schedule (each kind's next due instant) lives in the journal (``STATE_MAINTENANCE``),
written in the transaction that enqueues, so a restart keeps it: a daemon that was down for
a day enqueues each kind once when it comes back, never once per missed interval. A new
home starts every kind one interval from its first start. A kind is never queued twice: each
enqueue carries ``unique_key = kind``, and while one is pending or running the tick only
moves on. The deadlines are the scheduler loop's own, independent of how far away the next
routine is; the workers' slots are their own, independent of how busy the run queue is.
"""

from __future__ import annotations

import logging

import orjson

from palyrad.domain.runs import new_ulid
from palyrad.domain.tasks import (
    EMBEDDINGS_BACKFILL,
    JOURNAL_VACUUM,
    MAINTENANCE_KINDS,
    MEMORY_MAINTENANCE,
    SKILL_REAUDIT,
)
from palyrad.journal import STATE_MAINTENANCE
from palyrad.services.context import ServiceContext

log = logging.getLogger("palyrad.scheduler")


class MaintenanceTicks:
    """The maintenance schedule: when each kind is next due, and enqueuing what is due."""

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.next_due: dict[str, int] = {}

    def intervals(self) -> dict[str, int]:
        """Each kind's interval from palyra.toml (re-read: SIGHUP may change them)."""
        cfg = self.ctx.config
        return {
            MEMORY_MAINTENANCE: cfg.memory_interval_ms,
            EMBEDDINGS_BACKFILL: cfg.backfill_interval_ms,
            SKILL_REAUDIT: cfg.skill_reaudit_interval_ms,
            JOURNAL_VACUUM: cfg.vacuum_interval_ms,
        }

    def load(self, now: int) -> None:
        """Read the schedule; a kind with none yet is due one interval from now."""
        raw = self.ctx.journal.state.get(STATE_MAINTENANCE)
        stored: dict[str, object] = {}
        if raw:
            try:
                loaded = orjson.loads(raw)
                stored = loaded if isinstance(loaded, dict) else {}
            except orjson.JSONDecodeError:
                stored = {}
        intervals = self.intervals()
        for kind in MAINTENANCE_KINDS:
            due = stored.get(kind)
            self.next_due[kind] = due if isinstance(due, int) else now + intervals[kind]
        # A shorter interval after a SIGHUP or a config edit takes effect at once.
        for kind, interval in intervals.items():
            self.next_due[kind] = min(self.next_due[kind], now + interval)

    @property
    def earliest_ms(self) -> int | None:
        return min(self.next_due.values()) if self.next_due else None

    def run(self, now: int) -> bool:
        """Enqueue every kind that is due (once, however late) and move its deadline one
        interval from now; True when a task was enqueued."""
        due = [kind for kind, at in self.next_due.items() if at <= now]
        if not due:
            return False
        intervals = self.intervals()
        enqueued = False
        journal = self.ctx.journal
        with journal.transaction():
            for kind in due:
                _task, added = journal.tasks.enqueue(
                    new_ulid(now), kind, "{}", now, priority=-10, unique_key=kind
                )
                enqueued = enqueued or added
                self.next_due[kind] = now + intervals[kind]
            journal.state.set(STATE_MAINTENANCE, orjson.dumps(self.next_due).decode(), now)
        log.info("maintenance enqueued", extra={"kinds": due, "added": enqueued})
        return enqueued
