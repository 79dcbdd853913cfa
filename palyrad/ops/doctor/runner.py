"""Running the checks: each in the registry's order, none able to take the others down.

With ``repair``: every check looks first; then each one that found something repairable
applies its safe fix (in the registry's order, service restarts last: ``REPAIR_LAST``);
then, if anything was repaired, every check looks again, so the report shows the state
after the repairs (a restarted node_rpc also makes ``rpc`` ok) with what each repair did.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from palyrad.ops.doctor.context import DoctorContext
from palyrad.ops.doctor.registry import CHECK_IDS, CHECKS, REPAIR_LAST
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
        found = [_look(c, ctx) for c in selected]
        if not repair:
            return DoctorReport(tuple(found))
        repaired = _repair(selected, found, ctx)
        if not repaired:
            return DoctorReport(tuple(found))
        ctx.forget_status()
        return DoctorReport(
            tuple(
                replace(_look(c, ctx), repaired=tuple(repaired[c.check_id]))
                if c.check_id in repaired
                else _look(c, ctx)
                for c in selected
            )
        )
    finally:
        ctx.close()


def _repair(
    checks: Sequence[Check[DoctorContext]], found: Sequence[CheckResult], ctx: DoctorContext
) -> dict[str, list[str]]:
    """Apply the repairs of what was found, services last; what each one did, by id."""
    todo = [
        c
        for c, r in zip(checks, found, strict=True)
        if r.repairable and r.status is not CheckStatus.OK
    ]
    todo.sort(key=lambda c: c.check_id in REPAIR_LAST)  # stable: otherwise registry order
    done: dict[str, list[str]] = {}
    for check in todo:
        try:
            said = check.repair(ctx)
        except Exception as exc:  # a failed repair is reported, never fatal to the run
            hint = f" ({exc.hint})" if isinstance(exc, PalyraError) and exc.hint else ""
            said = [f"repair failed: {exc}{hint}"]
        if said:
            done[check.check_id] = said
    return done


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


__all__ = ["CHECK_IDS", "run_doctor"]
