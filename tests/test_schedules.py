"""Schedules → nominal ticks: every (anchored, O(1), no drift), at, cron; counts; explain."""

from __future__ import annotations

import pytest

from routines.model import AtSchedule, CronSchedule, EverySchedule
from routines.schedules import (
    explain,
    format_interval,
    is_tick,
    next_fire,
    ticks_between,
    upcoming,
)
from routines.timefmt import format_rfc3339, get_zone, parse_rfc3339

ANCHOR = parse_rfc3339("2026-03-30T09:00:00+02:00")
FIVE_MIN = 300_000


def every(interval_ms: int = FIVE_MIN, anchor: int | None = ANCHOR) -> EverySchedule:
    text = None if anchor is None else format_rfc3339(anchor, get_zone("Europe/Prague"))
    return EverySchedule(interval_ms=interval_ms, anchor=text, anchor_unix_ms=anchor)


@pytest.mark.parametrize(
    ("after", "expected"),
    [
        (ANCHOR - 10**9, ANCHOR + FIVE_MIN),  # before the anchor: k >= 1, never the anchor
        (ANCHOR, ANCHOR + FIVE_MIN),
        (ANCHOR + 1, ANCHOR + FIVE_MIN),
        (ANCHOR + FIVE_MIN - 1, ANCHOR + FIVE_MIN),
        (ANCHOR + FIVE_MIN, ANCHOR + 2 * FIVE_MIN),  # strictly after
        (ANCHOR + 7 * FIVE_MIN + 123, ANCHOR + 8 * FIVE_MIN),
    ],
)
def test_every_next_fire(after: int, expected: int) -> None:
    assert next_fire(every(), after) == expected


def test_every_never_drifts_over_a_million_ticks() -> None:
    s = every(interval_ms=1_001)
    # O(1) arithmetic: the millionth tick is exactly anchor + 10^6 · interval...
    assert next_fire(s, ANCHOR + 10**6 * 1_001 - 1) == ANCHOR + 10**6 * 1_001
    # ...and chaining a million next_fire calls lands on the same instant (no accumulation).
    t = ANCHOR
    for _ in range(10**6):
        nxt = next_fire(s, t)
        assert nxt is not None
        t = nxt
    assert t == ANCHOR + 10**6 * 1_001


def test_every_anchor_falls_back_to_first_seen() -> None:
    s = every(anchor=None)
    assert next_fire(s, 1_000, first_seen_ms=500) == 500 + FIVE_MIN
    # The schedule's own anchor wins over first_seen.
    assert next_fire(every(), ANCHOR, first_seen_ms=1) == ANCHOR + FIVE_MIN
    with pytest.raises(ValueError, match="first_seen_ms"):
        next_fire(s, 1_000)


def test_at() -> None:
    at = parse_rfc3339("2026-03-30T09:00:00+02:00")
    s = AtSchedule(at="2026-03-30T09:00:00+02:00", at_unix_ms=at)
    assert next_fire(s, at - 1) == at
    assert next_fire(s, at) is None
    assert upcoming(s, 0, 5) == [at]
    assert ticks_between(s, at - 1, at, limit=5) == ([at], 1)
    assert ticks_between(s, at, at + 10, limit=5) == ([], 0)
    assert ticks_between(s, at - 1, at, limit=0) == ([], 1)


def test_cron_uses_the_schedule_zone() -> None:
    s = CronSchedule("0 9 * * 1-5", timezone="Europe/Prague")
    after = parse_rfc3339("2026-03-27T10:00:00+01:00")  # a Friday
    got = [format_rfc3339(t, get_zone("Europe/Prague")) for t in upcoming(s, after, 2)]
    assert got == ["2026-03-30T09:00:00+02:00", "2026-03-31T09:00:00+02:00"]


def test_is_tick() -> None:
    assert is_tick(every(), ANCHOR + 3 * FIVE_MIN)
    assert not is_tick(every(), ANCHOR + 3 * FIVE_MIN + 1)
    assert not is_tick(every(), ANCHOR)  # the anchor itself is not a tick (k >= 1)
    s = CronSchedule("0 * * * *")
    assert is_tick(s, parse_rfc3339("2026-03-30T10:00:00Z"))
    assert not is_tick(s, parse_rfc3339("2026-03-30T10:00:01Z"))


