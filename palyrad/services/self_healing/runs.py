"""The ``run`` domain: a running run whose executor stopped heartbeating (SPEC §3, §6).

Subject: the run id. The remediation fails it as ``heartbeat_lost``, kills its process group
and queues the retry its policy allows (``palyrad.ops.stuck_runs``, shared with ``palyra
doctor --repair``); the next sweep no longer finds it and resolves the incident.
"""

from __future__ import annotations

from palyrad.ops.stuck_runs import release_runs, stuck_runs
from palyrad.seams import Finding
from palyrad.services.context import ServiceContext


class StuckRunDetector:
    domain = "run"

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    def detect(self, now_ms: int, open_subjects: frozenset[str]) -> list[Finding]:
        stale_ms = self.ctx.config.stale_run_ms
        return [
            Finding(
                "run",
                run.run_id,
                "warning",
                f"run {run.run_id} of {run.routine_id} (attempt {run.attempt}) has had no"
                f" heartbeat for {(now_ms - (run.heartbeat_ms or 0)) / 1000:.1f} s"
                f" (stale_run_ms {stale_ms}): its executor stalled or died",
            )
            for run in stuck_runs(self.ctx.journal, now_ms, stale_ms)
        ]


class FailStuckRun:
    """Fail the run, kill its process group, queue its retry (idempotent: a run that is no
    longer running, or has heartbeated again, is left alone)."""

    domain = "run"
    action = "fail_run"
    journal_free = False

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    def apply(self, finding: Finding, now_ms: int) -> str:
        stale_ms = self.ctx.config.stale_run_ms
        runs = [
            r for r in stuck_runs(self.ctx.journal, now_ms, stale_ms) if r.run_id == finding.subject
        ]
        if not runs:
            return "the run is no longer stuck; nothing to do"
        (released,) = release_runs(self.ctx.journal, runs, now_ms, stale_ms)
        self.ctx.poke("executor", "scheduler")
        return released.describe()
