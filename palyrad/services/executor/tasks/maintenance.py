"""Maintenance task handlers: the journal's, and the ones waiting for their features."""

from __future__ import annotations

from palyrad.journal.health import maintain
from palyrad.seams import TaskRun


class JournalVacuum:
    """Give back free pages in bounded steps, refresh statistics, truncate the WAL."""

    kind = "journal_vacuum"

    def run(self, task: TaskRun) -> str | None:
        return maintain(task.journal)


class NothingYet:
    """A maintenance kind whose feature does not exist yet: it succeeds, saying why, so its
    tick, de-duplication and history are real before its work is."""

    def __init__(self, kind: str, why: str) -> None:
        self.kind = kind
        self.why = why

    def run(self, task: TaskRun) -> str | None:
        return f"nothing to do: {self.why}"
