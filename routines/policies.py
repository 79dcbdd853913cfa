"""Policies as pure functions of (definition, state, now) returning decisions.

The daemon's processes apply these decisions; nothing here touches a clock, a file or the
journal, so every table of cases runs in microseconds in the tests.
"""

from __future__ import annotations

from dataclasses import dataclass

from routines.jitter import fire_at_ms
from routines.kinds import ErrorKind, RunStatus
from routines.model import Approval, Concurrency, MisfirePolicy, Retry, Routine
from routines.quiet_hours import is_quiet, quiet_end_after
from routines.schedules import next_fire, ticks_between

# A tick loop never walks more than this many ticks at once; the rest are counted.
MAX_TICKS_PER_PLAN = 10_000
# At most this many ticks run as "on time" in one plan (the rest of the range is missed).
MAX_ON_TIME_RUNS = 100


def retry_delay_ms(retry: Retry, attempt: int) -> int:
    """Wait before attempt ``attempt + 1``: ``min(backoff·2^(attempt−1), max_backoff)``."""
    exponent = max(0, attempt - 1)
    if exponent >= 62:
        return retry.max_backoff_ms
    return min(retry.backoff_ms * (1 << exponent), retry.max_backoff_ms)


def should_retry(retry: Retry, attempt: int, status: str) -> bool:
    """Failed (incl. timed out / crashed) attempts retry while attempts remain; never
    ``cancelled`` or ``denied`` ones."""
    return status == RunStatus.FAILED and attempt < retry.max_attempts


@dataclass(frozen=True, slots=True)
class TickPlan:
    """What to do about a routine whose next fire is due.

    ``run_ticks``: nominal instants that get a run (in order); ``skip``: a skip record
    ``(missed_count, first_missed, last_missed)`` covering missed ticks that get no run;
    ``last_nominal``: the newest tick accounted for; ``next_nominal``/``next_fire``: the
    routine's next tick (None: the schedule has ended).
    """

    run_ticks: tuple[int, ...]
    skip: tuple[int, int, int] | None
    last_nominal: int
    next_nominal: int | None
    next_fire: int | None


def plan_due(routine: Routine, next_nominal: int, first_seen_ms: int, now_ms: int) -> TickPlan:
    """Account for every tick from ``next_nominal`` up to ``now_ms`` (SPEC §2.3 misfire).

    A tick is missed when now is more than ``grace_ms`` past its jittered fire time. Missed
    ticks run (``catch_up``, newest kept, up to ``max_catch_up_runs``) or are folded into a
    single skip record; the rest of the range is covered by that record, so no tick is lost.
    """
    schedule = routine.schedule
    assert schedule is not None
    grace = routine.misfire.grace_ms
    jitter = routine.jitter_ms

    # Ticks that are due now: next_nominal, then every later tick whose fire time passed.
    ticks_after, extra_count = ticks_between(
        schedule, next_nominal, now_ms, first_seen_ms=first_seen_ms, limit=MAX_TICKS_PER_PLAN
    )
    due = [next_nominal, *ticks_after]
    total = 1 + extra_count
    # A jittered tick whose fire time is still ahead is not due yet.
    while len(due) > 1 and fire_at_ms(routine.id, due[-1], jitter) > now_ms:
        due.pop()
        total -= 1
    last_nominal = due[-1]
    nxt = next_fire(schedule, last_nominal, first_seen_ms=first_seen_ms)
    nxt_fire = None if nxt is None else fire_at_ms(routine.id, nxt, jitter)

    # On time: the newest ticks still within grace of their fire time (a scheduler that
    # fell a little behind runs them all, in order); the older ones are missed. Capped so
    # that a huge grace on a fast schedule cannot queue an unbounded burst.
    # A tick whose fire time fell inside quiet hours is missed whatever the grace: when the
    # window ends the scheduler plans at its end, and the held ticks must not all run then as
    # "late within grace" (SPEC §2.3: ticks inside the window are misfires).
    qh = routine.quiet_hours
    zone = routine.zone_name
    n_on_time = 0
    for tick in reversed(due):
        fire = fire_at_ms(routine.id, tick, jitter)
        if n_on_time >= MAX_ON_TIME_RUNS or now_ms - fire > grace:
            break
        if qh is not None and fire < now_ms and is_quiet(qh, fire, zone):
            break
        n_on_time += 1
    on_time = tuple(due[len(due) - n_on_time :])
    missed_known = due[: len(due) - n_on_time]
    missed_total = total - n_on_time
    if missed_total == 0:
        return TickPlan(on_time, None, last_nominal, nxt, nxt_fire)

    first_missed = next_nominal
    if routine.misfire.policy is MisfirePolicy.CATCH_UP:
        keep = min(missed_total, routine.misfire.max_catch_up_runs)
        # The newest `keep` missed ticks run before the on-time ones; the rest are one skip.
        catch = tuple(missed_known[-keep:]) if keep else ()
        skipped = missed_total - len(catch)
        skip = None
        if skipped > 0:
            last_skipped = missed_known[-keep - 1] if len(missed_known) > keep else first_missed
            skip = (skipped, first_missed, last_skipped)
        return TickPlan(catch + on_time, skip, last_nominal, nxt, nxt_fire)
    return TickPlan(
        on_time, (missed_total, first_missed, missed_known[-1]), last_nominal, nxt, nxt_fire
    )


