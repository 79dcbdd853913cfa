"""Running the checks: each in the registry's order, none able to take the others down,
and — with ``repair`` — each one's safe fix applied right after it found something, then
looked at again so the report shows the state after the repair.

Order matters for repairs: ``home`` fixes the folders' modes before ``processes`` restarts
a service that crashed on them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from palyrad.ops.doctor.context import DoctorContext
from palyrad.ops.doctor.registry import CHECK_IDS, CHECKS
from palyrad.ops.doctor.report import CheckResult, CheckStatus, DoctorReport, fail
from palyrad.runtime.clock import SYSTEM_CLOCK
from palyrad.runtime.home import Home
from palyrad.seams import Check, Clock
from routines.errors import InvalidInput, PalyraError


def run_doctor(
    home: Home,
    *,
    only: Sequence[str] = (),
    repair: bool = False,
    clock: Clock | None = None,
    checks: Sequence[Check[DoctorContext]] = CHECKS,
) -> DoctorReport:
    """Run every check (or the ``only`` ones, in the registry's order) on ``home``; with
    ``repair``, apply each safe fix. Changes nothing without ``repair``. An unknown id in
    ``only`` is ``InvalidInput`` (exit 2) naming the known ids. ``checks`` is for tests."""
    known = [c.check_id for c in checks]
    unknown = sorted({i for i in only if i not in known})
    if unknown:
        raise InvalidInput(
            f"unknown check id{'s' if len(unknown) > 1 else ''}: {', '.join(unknown)}",
            f"known: {', '.join(known)}",
        )
    selected = [c for c in checks if not only or c.check_id in only]
    ctx = DoctorContext(home, clock=clock or SYSTEM_CLOCK, repair=repair, deep="journal" in only)
    try:
        return DoctorReport(tuple(run_check(c, ctx) for c in selected))
    finally:
        ctx.close()


def run_check(check: Check[DoctorContext], ctx: DoctorContext) -> CheckResult:
    """One check, its repair when asked for and possible, and the look after it."""
    found = _look(check, ctx)
    if not (ctx.repair and found.repairable and found.status is not CheckStatus.OK):
        return found
    try:
        done = check.repair(ctx)
    except Exception as exc:  # a failed repair is reported, never fatal to the run
        hint = f" ({exc.hint})" if isinstance(exc, PalyraError) and exc.hint else ""
        return replace(found, repaired=(f"repair failed: {exc}{hint}",))
    if not done:
        return found
    return replace(_look(check, ctx), repaired=tuple(done))


def _look(check: Check[DoctorContext], ctx: DoctorContext) -> CheckResult:
    try:
        return check.run(ctx)
    except Exception as exc:  # a bug in one check must not hide the others' findings
        return fail(
            check.check_id,
            f"check crashed: {type(exc).__name__}: {exc}",
            f"a bug in palyra doctor (the other checks ran): report it with the output of"
            f" palyra doctor --only {check.check_id}",
        )


__all__ = ["CHECK_IDS", "run_check", "run_doctor"]
