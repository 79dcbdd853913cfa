"""Operator triggers from outside the daemon: run-now and cancel.

A trigger is journaled first (an *undecided* pending run) and the scheduler is poked; the
scheduler runs it through the same policies as a scheduled tick. With the daemon stopped the
record simply waits, ``pending``, for the next start.

``run_now`` is the CLI's hot path (trigger → running within 100 ms, process start included).
When the daemon runs and has applied the file on disk, the journal answers whether the routine
may be triggered, and nothing here imports the definitions model or validator (routines.model
alone is ~20 ms of dataclass creation): they are imported only when the file has to be read.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import orjson

from palyrad.definitions_hash import current_file_hash
from palyrad.journal import STATE_DEFINITIONS_APPLIED, Journal
from palyrad.liveness import daemon_alive
from palyrad.notify import poke_service
from palyrad.runs import Run, new_ulid
from routines.timefmt import now_ms

if TYPE_CHECKING:
    from palyrad.home import Home
    from routines.model import Definitions

DECIDE_TIMEOUT_S = 5.0
# The scheduler decides a poked trigger in ~2 ms; a 5 ms poll added ~3 ms on average to every
# run-now. One poll is a primary-key read (~50 µs), so polling every millisecond is cheap.
DECIDE_POLL_S = 0.001


class TriggerRefused(Exception):
    """The trigger was refused before any record was made (unknown or disabled routine)."""


def applied_gate(home: Home, journal: Journal, routine_id: str) -> bool | None:
    """Whether the running daemon would accept a trigger for ``routine_id`` — answered from
    the journal when the file on disk is exactly what the daemon applied (no need to parse
    100 000 routines to trigger one); None when only the definitions file can tell."""
    if not daemon_alive(home):
        return None
    raw = journal.get_state(STATE_DEFINITIONS_APPLIED)
    if not raw or orjson.loads(raw).get("file_hash") != current_file_hash(home, journal):
        return None
    state = journal.routine_state(routine_id)
    return None if state is None else state.enabled


def check_triggerable(journal: Journal, defs: Definitions, routine_id: str) -> None:
    """Refuse (no record) unknown, disabled and awaiting-approval routines."""
    from routines.model import Approval  # only when the definitions had to be loaded

    routine = defs.by_id().get(routine_id)
    if routine is None:
        raise TriggerRefused(f"no routine {routine_id!r}")
    if not routine.enabled:
        raise TriggerRefused(f"routine {routine_id!r} is disabled")
    if routine.approval is Approval.BEFORE_ENABLE and not journal.is_approved(
        routine_id, routine.content_hash()
    ):
        raise TriggerRefused(
            f"routine {routine_id!r} is awaiting approval (palyra routines approve {routine_id})"
        )


def run_now(
    home: Home,
    journal: Journal,
    routine_id: str,
    payload: str | None,
    load_definitions: Callable[[], Definitions],
) -> tuple[Run, bool]:
    """Record a manual trigger; wait (daemon running) until the policies decided it.

    Returns the run record and whether the daemon was running.
    """
    gate = applied_gate(home, journal, routine_id)
    if gate is None:
        check_triggerable(journal, load_definitions(), routine_id)
    elif not gate:
        raise TriggerRefused(
            f"routine {routine_id!r} is disabled or awaiting approval (see: palyra routines "
            f"show {routine_id})"
        )
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
    running = daemon_alive(home) and poke_service(home.run_dir, "scheduler")
    run = journal.get_run(run_id)
    if running:
        deadline = time.monotonic() + DECIDE_TIMEOUT_S
        while time.monotonic() < deadline:
            run = journal.get_run(run_id)
            if run is not None and run.decided:
                break
            time.sleep(DECIDE_POLL_S)
    assert run is not None
    return run, running


def cancel(home: Home, journal: Journal, run_id: str) -> Run | None:
    """Request cancellation of an active run; the executor stops its process group."""
    run = journal.request_cancel(run_id)
    if run is not None and run.is_active:
        poke_service(home.run_dir, "executor")
    return run


OPERATOR_EVENT_PREFIX = "operator."
MAX_PAYLOAD_BYTES = 64 * 1024


def emit_operator_event(home: Home, journal: Journal, name: str, payload: str | None) -> str:
    """``palyra events emit NAME`` → the event ``operator.NAME`` for system_event routines."""
    full = name if name.startswith(OPERATOR_EVENT_PREFIX) else OPERATOR_EVENT_PREFIX + name
    body = {"payload": _payload_value(payload)}
    journal.emit_event(full, orjson.dumps(body).decode(), now_ms())
    poke_service(home.run_dir, "scheduler")
    return full


def fire_hook(
    home: Home, journal: Journal, hook_id: str, event: str | None, payload: str | None
) -> None:
    """``palyra hooks fire HOOK_ID`` → every ``hook`` routine with that id (and event)."""
    body: dict[str, object] = {"payload": _payload_value(payload)}
    if event is not None:
        body["event"] = event
    journal.emit_event(f"hook:{hook_id}", orjson.dumps(body).decode(), now_ms())
    poke_service(home.run_dir, "scheduler")


def _payload_value(payload: str | None) -> object:
    if payload is None:
        return None
    if len(payload.encode()) > MAX_PAYLOAD_BYTES:
        raise ValueError(f"payload is larger than {MAX_PAYLOAD_BYTES} bytes")
    return orjson.loads(payload)
