"""Decision tables for the policies (SPEC §2.3), with an injected clock.

Each table row is a case that must hold; several are the combinations that broke the system
we learned from (catch-up under forbid, retry waits under queue_one, quiet hours across
midnight and DST, cooldown not extended by skips, approval after an in-place edit).
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from routines.model import (
    Approval,
    CommandAction,
    Concurrency,
    CronSchedule,
    EverySchedule,
    Misfire,
    MisfirePolicy,
    QuietHours,
    Retry,
    Routine,
    ScheduleTrigger,
)
from routines.policies import (
    RoutineRuntime,
    decide_trigger,
    plan_due,
    quiet_until,
    retry_delay_ms,
    should_retry,
)
from routines.timefmt import parse_rfc3339

MIN = 60_000
H = 60 * MIN
T0 = parse_rfc3339("2026-06-01T00:00:00Z")


def every_minute(**kw: object) -> Routine:
    base = Routine(
        id="r",
        trigger=ScheduleTrigger(EverySchedule(MIN, "2026-06-01T00:00:00Z", T0)),
        action=CommandAction(argv=("true",)),
    )
    return replace(base, **kw)  # type: ignore[arg-type]


# --- retries ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("attempt", "expected"),
    [(1, 1_000), (2, 2_000), (3, 4_000), (4, 8_000), (10, 512_000), (13, 600_000), (99, 600_000)],
)
def test_retry_backoff_doubles_and_caps(attempt: int, expected: int) -> None:
    retry = Retry(max_attempts=16, backoff_ms=1_000, max_backoff_ms=600_000)
    assert retry_delay_ms(retry, attempt) == expected


@pytest.mark.parametrize(
    ("status", "attempt", "max_attempts", "expected"),
    [
        ("failed", 1, 3, True),
        ("failed", 3, 3, False),
        ("cancelled", 1, 3, False),
        ("denied", 1, 3, False),
        ("succeeded", 1, 3, False),
        ("skipped", 1, 3, False),
    ],
)
def test_retry_only_failed_attempts_while_attempts_remain(
    status: str, attempt: int, max_attempts: int, expected: bool
) -> None:
    assert should_retry(Retry(max_attempts=max_attempts), attempt, status) is expected


# --- misfire ------------------------------------------------------------------------------


def test_on_time_tick_runs() -> None:
    plan = plan_due(every_minute(), T0 + MIN, T0, T0 + MIN + 5)
    assert plan.run_ticks == (T0 + MIN,)
    assert plan.skip is None
    assert plan.next_nominal == T0 + 2 * MIN


def test_late_within_grace_still_runs() -> None:
    r = every_minute(misfire=Misfire(grace_ms=30_000))
    plan = plan_due(r, T0 + MIN, T0, T0 + MIN + 29_000)
    assert plan.run_ticks == (T0 + MIN,) and plan.skip is None


def test_skip_policy_after_outage_records_one_skip_with_the_range() -> None:
    # Down from just before 00:01 to 00:10:30: ticks 00:01..00:10 missed; 00:10 is late by
    # 30 s, within the 60 s grace, so it runs and the nine before are skipped.
    plan = plan_due(every_minute(), T0 + MIN, T0, T0 + 10 * MIN + 30_000)
    assert plan.run_ticks == (T0 + 10 * MIN,)
    assert plan.skip == (9, T0 + MIN, T0 + 9 * MIN)
    assert plan.next_nominal == T0 + 11 * MIN


def test_skip_policy_when_even_the_newest_tick_is_past_grace() -> None:
    r = every_minute(misfire=Misfire(grace_ms=10_000))
    plan = plan_due(r, T0 + MIN, T0, T0 + 10 * MIN + 30_000)
    assert plan.run_ticks == ()
    assert plan.skip == (10, T0 + MIN, T0 + 10 * MIN)


def test_catch_up_keeps_the_newest_ticks_and_accounts_for_the_rest() -> None:
    r = every_minute(misfire=Misfire(MisfirePolicy.CATCH_UP, 10_000, 3))
    plan = plan_due(r, T0 + MIN, T0, T0 + 10 * MIN + 30_000)
    assert plan.run_ticks == (T0 + 8 * MIN, T0 + 9 * MIN, T0 + 10 * MIN)
    assert plan.skip == (7, T0 + MIN, T0 + 7 * MIN)
    # every tick 00:01..00:10 is accounted for exactly once
    assert plan.skip is not None
    covered = set(plan.run_ticks) | set(range(plan.skip[1], plan.skip[2] + 1, MIN))
    assert covered == {T0 + k * MIN for k in range(1, 11)}


def test_ticks_within_grace_all_run_when_the_scheduler_falls_behind() -> None:
    # A 1 s schedule, the scheduler 2.5 s behind: every tick is within the 60 s grace, so
    # all three run, in order; none is a misfire (SPEC §2.3: missed = not startable within
    # grace).
    r = every_minute(trigger=ScheduleTrigger(EverySchedule(1_000, "2026-06-01T00:00:00Z", T0)))
    plan = plan_due(r, T0 + 1_000, T0, T0 + 3_500)
    assert plan.run_ticks == (T0 + 1_000, T0 + 2_000, T0 + 3_000)
    assert plan.skip is None


def test_after_an_outage_only_the_ticks_within_grace_are_on_time() -> None:
    r = every_minute(trigger=ScheduleTrigger(EverySchedule(1_000, "2026-06-01T00:00:00Z", T0)))
    plan = plan_due(r, T0 + 1_000, T0, T0 + 600_000)
    # 600 s down with a 60 s grace: the last 61 ticks (540 s … 600 s) are on time
    assert plan.run_ticks == tuple(T0 + k * 1_000 for k in range(540, 601))
    assert plan.skip == (539, T0 + 1_000, T0 + 539_000)


def test_on_time_runs_are_capped() -> None:
    r = every_minute(
        trigger=ScheduleTrigger(EverySchedule(1_000, "2026-06-01T00:00:00Z", T0)),
        misfire=Misfire(grace_ms=3_600_000),
    )
    plan = plan_due(r, T0 + 1_000, T0, T0 + 600_000)
    assert len(plan.run_ticks) == 100 and plan.run_ticks[-1] == T0 + 600_000
    assert plan.skip == (500, T0 + 1_000, T0 + 500_000)


def test_catch_up_with_on_time_newest_runs_missed_plus_current() -> None:
    r = every_minute(misfire=Misfire(MisfirePolicy.CATCH_UP, 60_000, 2))
    plan = plan_due(r, T0 + MIN, T0, T0 + 5 * MIN + 1_000)
    # 00:04 is 61 s late (missed), 00:05 is 1 s late (on time)
    assert plan.run_ticks == (T0 + 3 * MIN, T0 + 4 * MIN, T0 + 5 * MIN)
    assert plan.skip == (2, T0 + MIN, T0 + 2 * MIN)


def test_catch_up_after_a_week_is_bounded() -> None:
    r = every_minute(
        trigger=ScheduleTrigger(EverySchedule(1_000, "2026-06-01T00:00:00Z", T0)),
        misfire=Misfire(MisfirePolicy.CATCH_UP, 60_000, 100),
    )
    week = 7 * 24 * H
    plan = plan_due(r, T0 + 1_000, T0, T0 + week)
    total = week // 1_000
    # 100 catch-up runs (the newest missed ticks) + the 61 ticks still within grace
    assert len(plan.run_ticks) == 161
    assert plan.run_ticks[-1] == T0 + week
    assert plan.skip == (total - 161, T0 + 1_000, plan.run_ticks[0] - 1_000)
    assert plan.next_nominal == T0 + week + 1_000


def test_jitter_delays_but_next_tick_is_from_the_nominal() -> None:
    r = every_minute(jitter_ms=30_000)
    plan = plan_due(r, T0 + MIN, T0, T0 + MIN + 40_000)
    assert plan.next_nominal == T0 + 2 * MIN
    assert plan.next_fire is not None and T0 + 2 * MIN <= plan.next_fire <= T0 + 2 * MIN + 30_000


# --- concurrency, cooldown, approval, quiet hours ------------------------------------------

NOW = T0 + 30 * MIN


@pytest.mark.parametrize(
    ("concurrency", "active", "status", "error_kind", "cancel"),
    [
        (Concurrency.FORBID, 0, "pending", None, False),
        (Concurrency.FORBID, 1, "skipped", "concurrency_forbid", False),
        (Concurrency.ALLOW, 5, "pending", None, False),
        (Concurrency.REPLACE, 1, "pending", None, True),
        (Concurrency.REPLACE, 0, "pending", None, False),
        (Concurrency.QUEUE_ONE, 1, "pending", None, False),
        (Concurrency.QUEUE_ONE, 2, "skipped", "concurrency_queue_full", False),
    ],
)
def test_concurrency_table(
    concurrency: Concurrency, active: int, status: str, error_kind: str | None, cancel: bool
) -> None:
    d = decide_trigger(
        every_minute(concurrency=concurrency), RoutineRuntime(active=active), NOW, scheduled=False
    )
    assert (d.status, d.error_kind, d.cancel_active) == (status, error_kind, cancel)


def test_retry_wait_counts_as_active_under_queue_one() -> None:
    # A chain waiting out its retry backoff is one active run: a trigger queues behind it,
    # and the next one is refused.
    r = every_minute(concurrency=Concurrency.QUEUE_ONE)
    assert decide_trigger(r, RoutineRuntime(active=1), NOW, scheduled=False).status == "pending"
    d = decide_trigger(r, RoutineRuntime(active=2), NOW, scheduled=False)
    assert d.error_kind == "concurrency_queue_full"


def test_catch_up_under_forbid_is_one_decision_for_the_whole_range() -> None:
    # The scheduler decides once per catch-up range: the runs of one outage never
    # forbid-skip each other; a run already active skips them all.
    r = every_minute(misfire=Misfire(MisfirePolicy.CATCH_UP, 60_000, 3))
    assert decide_trigger(r, RoutineRuntime(active=0), NOW, scheduled=True).runs
    assert not decide_trigger(r, RoutineRuntime(active=1), NOW, scheduled=True).runs


@pytest.mark.parametrize(
    ("last_start", "now", "status"),
    [
        (None, NOW, "pending"),
        (NOW - 10 * MIN, NOW, "skipped"),
        (NOW - 15 * MIN, NOW, "pending"),  # exactly the cooldown: allowed
        (NOW - 15 * MIN + 1, NOW, "skipped"),
    ],
)
def test_cooldown_measured_from_last_start(last_start: int | None, now: int, status: str) -> None:
    r = every_minute(cooldown_ms=15 * MIN)
    d = decide_trigger(r, RoutineRuntime(last_started_ms=last_start), now, scheduled=False)
    assert d.status == status
    if status == "skipped":
        assert d.error_kind == "cooldown_active"


def test_cooldown_is_not_extended_by_skipped_triggers() -> None:
    # last_started_ms only ever comes from runs that started (or will): a skip in between
    # leaves it where it was, so the trigger at +15 min runs.
    r = every_minute(cooldown_ms=15 * MIN)
    start = NOW
    skipped = decide_trigger(
        r, RoutineRuntime(last_started_ms=start), start + 5 * MIN, scheduled=False
    )
    assert skipped.error_kind == "cooldown_active"
    later = decide_trigger(
        r, RoutineRuntime(last_started_ms=start), start + 15 * MIN, scheduled=False
    )
    assert later.runs


def test_before_first_run_approval_skips_and_requests() -> None:
    r = every_minute(approval=Approval.BEFORE_FIRST_RUN)
    d = decide_trigger(r, RoutineRuntime(approved=False), NOW, scheduled=True)
    assert (d.status, d.error_kind, d.request_approval) == (
        "skipped",
        "approval_required",
        True,
    )
    assert decide_trigger(r, RoutineRuntime(approved=True), NOW, scheduled=True).runs


def test_approval_is_keyed_by_content_hash_so_an_in_place_edit_rearms_it() -> None:
    r = every_minute(approval=Approval.BEFORE_FIRST_RUN)
    edited = replace(r, action=CommandAction(argv=("echo", "changed")))
    assert r.content_hash() != edited.content_hash()
    approved = {(r.id, r.content_hash())}
    assert (edited.id, edited.content_hash()) not in approved
    # enabling/disabling is not an edit that needs approval again
    assert replace(r, enabled=False).content_hash() == r.content_hash()


def prague_quiet() -> Routine:
    return every_minute(
        trigger=ScheduleTrigger(CronSchedule("0 * * * *", "Europe/Prague")),
        quiet_hours=QuietHours("22:00", "07:00"),
    )


@pytest.mark.parametrize(
    ("at", "quiet"),
    [
        ("2026-06-01T21:59:59+02:00", False),
        ("2026-06-01T22:00:00+02:00", True),  # start inclusive
        ("2026-06-02T03:00:00+02:00", True),  # across midnight
        ("2026-06-02T06:59:59+02:00", True),
        ("2026-06-02T07:00:00+02:00", False),  # end exclusive
    ],
)
def test_quiet_hours_non_scheduled_triggers_are_skipped(at: str, quiet: bool) -> None:
    d = decide_trigger(prague_quiet(), RoutineRuntime(), parse_rfc3339(at), scheduled=False)
    assert (d.error_kind == "quiet_hours") is quiet


def test_quiet_hours_hold_scheduled_ticks_until_the_window_ends() -> None:
    r = prague_quiet()
    assert quiet_until(r, parse_rfc3339("2026-06-02T03:00:00+02:00")) == parse_rfc3339(
        "2026-06-02T07:00:00+02:00"
    )
    outside = parse_rfc3339("2026-06-02T12:00:00+02:00")
    assert quiet_until(r, outside) == outside


def test_quiet_hours_across_the_dst_change() -> None:
    # Night of 2026-03-28/29 in Prague: clocks jump 02:00 → 03:00; the 22:00-07:00 window
    # is 8 real hours long and still ends at 07:00 local (+02:00).
    r = prague_quiet()
    end = quiet_until(r, parse_rfc3339("2026-03-29T01:30:00+01:00"))
    assert end == parse_rfc3339("2026-03-29T07:00:00+02:00")
    assert end - parse_rfc3339("2026-03-28T22:00:00+01:00") == 8 * H


def test_always_quiet_when_start_equals_end() -> None:
    r = replace(prague_quiet(), quiet_hours=QuietHours("09:00", "09:00"))
    assert quiet_until(r, NOW) is None
    d = decide_trigger(r, RoutineRuntime(), NOW, scheduled=False)
    assert d.error_kind == "quiet_hours"


def test_quiet_hours_night_becomes_one_misfire_at_the_window_end() -> None:
    # hourly, quiet 22:00-07:00, catch_up(1): the 22:00 tick is held until 07:00, then the
    # nine held ticks are misfires: one catch-up run (06:00), the rest one skip record, and
    # the 07:00 tick runs on time (docs/policies.md, "Quiet hours").
    r = replace(prague_quiet(), misfire=Misfire(MisfirePolicy.CATCH_UP, 60_000, 1))
    first = parse_rfc3339("2026-06-01T22:00:00+02:00")
    held_until = quiet_until(r, first)
    assert held_until == parse_rfc3339("2026-06-02T07:00:00+02:00")
    plan = plan_due(r, first, first - H, held_until)
    assert plan.run_ticks == (held_until - H, held_until)
    assert plan.skip == (8, first, held_until - 2 * H)
    skip_instead = plan_due(replace(r, misfire=Misfire()), first, first - H, held_until)
    assert skip_instead.run_ticks == (held_until,)
    assert skip_instead.skip == (9, first, held_until - H)


# --- quiet hours as misfires (issue 9 item 4) ---------------------------------------------


def _every_5s_quiet(policy: MisfirePolicy, max_catch_up: int = 1) -> Routine:
    return Routine(
        id="q",
        trigger=ScheduleTrigger(EverySchedule(5_000, "2026-06-01T00:00:00Z", T0)),
        action=CommandAction(argv=("true",)),
        misfire=Misfire(policy=policy, grace_ms=60_000, max_catch_up_runs=max_catch_up),
        quiet_hours=QuietHours("00:01", "00:02", "UTC"),
    )


def test_ticks_held_by_quiet_hours_are_missed_not_a_burst_skip() -> None:
    r = _every_5s_quiet(MisfirePolicy.SKIP)
    window_end = T0 + 2 * MIN
    # the scheduler held the first quiet tick (00:01:00) and plans at the window's end
    plan = plan_due(r, T0 + MIN, T0, window_end)
    assert plan.run_ticks == (window_end,)  # the tick on the window's end is on time
    assert plan.skip == (12, T0 + MIN, window_end - 5_000)  # the 12 quiet ones: one record


@pytest.mark.parametrize("max_catch_up", [1, 2, 5])
def test_ticks_held_by_quiet_hours_catch_up_at_most_max_catch_up_runs(max_catch_up: int) -> None:
    r = _every_5s_quiet(MisfirePolicy.CATCH_UP, max_catch_up)
    window_end = T0 + 2 * MIN
    plan = plan_due(r, T0 + MIN, T0, window_end)
    catch = tuple(window_end - 5_000 * k for k in range(max_catch_up, 0, -1))
    assert plan.run_ticks == (*catch, window_end)
    assert plan.skip == (12 - max_catch_up, T0 + MIN, window_end - 5_000 * (max_catch_up + 1))


def test_a_late_tick_outside_quiet_hours_still_runs_within_grace() -> None:
    r = _every_5s_quiet(MisfirePolicy.SKIP)
    plan = plan_due(r, T0 + 5_000, T0, T0 + 30_000)  # 00:00:05 … 00:00:30, before the window
    assert plan.skip is None and len(plan.run_ticks) == 6
