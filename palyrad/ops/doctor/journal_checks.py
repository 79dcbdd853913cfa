"""Checks of the storage: the journal file (``journal``) and the SQLite library (``sqlite``).

Integrity: ``PRAGMA quick_check`` reads every page, so its cost grows with the journal
(run history is pruned, but 1 000 runs × 10 000 routines is a large file). It runs in full
when the journal is no bigger than ``QUICK_CHECK_MAX_BYTES`` or when it was asked for
(``palyra doctor --only journal``), and is skipped, saying so, otherwise: the whole doctor
run keeps to its one-second budget, and the deep check is one command away.
"""

from __future__ import annotations

import os

from palyrad.journal import SCHEMA_VERSION
from palyrad.journal.health import (
    MIN_SQLITE_VERSION,
    SQLITE_VERSION,
    SQLITE_VERSION_INFO,
    checkpoint_truncate,
    quick_check,
)
from palyrad.ops.doctor.check import DoctorCheck
from palyrad.ops.doctor.context import DoctorContext
from palyrad.ops.doctor.report import CheckResult, fail, ok, warn

WAL_WARN_BYTES = 64 * 1024 * 1024
QUICK_CHECK_MAX_BYTES = 64 * 1024 * 1024
QUICK_CHECK_PROBLEMS = 10
MIB = 1024 * 1024


def _wal_bytes(ctx: DoctorContext) -> int:
    try:
        return os.stat(f"{ctx.home.journal}-wal").st_size
    except FileNotFoundError:
        return 0


def _size(n: int) -> str:
    return f"{n / MIB:.1f} MiB" if n >= MIB else f"{n // 1024} KiB"


# A failed write this recent is a live problem (fail); older ones, since the daemon started,
# are worth a look (warn). The same minute keeps the self-healing ``journal`` incident open.
WRITE_FAILURE_LIVE_MS = 60_000


def _recent_write_failures(ctx: DoctorContext) -> CheckResult | None:
    """The running daemon's services report failed journal writes to the supervisor (kept
    per service in run/status.json): a full disk, an I/O error, a lock held too long."""
    if not ctx.running:
        return None
    failures = sorted(
        (p.journal_error["at_ms"], p.name, str(p.journal_error.get("error")))
        for p in ctx.status.processes
        if p.journal_error and isinstance(p.journal_error.get("at_ms"), int)
    )
    if not failures:
        return None
    at_ms, _name, error = failures[-1]
    who = ", ".join(sorted({f[1] for f in failures}))
    ago_s = max(0, ctx.now_ms - at_ms) // 1000
    message = f"journal writes failed in {who}; the last {ago_s} s ago: {error}"
    hint = "check free space (palyra doctor --only disk) and the journal's permissions"
    if ctx.now_ms - at_ms <= WRITE_FAILURE_LIVE_MS:
        return fail("journal", message, hint)
    return warn("journal", message + " (since recovered)", hint)


class JournalCheck(DoctorCheck):
    """The journal opens, is a database of this Palyra's schema, in WAL mode, intact, and
    its WAL is not oversized."""

    check_id = "journal"

    def run(self, ctx: DoctorContext) -> CheckResult:
        access = ctx.journal_access
        path = ctx.home.journal
        if access.missing:
            return warn(
                self.check_id,
                f"no journal yet ({path} is created at the first daemon start)",
                "palyra daemon start",
            )
        if access.error is not None or access.journal is None or access.facts is None:
            error = access.error
            return fail(
                self.check_id,
                str(error) if error else f"{path}: cannot be opened",
                (error.hint if error else None) or "run: palyra doctor --only journal",
            )
        facts = access.facts
        if facts.schema_version > SCHEMA_VERSION:
            return fail(
                self.check_id,
                f"{path}: schema version {facts.schema_version} is newer than this Palyra"
                f" ({SCHEMA_VERSION})",
                "upgrade Palyra (a newer version wrote this journal)",
            )
        found: list[CheckResult] = []
        if facts.schema_version < SCHEMA_VERSION:
            found.append(
                warn(
                    self.check_id,
                    f"schema version {facts.schema_version}: migrated to {SCHEMA_VERSION}"
                    " at the next daemon start",
                    "palyra daemon restart" if ctx.running else "palyra daemon start",
                )
            )
        if facts.journal_mode != "wal":
            found.append(
                warn(
                    self.check_id,
                    f"journal mode is {facts.journal_mode}, not WAL (palyrad sets WAL when it"
                    " opens the journal)",
                    "palyra daemon start",
                )
            )
        size = facts.page_size * facts.page_count
        checked = "skipped (large journal; run: palyra doctor --only journal)"
        if ctx.deep or size <= QUICK_CHECK_MAX_BYTES:
            problems = quick_check(access.journal, QUICK_CHECK_PROBLEMS)
            if problems != ["ok"]:
                return fail(
                    self.check_id,
                    f"{path}: the integrity check found problems: {problems[0]}",
                    "back it up, then: palyra daemon stop; move it aside (a new journal is"
                    " created at start; run history is lost)",
                    details=problems,
                )
            checked = "ok"
        failed = _recent_write_failures(ctx)
        if failed is not None:
            found.append(failed)
        wal = _wal_bytes(ctx)
        if wal > WAL_WARN_BYTES:
            found.append(
                warn(
                    self.check_id,
                    f"the WAL is {_size(wal)} (over {_size(WAL_WARN_BYTES)}): every reader"
                    " scans it",
                    "palyra doctor --repair (checkpoints and truncates it)",
                    repairable=True,
                )
            )
        if any(f.status == "fail" for f in found):
            first = next(f for f in found if f.status == "fail")
            return fail(
                self.check_id,
                first.message,
                first.hint or "palyra doctor",
                details=[f.message for f in found if f is not first],
            )
        if found:
            first = found[0]
            return warn(
                self.check_id,
                first.message,
                first.hint or "palyra doctor --repair",
                repairable=any(f.repairable for f in found),
                details=[f.message for f in found[1:]],
            )
        return ok(
            self.check_id,
            f"{path}: schema {facts.schema_version}, WAL mode, {_size(size)}"
            f" (WAL {_size(wal)}), integrity {checked}",
        )

    def repair(self, ctx: DoctorContext) -> list[str]:
        """Checkpoint an oversized WAL into the database and truncate it."""
        if _wal_bytes(ctx) <= WAL_WARN_BYTES:
            return []
        with ctx.writable_journal() as journal:
            completed, frames = checkpoint_truncate(journal)
        if completed:
            return [f"checkpointed the WAL ({frames} frames) and truncated it"]
        return ["checkpoint incomplete (a reader or writer was busy); run it again later"]


class SqliteCheck(DoctorCheck):
    """The SQLite library is new enough for the journal's SQL (``RETURNING``, upserts)."""

    check_id = "sqlite"

    def run(self, ctx: DoctorContext) -> CheckResult:
        need = ".".join(map(str, MIN_SQLITE_VERSION))
        if SQLITE_VERSION_INFO < MIN_SQLITE_VERSION:
            return fail(
                self.check_id,
                f"SQLite {SQLITE_VERSION} is older than {need} (RETURNING and ON CONFLICT"
                " … DO UPDATE are used)",
                f"use a Python linked with SQLite ≥ {need} (python.org and distribution"
                " builds of Python 3.11+ usually are)",
            )
        return ok(self.check_id, f"SQLite {SQLITE_VERSION} (≥ {need} needed)")