@dataclass(frozen=True, slots=True)
class TriggerDecision:
    """``pending`` (may run), or a final ``skipped`` record with its reason.

    ``cancel_active``: the ``replace`` policy — cancel the routine's active runs first; the
    new run waits (pending) until they have ended as ``cancelled``.
    ``request_approval``: record a pending approval for the current definition hash.
    """

    status: RunStatus
    error_kind: str | None = None
    error_message: str | None = None
    cancel_active: bool = False
    request_approval: bool = False

    @property
    def runs(self) -> bool:
        return self.status == RunStatus.PENDING


RUN = TriggerDecision(RunStatus.PENDING)
RUN_REPLACING = TriggerDecision(RunStatus.PENDING, cancel_active=True)


@dataclass(frozen=True, slots=True)
class RoutineRuntime:
    """What the journal knows about a routine at decision time."""

    active: int = 0  # running + decided pending (retry waits and queued runs included)
    last_started_ms: int | None = None  # cooldown is measured from the last *start*
    approved: bool = True  # an approval is granted for the current definition hash


def _skip(kind: ErrorKind, message: str, **kw: bool) -> TriggerDecision:
    return TriggerDecision(RunStatus.SKIPPED, kind, message, **kw)


def decide_concurrency(routine: Routine, active: int) -> TriggerDecision:
    """The concurrency policy for a trigger arriving while ``active`` runs are active."""
    if active == 0 or routine.concurrency is Concurrency.ALLOW:
        return RUN
    if routine.concurrency is Concurrency.FORBID:
        return _skip(ErrorKind.CONCURRENCY_FORBID, "a run of this routine is already active")
    if routine.concurrency is Concurrency.REPLACE:
        return RUN_REPLACING
    # queue_one: the active chain plus at most one queued trigger.
    if active >= 2:
        return _skip(
            ErrorKind.CONCURRENCY_QUEUE_FULL, "one run is active and one is already queued"
        )
    return RUN


def decide_trigger(
    routine: Routine, rt: RoutineRuntime, now_ms: int, *, scheduled: bool
) -> TriggerDecision:
    """Every SPEC §2.3 policy for one trigger, in order: approval, quiet hours, cooldown,
    concurrency. Scheduled ticks meet quiet hours earlier, as misfires (see ``plan_due``),
    so here they are only checked for non-scheduled triggers."""
    if routine.approval is Approval.BEFORE_FIRST_RUN and not rt.approved:
        return _skip(
            ErrorKind.APPROVAL_REQUIRED,
            "the definition changed or is new; approve it: palyra routines approve " + routine.id,
            request_approval=True,
        )
    if (
        not scheduled
        and routine.quiet_hours is not None
        and is_quiet(routine.quiet_hours, now_ms, routine.zone_name)
    ):
        return _skip(ErrorKind.QUIET_HOURS, "the trigger arrived inside quiet hours")
    if (
        routine.cooldown_ms > 0
        and rt.last_started_ms is not None
        and now_ms < rt.last_started_ms + routine.cooldown_ms
    ):
        return _skip(
            ErrorKind.COOLDOWN_ACTIVE, "the previous run started less than cooldown_ms ago"
        )
    return decide_concurrency(routine, rt.active)


def quiet_until(routine: Routine, at_ms: int) -> int | None:
    """When a scheduled tick due at ``at_ms`` may fire: ``at_ms`` outside quiet hours,
    else the end of the window (ticks held back become misfires); None = always quiet."""
    if routine.quiet_hours is None:
        return at_ms
    return quiet_end_after(routine.quiet_hours, at_ms, routine.zone_name)
