"""How a ``Run`` maps to a row of ``runs``, and the run vocabulary as SQL literals.

Shared by the modules that query ``runs`` (runs, leases). The literals are built from
``RunStatus``, ``ErrorKind`` and ``TriggerKind`` once, at import, and spliced into module
constants, so each query's text is fixed: no per-call formatting, and the same text as the
literals the partial indexes and query plans were written against.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable
from operator import attrgetter
from typing import Any

from palyrad.domain.runs import ACTIVE_STATUSES, RUN_COLUMNS, Run, RunStatus
from routines.kinds import ErrorKind, TriggerKind


def sql_list(statuses: Iterable[RunStatus]) -> str:
    """Statuses as an SQL list literal: ``('pending', 'running')``."""
    return "(" + ", ".join(f"'{s.value}'" for s in statuses) + ")"


ACTIVE_SQL = sql_list(ACTIVE_STATUSES)  # ('pending', 'running')
PENDING_SQL = f"'{RunStatus.PENDING.value}'"
RUNNING_SQL = f"'{RunStatus.RUNNING.value}'"
CANCELLED_SQL = f"'{RunStatus.CANCELLED.value}'"
SKIPPED_SQL = f"'{RunStatus.SKIPPED.value}'"
CANCELLED_KIND_SQL = f"'{ErrorKind.CANCELLED.value}'"  # error_kind
MANUAL_SQL = f"'{TriggerKind.MANUAL.value}'"  # trigger_kind

RUN_SELECT = "SELECT " + ", ".join(RUN_COLUMNS) + " FROM runs"
RUN_INSERT = (
    "INSERT INTO runs ("
    + ", ".join(RUN_COLUMNS)
    + ") VALUES ("
    + ", ".join("?" for _ in RUN_COLUMNS)
    + ")"
)
# A run whose (routine_id, scheduled_for, attempt) exists already is ignored: the schema's
# uniqueness makes a retried claim or a re-inserted follow-up harmless.
RUN_INSERT_OR_IGNORE = RUN_INSERT.replace("INSERT", "INSERT OR IGNORE", 1)


def run_row(row: sqlite3.Row) -> Run:
    """The ``Run`` of a row selected with ``RUN_SELECT``."""
    values = {c: row[c] for c in RUN_COLUMNS}
    values["cancel_requested"] = bool(values["cancel_requested"])
    values["decided"] = bool(values["decided"])
    return Run(**values)


# The parameters of RUN_INSERT for a run, in one C call (attrgetter of several names
# returns the tuple), so an insert costs no Python frame per row.
run_values: Callable[[Run], tuple[Any, ...]] = attrgetter(*RUN_COLUMNS)
