"""What the scheduler's parts share: the routines in force, the approvals, the journal, the clock.

The definitions loader replaces the routines and approvals; the decisions, the ticks and the
control socket read them. One small object instead of a scheduler class that owns everything,
so each part can be read (and tested) on its own while they still see the same load.
"""

from __future__ import annotations

from dataclasses import dataclass

from palyrad.journal import Journal
from palyrad.seams import Clock
from routines.model import Approval, Routine


@dataclass(frozen=True, slots=True)
class Loaded:
    """A routine plus what the scheduler derives from it once per load, not per tick."""

    routine: Routine
    definition_hash: str
    spec: str
    schedule_key: str | None


class SchedulerState:
    """The applied definitions and the approvals they were applied with, shared by the parts
    of one scheduler (one thread: no locking)."""

    def __init__(self, journal: Journal, clock: Clock) -> None:
        self.journal = journal
        self.clock = clock
        self.routines: dict[str, Loaded] = {}
        self.approved: set[tuple[str, str]] = set()
        self.approvals_marker: str | None = None
        self.more = False  # a batch limit was hit: there is more to do right away

    def effective_enabled(self, item: Loaded) -> bool:
        """Enabled in the file and, for ``before_enable`` routines, approved as it is now."""
        r = item.routine
        if not r.enabled:
            return False
        if r.approval is Approval.BEFORE_ENABLE:
            return (r.id, item.definition_hash) in self.approved
        return True
