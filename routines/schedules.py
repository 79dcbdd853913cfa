"""Schedule → instants: the one seam between a schedule definition and the scheduler.

Every function is a pure function of the schedule and integer Unix-millisecond instants (time
is always a parameter). Ticks are *nominal*: jitter (``routines.jitter``) is applied on top
and never feeds back into the next tick, so schedules never drift.
"""

from __future__ import annotations

from collections import deque

from routines.cron import CronExpr, parse_cron
from routines.model import AtSchedule, CronSchedule, EverySchedule, Schedule
from routines.timefmt import format_rfc3339, get_zone

__all__ = [
    "explain",
    "format_interval",
    "is_tick",
    "next_fire",
    "ticks_between",
    "upcoming",
]


def _anchor(schedule: EverySchedule, first_seen_ms: int | None) -> int:
    if schedule.anchor_unix_ms is not None:
        return schedule.anchor_unix_ms
    if first_seen_ms is not None:
        return first_seen_ms
    raise ValueError(
        "an every-schedule without an anchor needs first_seen_ms (the instant the daemon "
        "first saw the routine)"
    )


def _cron(schedule: CronSchedule) -> CronExpr:
    return parse_cron(schedule.expr)


def next_fire(schedule: Schedule, after_ms: int, *, first_seen_ms: int | None = None) -> int | None:
    """The nominal next tick strictly after ``after_ms``, or None when there is none.

    ``every`` ticks at anchor + k·interval (k >= 1), computed in O(1) so it never drifts;
    its anchor is the schedule's own, else ``first_seen_ms`` (ValueError when neither).
    """
    if isinstance(schedule, CronSchedule):
        return _cron(schedule).next_after(after_ms, get_zone(schedule.timezone))
    if isinstance(schedule, EverySchedule):
        anchor = _anchor(schedule, first_seen_ms)
        step = schedule.interval_ms
        if after_ms < anchor + step:
            return anchor + step
        return anchor + ((after_ms - anchor) // step + 1) * step
    return schedule.at_unix_ms if schedule.at_unix_ms > after_ms else None


def upcoming(
    schedule: Schedule, after_ms: int, count: int, *, first_seen_ms: int | None = None
) -> list[int]:
    """The next ``count`` nominal ticks strictly after ``after_ms`` (fewer if it ends)."""
    out: list[int] = []
    t = after_ms
    while len(out) < count:
        nxt = next_fire(schedule, t, first_seen_ms=first_seen_ms)
        if nxt is None:
            break
        out.append(nxt)
        t = nxt
    return out


def is_tick(schedule: Schedule, instant_ms: int, first_seen_ms: int | None = None) -> bool:
    """Whether ``instant_ms`` is exactly one of the schedule's nominal ticks."""
    return next_fire(schedule, instant_ms - 1, first_seen_ms=first_seen_ms) == instant_ms


def ticks_between(
    schedule: Schedule,
    after_ms: int,
    until_ms: int,
    *,
    first_seen_ms: int | None = None,
    limit: int,
) -> tuple[list[int], int]:
    """The newest ``limit`` ticks in (after_ms, until_ms], oldest first, and how many there
    are in total — what misfire/catch-up accounting needs after an outage.

    Bounded whatever the span or rate: ``every`` is pure arithmetic; cron counts with
    ``CronExpr.count_between`` (O(months + DST transitions), no iteration over fires) and
    then iterates only over the ``limit`` newest fires, found by bisecting on the count.
    """
    if limit < 0:
        raise ValueError("limit must be >= 0")
    if until_ms <= after_ms:
        return [], 0
    if isinstance(schedule, AtSchedule):
        inside = after_ms < schedule.at_unix_ms <= until_ms
        return ([schedule.at_unix_ms] if inside and limit else []), int(inside)
    if isinstance(schedule, EverySchedule):
        anchor = _anchor(schedule, first_seen_ms)
        step = schedule.interval_ms
        first_k = 1 if after_ms < anchor + step else (after_ms - anchor) // step + 1
        last_k = (until_ms - anchor) // step
        total = max(0, last_k - first_k + 1)
        keep = min(total, limit)
        return [anchor + k * step for k in range(last_k - keep + 1, last_k + 1)], total
    expr = _cron(schedule)
    zone = get_zone(schedule.timezone)
    total = expr.count_between(after_ms, until_ms, zone)
    if total == 0 or limit == 0:
        return [], total
    start = after_ms
    if total > limit:
        # Largest start whose window (start, until] still holds `limit` fires: fires are
        # distinct whole seconds, so the count drops by at most one per second.
        lo, hi = after_ms // 1000, until_ms // 1000  # count(lo) >= limit > count(hi)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if expr.count_between(mid * 1000, until_ms, zone) >= limit:
                lo = mid
            else:
                hi = mid
        start = max(after_ms, lo * 1000)
    newest: deque[int] = deque(maxlen=limit)
    t = start
    while True:
        nxt = expr.next_after(t, zone)
        if nxt is None or nxt > until_ms:
            break
        newest.append(nxt)
        t = nxt
    return list(newest), total


_UNITS = (
    (86_400_000, "day"),
    (3_600_000, "hour"),
    (60_000, "minute"),
    (1_000, "second"),
)


def format_interval(interval_ms: int) -> str:
    """'5 minutes', 'hour', '90 seconds', '1500 milliseconds': the largest exact unit."""
    for size, name in _UNITS:
        if interval_ms % size == 0:
            n = interval_ms // size
            return name if n == 1 else f"{n} {name}s"
    return f"{interval_ms} milliseconds"


def explain(schedule: Schedule) -> str:
    """One line for people, e.g. "at 09:00 on Monday through Friday (Europe/Prague)"."""
    if isinstance(schedule, CronSchedule):
        return f"{_cron(schedule).explain()} ({schedule.timezone})"
    if isinstance(schedule, EverySchedule):
        every = f"every {format_interval(schedule.interval_ms)}"
        if schedule.anchor is not None:
            return f"{every} (anchored at {schedule.anchor})"
        if schedule.anchor_unix_ms is not None:
            return f"{every} (anchored at {format_rfc3339(schedule.anchor_unix_ms)})"
        return f"{every} (anchored when the daemon first sees it)"
    return f"once at {schedule.at}"
