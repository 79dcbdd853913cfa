"""Operator triggers from outside the daemon: run-now and cancel.

run-now goes to a running daemon's request socket
(``palyrad.services.scheduler.control_socket``): the scheduler journals the trigger, decides
it through the same policies as a scheduled tick and answers. With no daemon listening, the
trigger is journaled here as an *undecided* pending record, which the scheduler decides when
it starts.

``run_now`` is the CLI's hot path (trigger → running within 100 ms, process start included):
on the socket path nothing here touches the definitions; on the journal path the journal
answers whether the routine may be triggered when the daemon has applied the file on disk,
and the definitions model and validator (routines.model alone is ~20 ms of dataclass
creation) are imported only when the file has to be read.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from palyrad.domain.runs import Run, new_ulid
from palyrad.journal import STATE_DEFINITIONS_APPLIED, Journal
from palyrad.ops.definitions_hash import current_file_hash
from palyrad.runtime.control_client import NotListening, request, run_now_request
from palyrad.runtime.liveness import daemon_alive
from palyrad.runtime.notify import poke_service
from routines.errors import PalyraError
from routines.timefmt import now_ms

if TYPE_CHECKING:
    from palyrad.runtime.home import Home
    from routines.model import Definitions, Routine

DECIDE_TIMEOUT_S = 5.0
# The scheduler decides a poked trigger in ~2 ms; a 5 ms poll added ~3 ms on average to every
# run-now. One poll is a primary-key read (~50 µs), so polling every millisecond is cheap.
DECIDE_POLL_S = 0.001


class TriggerRefused(PalyraError):
    """The trigger was refused before any record was made (unknown or disabled routine)."""


def applied_gate(home: Home, journal: Journal, routine_id: str) -> bool | None:
    """Whether the running daemon would accept a trigger for ``routine_id`` — answered from
    the journal when the file on disk is exactly what the daemon applied (no need to parse
    100 000 routines to trigger one); None when only the definitions file can tell."""
    if not daemon_alive(home):
        return None
    raw = journal.state.get(STATE_DEFINITIONS_APPLIED)
    # stdlib json for this small document: orjson's import (~7 ms: uuid, json, its module)
    # is a noticeable part of run-now's 100 ms budget, and run-now needs it nowhere else.
    if not raw or json.loads(raw).get("file_hash") != current_file_hash(home, journal):
        return None
    state = journal.routines.get(routine_id)
    return None if state is None else state.enabled


def refusal(
    routine: Routine | None, routine_id: str, is_approved: Callable[[Routine], bool]
) -> str | None:
    """Why a trigger for ``routine_id`` is refused before any record is made (unknown,
    disabled, awaiting ``before_enable`` approval), or None. One text for the CLI and the
    daemon's request socket."""
    from routines.model import Approval

    if routine is None:
        return f"no routine {routine_id!r}"
    if not routine.enabled:
        return f"routine {routine_id!r} is disabled"
    if routine.approval is Approval.BEFORE_ENABLE and not is_approved(routine):
        return f"routine {routine_id!r} is awaiting approval (palyra routines approve {routine_id})"
    return None


def check_triggerable(journal: Journal, defs: Definitions, routine_id: str) -> None:
    """Refuse (no record) unknown, disabled and awaiting-approval routines."""
    why = refusal(
        defs.by_id().get(routine_id),
        routine_id,
        lambda r: journal.approvals.is_approved(r.id, r.content_hash()),
    )
    if why is not None:
        raise TriggerRefused(why)


