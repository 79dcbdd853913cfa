"""Checks of the work in the journal: routines behind their schedule (``overdue``), runs
whose executor stopped heartbeating (``stuck_runs``), approvals waiting for the operator
(``approvals``) and open self-healing incidents (``incidents``)."""

from __future__ import annotations

from palyrad.domain.runs import RunStatus
from palyrad.ops.doctor.check import DoctorCheck, duration, listed, plural, without_journal
from palyrad.ops.doctor.context import DoctorContext
from palyrad.ops.doctor.report import CheckResult, fail, ok, warn
from palyrad.ops.stuck_runs import release_runs, stuck_runs
from palyrad.runtime.notify import poke_service

OVERDUE_AFTER_MS = 60_000  # a next fire this far in the past is overdue
LISTED_IDS = 5


class OverdueCheck(DoctorCheck):
    """Enabled routines whose next fire is more than a minute in the past."""

    check_id = "overdue"

    def run(self, ctx: DoctorContext) -> CheckResult:
        journal = ctx.journal
        if journal is None:
            return without_journal(ctx, self.check_id)
        cutoff = ctx.now_ms - OVERDUE_AFTER_MS
        count = journal.routines.count_due(cutoff)
        if not count:
            return ok(self.check_id, "no routine is behind its schedule")
        late = journal.routines.due(cutoff, LISTED_IDS)
        ids = [s.routine_id for s in late]
        oldest = late[0].next_fire_ms if late and late[0].next_fire_ms is not None else cutoff
        what = (
            f"{plural(count, 'routine')} overdue ({listed(ids, LISTED_IDS)}), the oldest by"
            f" {duration(ctx.now_ms - oldest)}"
        )
        if not ctx.running:
            return warn(
                self.check_id,
                f"{what}; they follow their misfire policy at the next start",
                "palyra daemon start",
            )
        return warn(
            self.check_id,
            f"{what} while palyrad runs: the scheduler is behind",
            f"palyra routines show {ids[0]} (why its last trigger did or did not run);"
            " see the processes check and logs/palyrad.log",
        )


class StuckRunsCheck(DoctorCheck):
    """Running runs whose heartbeat is older than ``[self_healing] stale_run_ms`` (repair:
    release them, as self-healing does); with the daemon stopped, runs a crash left
    ``running``."""

    check_id = "stuck_runs"

    def run(self, ctx: DoctorContext) -> CheckResult:
        journal = ctx.journal
        if journal is None:
            return without_journal(ctx, self.check_id)
        if not ctx.running:
            left = [r.run_id for r in journal.runs.active() if r.status == RunStatus.RUNNING]
            if not left:
                return ok(self.check_id, "no run is running")
            return warn(
                self.check_id,
                f"{plural(len(left), 'run')} left running by a stopped daemon ({listed(left)}):"
                " recovered as daemon_crashed at the next start",
                "palyra daemon start",
            )
        stale_ms = ctx.config.stale_run_ms
        stuck = stuck_runs(journal, ctx.now_ms, stale_ms)
        if not stuck:
            running = journal.runs.count_running()
            return ok(self.check_id, f"{plural(running, 'run')} running, none stuck")
        oldest = min(r.heartbeat_ms or ctx.now_ms for r in stuck)
        return fail(
            self.check_id,
            f"{plural(len(stuck), 'run')} without a heartbeat for over"
            f" {duration(stale_ms)} ({listed([r.run_id for r in stuck])}; the oldest silent"
            f" for {duration(ctx.now_ms - oldest)})",
            "palyra doctor --repair releases them (fails them as heartbeat_lost, kills their"
            " process groups, queues their retries)",
            repairable=True,
            details=[f"{r.run_id} (routine {r.routine_id})" for r in stuck],
        )

    def repair(self, ctx: DoctorContext) -> list[str]:
        """Release the stuck runs (``ops.stuck_runs``, shared with self-healing), then wake
        the executor and scheduler so retries and queued runs go on."""
        if not ctx.running:
            return []
        stale_ms = ctx.config.stale_run_ms
        with ctx.writable_journal() as journal:
            stuck = stuck_runs(journal, ctx.now_ms, stale_ms)
            released = release_runs(journal, stuck, ctx.now_ms, stale_ms)
        if released:
            poke_service(ctx.home.run_dir, "executor")
            poke_service(ctx.home.run_dir, "scheduler")
        return [f"released run {r.run_id} ({r.routine_id}): {r.describe()}" for r in released]


class ApprovalsCheck(DoctorCheck):
    """Approvals waiting for the operator (a routine that is new or changed and needs one)."""

    check_id = "approvals"

    def run(self, ctx: DoctorContext) -> CheckResult:
        journal = ctx.journal
        if journal is None:
            return without_journal(ctx, self.check_id)
        pending = journal.approvals.pending()
        if not pending:
            return ok(self.check_id, "no approval pending")
        ids = [p.routine_id for p in pending]
        return warn(
            self.check_id,
            f"{plural(len(ids), 'routine')} waiting for approval: {listed(ids, LISTED_IDS)}",
            f"palyra routines approve {ids[0]} (all: palyra routines approvals)",
        )


class IncidentsCheck(DoctorCheck):
    """Open self-healing incidents: critical ones fail, warnings warn."""

    check_id = "incidents"

    def run(self, ctx: DoctorContext) -> CheckResult:
        journal = ctx.journal
        if journal is None:
            return without_journal(ctx, self.check_id)
        open_ = journal.incidents.open_incidents()
        if not open_:
            return ok(self.check_id, "no open incident")
        critical = [i for i in open_ if i.severity == "critical"]
        first = (critical or open_)[0]
        lines = [f"{i.incident_id} {i.severity} {i.domain}/{i.subject}: {i.summary}" for i in open_]
        message = (
            f"{plural(len(open_), 'open incident')}"
            + (f" ({len(critical)} critical)" if critical else "")
            + f"; {first.domain}/{first.subject}: {first.summary}"
        )
        hint = f"palyra incidents show {first.incident_id} (all: palyra incidents list)"
        if critical:
            return fail(self.check_id, message, hint, details=lines[:LISTED_IDS])
        return warn(self.check_id, message, hint, details=lines[:LISTED_IDS])
