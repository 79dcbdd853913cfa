"""What ``palyra doctor`` found: one ``CheckResult`` per check (the record of the ``Check``
seam, ``palyrad.seams``) and the report over all of them, with its JSON shape (SPEC §4.3).

``ok`` is false exactly when some check failed: warnings alone keep it true (and the exit
code 0). The JSON adds two keys to SPEC's ``{"id", "status", "message", "hint"}``, each only
when it has something to say: ``repaired`` (what ``--repair`` did for that check) and
``details`` (more lines of the same finding, e.g. the first validation errors).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from palyrad.seams import CheckResult, CheckStatus

__all__ = ["CheckResult", "CheckStatus", "DoctorReport", "fail", "ok", "warn"]


def ok(check_id: str, message: str, *, details: Sequence[str] = ()) -> CheckResult:
    """A check that found nothing to fix."""
    return CheckResult(check_id, CheckStatus.OK, message, None, details=tuple(details))


def warn(
    check_id: str,
    message: str,
    hint: str,
    *,
    repairable: bool = False,
    details: Sequence[str] = (),
) -> CheckResult:
    """Something worth fixing that does not make doctor fail."""
    return CheckResult(
        check_id, CheckStatus.WARN, message, hint, repairable, details=tuple(details)
    )


def fail(
    check_id: str,
    message: str,
    hint: str,
    *,
    repairable: bool = False,
    details: Sequence[str] = (),
) -> CheckResult:
    """Something broken: doctor exits 1."""
    return CheckResult(
        check_id, CheckStatus.FAIL, message, hint, repairable, details=tuple(details)
    )


def result_to_json(result: CheckResult) -> dict[str, Any]:
    """One check's object: SPEC's four keys, plus ``repaired`` / ``details`` when set."""
    out: dict[str, Any] = {
        "id": result.check_id,
        "status": result.status.value,
        "message": result.message,
        "hint": None if result.status is CheckStatus.OK else result.hint,
    }
    if result.repaired:
        out["repaired"] = list(result.repaired)
    if result.details:
        out["details"] = list(result.details)
    return out


@dataclass(frozen=True, slots=True)
class DoctorReport:
    """Every check's result, in the registry's order."""

    checks: tuple[CheckResult, ...]

    @property
    def ok(self) -> bool:
        """False exactly when some check failed."""
        return all(c.status is not CheckStatus.FAIL for c in self.checks)

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def count(self, status: CheckStatus) -> int:
        return sum(1 for c in self.checks if c.status is status)

    def get(self, check_id: str) -> CheckResult | None:
        return next((c for c in self.checks if c.check_id == check_id), None)

    def summary(self) -> str:
        """One line: how many checks, and how many of them warn or fail."""
        failures, warnings = self.count(CheckStatus.FAIL), self.count(CheckStatus.WARN)
        parts = [f"{len(self.checks) - failures - warnings} ok"]
        if warnings:
            parts.append(f"{warnings} warning{'s' if warnings != 1 else ''}")
        if failures:
            parts.append(f"{failures} failure{'s' if failures != 1 else ''}")
        repairable = sum(1 for c in self.checks if c.repairable and c.status is not CheckStatus.OK)
        tail = f" ({repairable} repairable: palyra doctor --repair)" if repairable else ""
        n = len(self.checks)
        return f"{n} check{'s' if n != 1 else ''}: " + ", ".join(parts) + tail

    def to_json(self) -> dict[str, Any]:
        """``{"ok", "checks": [{"id", "status", "message", "hint", ...}]}`` (SPEC §4.3)."""
        return {"ok": self.ok, "checks": [result_to_json(c) for c in self.checks]}
