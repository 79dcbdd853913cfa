"""The base every doctor check derives from, and the small phrases they share.

A check is a class with a ``check_id``, a ``run`` that only looks, and a ``repair`` for the
checks that have a safe fix (``palyrad.seams.Check``). The base gives ``repair`` its
"nothing to do" default, so a look-only check is just ``run``.
"""

from __future__ import annotations

from collections.abc import Sequence

from palyrad.ops.doctor.context import DoctorContext
from palyrad.ops.doctor.report import CheckResult, ok, warn

LISTED = 3  # ids named in a message before "and N more"


class DoctorCheck:
    """Base of the checks in ``registry.CHECKS`` (structurally a ``Check[DoctorContext]``)."""

    check_id: str

    def run(self, ctx: DoctorContext) -> CheckResult:
        raise NotImplementedError

    def repair(self, ctx: DoctorContext) -> list[str]:
        """The safe fix of what ``run`` found; what it did (nothing, by default)."""
        return []


def without_journal(ctx: DoctorContext, check_id: str) -> CheckResult:
    """The result of a check that reads the journal when there is none to read: nothing
    recorded yet (no journal: ok), or not checked (the journal check says why)."""
    access = ctx.journal_access
    if access.missing:
        return ok(check_id, "nothing recorded yet (no journal)")
    return warn(
        check_id,
        "not checked: the journal cannot be read (see the journal check)",
        "run: palyra doctor --only journal",
    )


def listed(items: Sequence[str], limit: int = LISTED) -> str:
    """``a, b, c`` or ``a, b, c and 4 more``."""
    head = ", ".join(items[:limit])
    return head + (f" and {len(items) - limit} more" if len(items) > limit else "")


def plural(n: int, word: str, many: str | None = None) -> str:
    """``1 run``, ``3 runs``."""
    return f"{n} {word if n == 1 else (many or word + 's')}"


def duration(ms: int) -> str:
    """A span for people: ``42 s``, ``5 min``, ``3 h 12 min``, ``4 days``."""
    s = max(0, ms) // 1000
    if s < 120:
        return f"{s} s"
    if s < 7200:
        return f"{s // 60} min"
    if s < 3 * 86400:
        return f"{s // 3600} h {s % 3600 // 60} min"
    return f"{s // 86400} days"
