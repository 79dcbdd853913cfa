"""Granting and listing approvals (SPEC §2.3 ``approval``).

Approvals are keyed by the definition's content hash, so any edit, by hand or by the CLI,
needs a new one. Approving a ``before_enable`` routine also enables it in definitions.json.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from palyrad.journal import STATE_APPROVALS_CHANGED, Journal
from palyrad.ops.edits import apply_edit
from palyrad.runtime.home import Home
from palyrad.runtime.notify import poke_service
from routines.errors import PalyraError
from routines.model import Approval, Definitions
from routines.timefmt import format_rfc3339, now_ms


class ApprovalError(PalyraError):
    """Nothing to approve (unknown routine, or one that needs no approval)."""


@dataclass(frozen=True, slots=True)
class Granted:
    routine_id: str
    mode: str
    definition_hash: str
    enabled_now: bool


def approve(home: Home, journal: Journal, defs: Definitions, routine_id: str) -> Granted:
    routine = defs.by_id().get(routine_id)
    if routine is None:
        raise ApprovalError(f"no routine {routine_id!r}")
    if routine.approval is Approval.NONE:
        raise ApprovalError(f"routine {routine_id!r} does not require approval")
    digest = routine.content_hash()
    now = now_ms()
    with journal.transaction():  # the scheduler notices grants through the bumped marker
        journal.approvals.grant(routine_id, digest, routine.approval.value, now)
        journal.state.set(STATE_APPROVALS_CHANGED, str(now), now)
    enabled_now = False
    if routine.approval is Approval.BEFORE_ENABLE and not routine.enabled:

        def enable(ed: Any) -> None:
            current = ed.get(routine_id)
            if current is not None and current.content_hash() == digest:
                ed.upsert(replace(current, enabled=True))

        apply_edit(home, journal, enable)
        enabled_now = True
    poke_service(home.run_dir, "scheduler")
    return Granted(routine_id, routine.approval.value, digest, enabled_now)


def pending_approvals(journal: Journal) -> list[dict[str, Any]]:
    return [
        {
            "routine_id": p.routine_id,
            "mode": p.mode,
            "definition_hash": p.definition_hash,
            "requested_at": format_rfc3339(p.requested_at_ms, always_ms=True),
            "requested_at_unix_ms": p.requested_at_ms,
        }
        for p in journal.approvals.pending()
    ]
