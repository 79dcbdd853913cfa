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
from enum import StrEnum
from typing import TYPE_CHECKING

from palyrad.domain.runs import Run, RunStatus, undecided_run
from palyrad.journal import STATE_DEFINITIONS_APPLIED, Journal
from palyrad.ops.definitions_hash import current_file_hash
from palyrad.runtime.control_client import NotListening, request, run_now_request
from palyrad.runtime.liveness import daemon_alive
from palyrad.runtime.notify import poke_service
from routines.errors import InvalidInput, PalyraError
from routines.kinds import OPERATOR_EVENT_PREFIX, TriggerKind
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


MAX_PAYLOAD_BYTES = 64 * 1024
PAYLOAD_EXAMPLE = """--payload '{"file": "/path/to/data.json"}'"""


def check_payload(payload: str | None) -> None:
    """The one check of a ``--payload`` (run-now, events emit, hooks fire), made before
    anything is recorded, daemon running or not: valid JSON, at most 64 KiB of UTF-8.
    Raises ``InvalidInput`` (exit 2) saying which, and what to do instead."""
    if payload is None:
        return
    size = len(payload.encode("utf-8", "surrogatepass"))  # a lone surrogate: invalid below
    if size > MAX_PAYLOAD_BYTES:
        raise InvalidInput(
            f"--payload is {size} bytes; the limit is {MAX_PAYLOAD_BYTES} bytes (64 KiB)",
            f"put the data in a file and pass its path in the payload, e.g. {PAYLOAD_EXAMPLE}",
        )
    import orjson  # what the scheduler parses payloads with: one notion of valid JSON

    try:
        orjson.loads(payload)
    except orjson.JSONDecodeError as exc:
        raise InvalidInput(
            f"--payload is not valid JSON: {exc.msg}", f"e.g. {PAYLOAD_EXAMPLE}"
        ) from None


def payload_value(payload: str | None) -> object:
    """A checked ``--payload`` as the JSON value it holds (None when not given)."""
    check_payload(payload)
    import orjson

    return None if payload is None else orjson.loads(payload)


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
    return undecided_run(routine_id, TriggerKind.MANUAL, payload, now)


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
    A bad payload is ``InvalidInput`` before either (``check_payload``).
    """
    check_payload(payload)
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


class CancelOutcome(StrEnum):
    """What ``cancel`` did (a run that cannot be cancelled raises instead)."""

    CANCELLED = "cancelled"  # a run that had not started: cancelled now
    REQUESTED = "requested"  # a started (or claimed) run: the executor stops it
    ALREADY_CANCELLED = "already_cancelled"  # nothing to do: what was asked for holds


class NothingToCancel(PalyraError):
    """An unknown run, or one that ended other than cancelled (exit 1)."""


def cancel(home: Home, journal: Journal, run_id: str) -> CancelOutcome:
    """Cancel a run (SPEC §4.2: ``cancel`` is for active runs), decided from its record
    alone, so the answer is the same whether the daemon runs or not: an active run is
    cancelled (or its cancellation requested from the executor, which stops its process
    group); a run already cancelled is left alone and is success (asking twice is
    harmless); any other ended run, and an unknown id, raise ``NothingToCancel``."""
    before = journal.runs.get(run_id)
    if before is None:
        raise NothingToCancel(f"no run {run_id!r}", "see: palyra routines logs ROUTINE_ID")
    if before.status == RunStatus.CANCELLED:
        return CancelOutcome.ALREADY_CANCELLED
    run = journal.runs.request_cancel(run_id) if before.is_active else before
    if run is None or not (run.is_active or run.status == RunStatus.CANCELLED):
        status = before.status if run is None else run.status
        raise NothingToCancel(f"run {run_id} already ended ({status})", "nothing to cancel")
    if run.status == RunStatus.CANCELLED:
        return CancelOutcome.CANCELLED
    poke_service(home.run_dir, "executor")
    return CancelOutcome.REQUESTED


def emit_operator_event(home: Home, journal: Journal, name: str, payload: str | None) -> str:
    """``palyra events emit NAME`` → the event ``operator.NAME`` for system_event routines.
    An empty name or a bad payload is ``InvalidInput`` before anything is recorded."""
    bare = name.removeprefix(OPERATOR_EVENT_PREFIX)
    _check_name(bare, "the event name", "e.g. palyra events emit backup-done")
    full = OPERATOR_EVENT_PREFIX + bare
    body = {"payload": payload_value(payload)}
    import orjson

    journal.events.emit(full, orjson.dumps(body).decode(), now_ms())
    poke_service(home.run_dir, "scheduler")
    return full


def fire_hook(
    home: Home, journal: Journal, hook_id: str, event: str | None, payload: str | None
) -> None:
    """``palyra hooks fire HOOK_ID`` → every ``hook`` routine with that id (and event).
    An empty hook id or event, or a bad payload, is ``InvalidInput`` before anything is
    recorded."""
    _check_name(hook_id, "the hook id", "e.g. palyra hooks fire deploy")
    if event is not None:
        _check_name(event, "--event", "leave it out to fire every routine of the hook")
    body: dict[str, object] = {"payload": payload_value(payload)}
    if event is not None:
        body["event"] = event
    import orjson

    journal.events.emit(f"hook:{hook_id}", orjson.dumps(body).decode(), now_ms())
    poke_service(home.run_dir, "scheduler")


def _check_name(value: str, what: str, hint: str) -> None:
    # No routine can wait for an empty name (the validator wants a non-empty string), so an
    # empty one would record an event that nothing ever consumes. Whatever the validator
    # accepts (" " included) a routine may wait for, so it stays accepted here.
    if not value:
        raise InvalidInput(f"{what} is empty", hint)
