"""Run records (SPEC §3): the value object every process and the CLI share, and its JSON view.

The journal stores times as Unix milliseconds; the JSON view adds the RFC 3339 strings with
milliseconds beside each ``*_unix_ms`` twin, as SPEC §3 asks.

Every CLI command that opens the journal imports this module, so it imports neither the
routine model (``Routine`` is only a type here) nor ``secrets`` (hashlib/OpenSSL and random,
~5 ms) at start-up.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any

from routines.kinds import ACTIVE_STATUSES as ACTIVE_STATUSES
from routines.kinds import FINAL_STATUSES as FINAL_STATUSES
from routines.kinds import RunStatus as RunStatus
from routines.timefmt import format_rfc3339

if TYPE_CHECKING:
    from routines.model import Routine

OUTPUT_TAIL_BYTES = 4096
# A run due at a known instant (a scheduled tick, a retry after its backoff) is decided and
# claimed up to this long before it, so its process is spawned on the instant rather than a
# hand-off later. See docs/daemon.md ("Starting on the instant").
ARM_AHEAD_MS = 50


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_CROCKFORD_SET = frozenset(_CROCKFORD)


_ulid_lock = threading.Lock()
_ulid_last: list[int] = [0, 0]  # last (ms, random) handed out by this process


def new_ulid(now_ms: int | None = None) -> str:
    """A ULID: 48-bit millisecond time + 80 random bits, Crockford base32.

    Monotonic within a process: ids made in the same millisecond increment the random part,
    so ordering by id is creation order (catch-up runs and queues rely on that).
    """
    ms = time.time_ns() // 1_000_000 if now_ms is None else now_ms
    with _ulid_lock:
        last_ms, last_rand = _ulid_last
        if ms <= last_ms:
            ms, rand = last_ms, (last_rand + 1) & ((1 << 80) - 1)
        else:
            rand = int.from_bytes(os.urandom(10), "big") >> 1  # headroom for increments
        _ulid_last[0], _ulid_last[1] = ms, rand
    return _encode_ulid((ms << 80) | rand)


def _encode_ulid(value: int) -> str:
    out = []
    for _ in range(26):
        out.append(_CROCKFORD[value & 31])
        value >>= 5
    return "".join(reversed(out))


def parse_run_id(text: str) -> str | None:
    """``text`` as a run id (a ULID: 26 Crockford base32 characters, any case, the first
    0-7), upper-cased as the journal stores it; None when it cannot be one."""
    rid = text.strip().upper()
    if len(rid) != 26 or rid[0] not in "01234567" or not set(rid) <= _CROCKFORD_SET:
        return None
    return rid


def ulid_floor(ms: int) -> str:
    """The smallest ULID of millisecond ``ms``: ids below it were made before ``ms``."""
    return _encode_ulid(max(0, ms) << 80)


def new_token() -> str:
    """An opaque random identifier for leases and daemon instances."""
    import secrets  # daemon side only; see the module docstring

    return secrets.token_hex(8)


@dataclass(frozen=True, slots=True)
class Run:
    run_id: str
    chain_id: str
    routine_id: str
    attempt: int
    trigger_kind: str
    status: str
    queued_at_ms: int
    trigger_payload: str | None = None  # JSON text
    scheduled_for_ms: int | None = None
    fire_at_ms: int | None = None
    not_before_ms: int | None = None
    started_at_ms: int | None = None
    finished_at_ms: int | None = None
    exit_code: int | None = None
    error_kind: str | None = None
    error_message: str | None = None
    output_tail: str | None = None
    log_path: str | None = None
    definition_hash: str | None = None
    missed_count: int | None = None
    first_missed_ms: int | None = None
    last_missed_ms: int | None = None
    pid: int | None = None
    lease_owner: str | None = None
    heartbeat_ms: int | None = None
    cancel_requested: bool = False
    decided: bool = True  # False: a trigger the scheduler has not yet run through policy
    spec: str | None = None  # JSON snapshot of what to run (action, retry, delivery)

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE_STATUSES


RUN_COLUMNS: tuple[str, ...] = tuple(f.name for f in fields(Run))

_TIME_FIELDS = (
    ("scheduled_for", "scheduled_for_ms"),
    ("fire_at", "fire_at_ms"),
    ("queued_at", "queued_at_ms"),
    ("not_before", "not_before_ms"),
    ("started_at", "started_at_ms"),
    ("finished_at", "finished_at_ms"),
    ("first_missed", "first_missed_ms"),
    ("last_missed", "last_missed_ms"),
)


def run_to_json(run: Run) -> dict[str, Any]:
    """The SPEC §3 JSON shape of a run (time fields + ``*_unix_ms`` twins)."""
    import orjson  # in the functions: the CLI's run-now path imports this module without it

    payload: Any = None
    if run.trigger_payload is not None:
        try:
            payload = orjson.loads(run.trigger_payload)
        except orjson.JSONDecodeError:
            payload = run.trigger_payload
    out: dict[str, Any] = {
        "run_id": run.run_id,
        "chain_id": run.chain_id,
        "routine_id": run.routine_id,
        "attempt": run.attempt,
        "trigger_kind": run.trigger_kind,
        "trigger_payload": payload,
        "status": run.status,
    }
    for name, attr in _TIME_FIELDS:
        ms = getattr(run, attr)
        out[name] = None if ms is None else format_rfc3339(ms, always_ms=True)
        out[f"{name}_unix_ms"] = ms
    out.update(
        exit_code=run.exit_code,
        error_kind=run.error_kind,
        error_message=run.error_message,
        output_tail=run.output_tail,
        log_path=run.log_path,
        definition_hash=run.definition_hash,
        missed_count=run.missed_count,
    )
    return out


def run_spec(routine: Routine, scrub_env: tuple[str, ...] = ()) -> str:
    """The JSON snapshot a run executes (``RunSpec``'s one stored form): what was decided is
    what runs, even if the definition is edited while the run waits. ``scrub_env``: the
    webhook secret variables of the routine's definitions (``webhook_secret_envs``)."""
    from palyrad.domain.run_spec import RunSpec

    return RunSpec.of(routine, scrub_env).to_json()


def undecided_run(routine_id: str, trigger_kind: str, payload: str | None, now_ms: int) -> Run:
    """A trigger from outside the scheduler (run-now, a webhook) as journaled before the
    policies decide it: the scheduler decides every undecided record on its next pass."""
    run = new_trigger_run(
        routine_id,
        definition_hash=None,
        spec=None,
        trigger_kind=trigger_kind,
        now_ms=now_ms,
        payload=payload,
    )
    return replace(run, decided=False)


def new_trigger_run(
    routine_id: str,
    *,
    definition_hash: str | None,
    spec: str | None,
    trigger_kind: str,
    now_ms: int,
    decision_status: str = RunStatus.PENDING,
    error_kind: str | None = None,
    error_message: str | None = None,
    scheduled_for_ms: int | None = None,
    fire_at_ms: int | None = None,
    payload: str | None = None,
) -> Run:
    """Attempt 1 of a new chain for a trigger the policies have decided on."""
    run_id = new_ulid(now_ms)
    final = decision_status not in ACTIVE_STATUSES
    return Run(
        run_id=run_id,
        chain_id=run_id,
        routine_id=routine_id,
        attempt=1,
        trigger_kind=trigger_kind,
        status=decision_status,
        queued_at_ms=now_ms,
        trigger_payload=payload,
        scheduled_for_ms=scheduled_for_ms,
        fire_at_ms=fire_at_ms,
        finished_at_ms=now_ms if final else None,
        error_kind=error_kind,
        error_message=error_message,
        definition_hash=definition_hash,
        spec=None if final else spec,
    )


def retry_follow_up(run: Run, status: str, now_ms: int) -> Run | None:
    """The next attempt of ``run``'s chain if its retry policy allows one, else None.

    The wait is persisted as ``not_before`` on the new pending record, so it survives
    restarts and counts as active for the concurrency policy.
    """
    from palyrad.domain.run_spec import RunSpec
    from routines.model import Retry
    from routines.policies import retry_delay_ms, should_retry

    spec = RunSpec.from_json(run.spec)
    retry = Retry() if spec is None else spec.retry
    if not should_retry(retry, run.attempt, status):
        return None
    return Run(
        run_id=new_ulid(now_ms),
        chain_id=run.chain_id,
        routine_id=run.routine_id,
        attempt=run.attempt + 1,
        trigger_kind=run.trigger_kind,
        status=RunStatus.PENDING.value,
        queued_at_ms=now_ms,
        trigger_payload=run.trigger_payload,
        scheduled_for_ms=run.scheduled_for_ms,
        fire_at_ms=run.fire_at_ms,
        not_before_ms=now_ms + retry_delay_ms(retry, run.attempt),
        definition_hash=run.definition_hash,
        spec=run.spec,
    )
