"""Reading run history for the operator: a routine's runs page by page (``routines logs``)
and a run's captured output (``runs show --output``).

Both refuse what they cannot answer instead of answering with nothing: a ``--before`` cursor
that is not a run of the routine, and output that does not exist (a run that never started,
a log deleted or pruned) are errors that say which, so an empty answer always means "none".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from palyrad.domain.runs import Run, parse_run_id
from routines.errors import InvalidInput, PalyraError

if TYPE_CHECKING:
    from palyrad.journal import Journal
    from palyrad.runtime.home import Home

MAX_LOGS = 1_000


class RunNotFound(PalyraError):
    """A well-formed run id the journal does not have (exit 1)."""


class NoOutput(PalyraError):
    """A run has no captured output to show; the message says why (exit 1)."""


def routine_runs(
    journal: Journal,
    routine_id: str,
    *,
    limit: int = 50,
    before: str | None = None,
    status: str | None = None,
) -> list[Run]:
    """A routine's runs, newest first: at most ``limit`` (1-1000), older than the run
    ``before`` when given. ``before`` must be a run of this routine: a malformed id is
    ``InvalidInput`` (exit 2); an id the journal does not have, or a run of another routine,
    is ``RunNotFound`` (exit 1) — never a silently different page."""
    if not 1 <= limit <= MAX_LOGS:
        raise InvalidInput(f"--limit {limit} is out of range", f"use 1-{MAX_LOGS}")
    if before is not None:
        cursor = parse_run_id(before)
        if cursor is None:
            raise InvalidInput(
                f"--before {before!r} is not a run id",
                "run ids are 26 characters like 01J9Z3K4M5N6P7Q8R9S0T1V2W3; "
                f"copy one from: palyra routines logs {routine_id}",
            )
        anchor = journal.runs.get(cursor)
        if anchor is None or anchor.routine_id != routine_id:
            owner = "" if anchor is None else f" (it is a run of {anchor.routine_id!r})"
            raise RunNotFound(
                f"no run {cursor} of routine {routine_id!r}{owner}",
                f"--before takes a run id from: palyra routines logs {routine_id}",
            )
        before = cursor
    return journal.runs.for_routine(routine_id, limit=limit, before_run_id=before, status=status)


def log_path(home: Home, run: Run) -> Path:
    """Where ``run``'s captured output is (or would be)."""
    return Path(run.log_path) if run.log_path else home.run_log(run.run_id)


@dataclass(frozen=True, slots=True)
class Output:
    """A run's captured output so far, and a note for the operator when there is none yet."""

    data: bytes
    note: str | None = None


def read_output(home: Home, run: Run) -> Output:
    """``run``'s captured output (possibly empty: the run printed nothing). A run that has
    not started yet has none *yet* (a note says so); ``NoOutput`` (exit 1) when there is none
    to read and never will be, saying why: the run never started (skipped, denied,
    cancelled while pending, not spawnable), or its log is gone."""
    path = log_path(home, run)
    try:
        return Output(path.read_bytes())
    except FileNotFoundError:
        pass
    if run.started_at_ms is None:
        if run.is_active:
            return Output(
                b"",
                f"note: run {run.run_id} has not started yet, so nothing is captured "
                f"(follow it: palyra runs show {run.run_id} --follow)",
            )
        why = run.status
        if run.error_kind and run.error_kind != run.status:
            why += f": {run.error_kind}"
        raise NoOutput(
            f"run {run.run_id} never started ({why}), so it has no output",
            f"see why: palyra runs show {run.run_id}",
        )
    hint = (
        f"its last 4 KiB are kept in output_tail: palyra runs show {run.run_id} --json"
        if run.output_tail
        else "nothing else of its output was kept"
    )
    raise NoOutput(
        f"the output log of run {run.run_id} is gone: {path} (deleted, or pruned with old runs)",
        hint,
    )
