"""The journal's maintenance task handler (memory's are in ``tasks.memory``)."""

from __future__ import annotations

from palyrad.journal.health import maintain
from palyrad.seams import TaskRun


class JournalVacuum:
    """Give back free pages in bounded steps, refresh statistics, truncate the WAL."""

    kind = "journal_vacuum"

    def run(self, task: TaskRun) -> str | None:
        return maintain(task.journal)