@pytest.mark.parametrize(
    ("after", "until", "limit", "newest_k", "total"),
    [
        (ANCHOR, ANCHOR, 5, [], 0),
        (ANCHOR, ANCHOR + FIVE_MIN, 5, [1], 1),
        (ANCHOR, ANCHOR + FIVE_MIN - 1, 5, [], 0),
        (ANCHOR + 1, ANCHOR + 10 * FIVE_MIN, 3, [8, 9, 10], 10),
        (ANCHOR + FIVE_MIN, ANCHOR + 10 * FIVE_MIN + 7, 100, list(range(2, 11)), 9),
        (ANCHOR - 10**9, ANCHOR + 2 * FIVE_MIN, 5, [1, 2], 2),
        (ANCHOR, ANCHOR + 10**6 * FIVE_MIN, 2, [10**6 - 1, 10**6], 10**6),
        (ANCHOR, ANCHOR + 10 * FIVE_MIN, 0, [], 10),
    ],
)
def test_every_ticks_between(
    after: int, until: int, limit: int, newest_k: list[int], total: int
) -> None:
    ticks, count = ticks_between(every(), after, until, limit=limit)
    assert ticks == [ANCHOR + k * FIVE_MIN for k in newest_k]
    assert count == total


def test_cron_ticks_between_keeps_the_newest() -> None:
    s = CronSchedule("*/15 * * * *", timezone="UTC")
    after = parse_rfc3339("2026-03-01T00:00:00Z")
    until = parse_rfc3339("2026-03-08T00:00:00Z")
    ticks, count = ticks_between(s, after, until, limit=3)
    assert count == 7 * 24 * 4
    assert [format_rfc3339(t) for t in ticks] == [
        "2026-03-07T23:30:00+00:00",
        "2026-03-07T23:45:00+00:00",
        "2026-03-08T00:00:00+00:00",
    ]
    all_ticks, n = ticks_between(s, after, until, limit=10_000)
    assert n == len(all_ticks) == 672
    assert all_ticks == upcoming(s, after, 672)


def test_cron_ticks_between_is_bounded_for_a_long_outage() -> None:
    # A per-second schedule down for a year: 31.5 million ticks, counted without iterating.
    s = CronSchedule("* * * * * *", timezone="Europe/Prague")
    after = parse_rfc3339("2026-01-01T00:00:00Z")
    until = parse_rfc3339("2027-01-01T00:00:00Z")
    ticks, count = ticks_between(s, after, until, limit=2)
    assert count == 365 * 86_400
    assert ticks == [until - 1000, until]


def test_cron_ticks_between_across_fall_back() -> None:
    s = CronSchedule("0 * * * *", timezone="America/New_York")
    after = parse_rfc3339("2026-11-01T00:30:00-04:00")
    until = parse_rfc3339("2026-11-01T02:00:00-05:00")
    ticks, count = ticks_between(s, after, until, limit=2)
    assert count == 3  # 01:00 EDT, 01:00 EST, 02:00 EST
    zone = get_zone("America/New_York")
    assert [format_rfc3339(t, zone) for t in ticks] == [
        "2026-11-01T01:00:00-05:00",
        "2026-11-01T02:00:00-05:00",
    ]


@pytest.mark.parametrize(
    ("interval_ms", "text"),
    [
        (1_000, "second"),
        (30_000, "30 seconds"),
        (60_000, "minute"),
        (90_000, "90 seconds"),
        (300_000, "5 minutes"),
        (3_600_000, "hour"),
        (7_200_000, "2 hours"),
        (86_400_000, "day"),
        (1_500, "1500 milliseconds"),
    ],
)
def test_format_interval(interval_ms: int, text: str) -> None:
    assert format_interval(interval_ms) == text


def test_explain() -> None:
    assert (
        explain(CronSchedule("0 9 * * 1-5", timezone="Europe/Prague"))
        == "at 09:00 on Monday through Friday (Europe/Prague)"
    )
    assert explain(every()) == "every 5 minutes (anchored at 2026-03-30T09:00:00+02:00)"
    assert (
        explain(EverySchedule(interval_ms=60_000, anchor_unix_ms=0))
        == "every minute (anchored at 1970-01-01T00:00:00+00:00)"
    )
    assert (
        explain(EverySchedule(interval_ms=60_000))
        == "every minute (anchored when the daemon first sees it)"
    )
    at = AtSchedule(at="2026-03-30T09:00:00+02:00", at_unix_ms=ANCHOR)
    assert explain(at) == "once at 2026-03-30T09:00:00+02:00"
