"""Operator triggers from outside the daemon: run-now and cancel.

A trigger is journaled first (an *undecided* pending run) and the scheduler is poked; the
scheduler runs it through the same policies as a scheduled tick. With the daemon stopped the
record simply waits, ``pending``, for the next start.
"""

from __future__ import annotations

import time

from palyrad.home import Home
from palyrad.journal import Journal
from palyrad.notify import POKE_EXECUTOR, POKE_SCHEDULER, poke_fifo
from palyrad.runs import Run, new_ulid
from palyrad.status import daemon_alive
from routines.model import Definitions
from routines.timefmt import now_ms

DECIDE_TIMEOUT_S = 5.0


class TriggerRefused(Exception):
    """The trigger was refused before any record was made (unknown or disabled routine)."""


def run_now(
    home: Home, journal: Journal, defs: Definitions, routine_id: str, payload: str | None
) -> tuple[Run, bool]:
    """Record a manual trigger; wait (daemon running) until the policies decided it.

    Returns the run record and whether the daemon was running.
    """
    routine = defs.by_id().get(routine_id)
    if routine is None:
        raise TriggerRefused(f"no routine {routine_id!r}")
    if not routine.enabled:
        raise TriggerRefused(f"routine {routine_id!r} is disabled")
    now = now_ms()
    run_id = new_ulid(now)
    journal.insert_run(
        Run(
            run_id=run_id,
            chain_id=run_id,
            routine_id=routine_id,
            attempt=1,
            trigger_kind="manual",
            status="pending",
            queued_at_ms=now,
            trigger_payload=payload,
            decided=False,
        )
    )
    running = daemon_alive(home) and poke_fifo(home.notify_fifo, POKE_SCHEDULER)
    run = journal.get_run(run_id)
    if running:
        deadline = time.monotonic() + DECIDE_TIMEOUT_S
        while time.monotonic() < deadline:
            run = journal.get_run(run_id)
            if run is not None and run.decided:
                break
            time.sleep(0.01)
    assert run is not None
    return run, running


def cancel(home: Home, journal: Journal, run_id: str) -> Run | None:
    """Request cancellation of an active run; the executor stops its process group."""
    run = journal.request_cancel(run_id)
    if run is not None and run.is_active:
        poke_fifo(home.notify_fifo, POKE_EXECUTOR)
    return run