def manual_run(routine_id: str, payload: str | None, now: int) -> Run:
    """A run-now trigger as journaled before the policies decide it."""
    run_id = new_ulid(now)
    return Run(
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


def run_now(
    home: Home,
    journal: Journal,
    routine_id: str,
    payload: str | None,
    load_definitions: Callable[[], Definitions],
) -> tuple[Run, bool]:
    """Trigger a routine now; returns the decided run record and whether the daemon runs.

    A running daemon takes the trigger through its request socket (it journals and decides
    it, then answers). Without one, the trigger is journaled here as an undecided record that
    the scheduler decides when it starts (or, for a daemon without the socket, when poked).
    """
    try:
        reply = request(home.run_dir, run_now_request(routine_id, payload))
    except NotListening:
        reply = None
    except TimeoutError as exc:  # it may have been recorded: never fall back and record twice
        raise TriggerRefused(
            "the daemon did not answer in time; see: palyra routines logs " + routine_id
        ) from exc
    if reply is not None:
        if reply.get("ok"):
            run = journal.runs.get(str(reply["run_id"]))
            if run is not None:
                return run, True
        if reply.get("error") in ("refused", "bad_payload"):
            raise TriggerRefused(str(reply.get("message") or reply.get("error")))
        raise TriggerRefused(  # it may have been recorded: never fall back and record twice
            f"the daemon could not take the trigger ({reply.get('error')}); see: palyra "
            f"routines logs {routine_id}"
        )
    return _run_now_journaled(home, journal, routine_id, payload, load_definitions)


def _run_now_journaled(
    home: Home,
    journal: Journal,
    routine_id: str,
    payload: str | None,
    load_definitions: Callable[[], Definitions],
) -> tuple[Run, bool]:
    gate = applied_gate(home, journal, routine_id)
    if gate is None:
        check_triggerable(journal, load_definitions(), routine_id)
    elif not gate:
        raise TriggerRefused(
            f"routine {routine_id!r} is disabled or awaiting approval (see: palyra routines "
            f"show {routine_id})"
        )
    run = manual_run(routine_id, payload, now_ms())
    journal.runs.insert(run)
    running = daemon_alive(home) and poke_service(home.run_dir, "scheduler")
    got = journal.runs.get(run.run_id)
    if running:
        deadline = time.monotonic() + DECIDE_TIMEOUT_S
        while time.monotonic() < deadline:
            got = journal.runs.get(run.run_id)
            if got is not None and got.decided:
                break
            time.sleep(DECIDE_POLL_S)
    assert got is not None
    return got, running


def cancel(home: Home, journal: Journal, run_id: str) -> Run | None:
    """Request cancellation of an active run; the executor stops its process group."""
    run = journal.runs.request_cancel(run_id)
    if run is not None and run.is_active:
        poke_service(home.run_dir, "executor")
    return run


OPERATOR_EVENT_PREFIX = "operator."
MAX_PAYLOAD_BYTES = 64 * 1024


def emit_operator_event(home: Home, journal: Journal, name: str, payload: str | None) -> str:
    """``palyra events emit NAME`` → the event ``operator.NAME`` for system_event routines."""
    full = name if name.startswith(OPERATOR_EVENT_PREFIX) else OPERATOR_EVENT_PREFIX + name
    body = {"payload": _payload_value(payload)}
    import orjson

    journal.events.emit(full, orjson.dumps(body).decode(), now_ms())
    poke_service(home.run_dir, "scheduler")
    return full


def fire_hook(
    home: Home, journal: Journal, hook_id: str, event: str | None, payload: str | None
) -> None:
    """``palyra hooks fire HOOK_ID`` → every ``hook`` routine with that id (and event)."""
    body: dict[str, object] = {"payload": _payload_value(payload)}
    if event is not None:
        body["event"] = event
    import orjson

    journal.events.emit(f"hook:{hook_id}", orjson.dumps(body).decode(), now_ms())
    poke_service(home.run_dir, "scheduler")


def _payload_value(payload: str | None) -> object:
    if payload is None:
        return None
    if len(payload.encode()) > MAX_PAYLOAD_BYTES:
        raise ValueError(f"payload is larger than {MAX_PAYLOAD_BYTES} bytes")
    import orjson

    return orjson.loads(payload)
