"""The cron engine, pinned as tables of (expression, zone, start, expected fires).

Every SPEC §2.1 DST rule is written out for three zones: Europe/Prague and America/New_York
(one-hour shifts at 02:00 / 03:00) and Australia/Lord_Howe (a 30-minute shift, which catches
code that assumes DST moves whole hours). Times are RFC 3339 in the schedule's zone.
"""

from __future__ import annotations

import random
from datetime import datetime, tzinfo

import pytest
from cronsim import CronSim

from routines.cron import CronError, parse_cron
from routines.timefmt import format_rfc3339, get_zone, parse_rfc3339, to_unix_ms

PRAGUE = "Europe/Prague"
NEW_YORK = "America/New_York"
LORD_HOWE = "Australia/Lord_Howe"

# 2026 transitions used below:
#   Prague     spring 03-29 02:00→03:00   fall 10-25 03:00→02:00 (02:xx twice)
#   New York   spring 03-08 02:00→03:00   fall 11-01 02:00→01:00 (01:xx twice)
#   Lord Howe  fall   04-05 02:00→01:30 (01:30-01:59 twice)   spring 10-04 02:00→02:30


def fires(expr: str, zone_name: str, start: str, count: int) -> list[str]:
    zone = get_zone(zone_name)
    cron = parse_cron(expr)
    t = parse_rfc3339(start)
    out = []
    for _ in range(count):
        nxt = cron.next_after(t, zone)
        if nxt is None:
            break
        out.append(format_rfc3339(nxt, zone))
        t = nxt
    return out


DST_CASES = [
    # --- fixed-time in a spring-forward gap: once, at the first instant after the gap ---
    ("30 2 * * *", PRAGUE, "2026-03-28T12:00:00+01:00",
     ["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"]),
    ("30 2 * * *", NEW_YORK, "2026-03-07T12:00:00-05:00",
     ["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:00-04:00"]),
    ("15 2 * * *", LORD_HOWE, "2026-10-03T12:00:00+10:30",
     ["2026-10-04T02:30:00+11:00", "2026-10-05T02:15:00+11:00"]),
    ("0 2 * * *", LORD_HOWE, "2026-10-03T12:00:00+10:30",
     ["2026-10-04T02:30:00+11:00", "2026-10-05T02:00:00+11:00"]),
    # several wall times in one gap fire once
    ("15,45 2 * * *", PRAGUE, "2026-03-28T12:00:00+01:00",
     ["2026-03-29T03:00:00+02:00", "2026-03-30T02:15:00+02:00", "2026-03-30T02:45:00+02:00"]),
    ("15,45 2 * * *", NEW_YORK, "2026-03-07T12:00:00-05:00",
     ["2026-03-08T03:00:00-04:00", "2026-03-09T02:15:00-04:00", "2026-03-09T02:45:00-04:00"]),
    ("10,20 2 * * *", LORD_HOWE, "2026-10-03T12:00:00+10:30",
     ["2026-10-04T02:30:00+11:00", "2026-10-05T02:10:00+11:00"]),
    # the gap's fire and the wall time right after the gap are the same instant: once
    ("0 2,3 * * *", PRAGUE, "2026-03-28T12:00:00+01:00",
     ["2026-03-29T03:00:00+02:00", "2026-03-30T02:00:00+02:00"]),
    # --- wildcard schedules do not fire in the gap ---
    ("*/30 2 * * *", PRAGUE, "2026-03-28T12:00:00+01:00",
     ["2026-03-30T02:00:00+02:00", "2026-03-30T02:30:00+02:00"]),
    ("*/30 2 * * *", NEW_YORK, "2026-03-07T12:00:00-05:00",
     ["2026-03-09T02:00:00-04:00", "2026-03-09T02:30:00-04:00"]),
    # Lord Howe's gap is 02:00-02:29, so 02:30 onwards is real and fires
    ("*/10 2 * * *", LORD_HOWE, "2026-10-03T12:00:00+10:30",
     ["2026-10-04T02:30:00+11:00", "2026-10-04T02:40:00+11:00", "2026-10-04T02:50:00+11:00",
      "2026-10-05T02:00:00+11:00"]),
    # --- hourly fires at every real hour on spring-forward day ---
    ("0 * * * *", NEW_YORK, "2026-03-08T00:30:00-05:00",
     ["2026-03-08T01:00:00-05:00", "2026-03-08T03:00:00-04:00", "2026-03-08T04:00:00-04:00"]),
    ("@hourly", PRAGUE, "2026-03-29T01:30:00+01:00",
     ["2026-03-29T03:00:00+02:00", "2026-03-29T04:00:00+02:00"]),
    ("0 * * * *", LORD_HOWE, "2026-10-04T00:30:00+10:30",
     ["2026-10-04T01:00:00+10:30", "2026-10-04T03:00:00+11:00"]),
    # --- wildcard on fall-back day: the repeated wall time fires twice ---
    ("0 * * * *", NEW_YORK, "2026-11-01T00:30:00-04:00",
     ["2026-11-01T01:00:00-04:00", "2026-11-01T01:00:00-05:00", "2026-11-01T02:00:00-05:00"]),
    ("0 * * * *", PRAGUE, "2026-10-25T01:30:00+02:00",
     ["2026-10-25T02:00:00+02:00", "2026-10-25T02:00:00+01:00", "2026-10-25T03:00:00+01:00"]),
    ("45 * * * *", LORD_HOWE, "2026-04-05T01:00:00+11:00",
     ["2026-04-05T01:45:00+11:00", "2026-04-05T01:45:00+10:30", "2026-04-05T02:45:00+10:30"]),
    # 02:00 exists only once in Lord Howe on fall-back day (01:59:59+11 → 01:30+10:30)
    ("0 * * * *", LORD_HOWE, "2026-04-05T00:30:00+11:00",
     ["2026-04-05T01:00:00+11:00", "2026-04-05T02:00:00+10:30", "2026-04-05T03:00:00+10:30"]),
    ("*/20 1 * * *", NEW_YORK, "2026-11-01T01:50:00-04:00",
     ["2026-11-01T01:00:00-05:00", "2026-11-01T01:20:00-05:00", "2026-11-01T01:40:00-05:00",
      "2026-11-02T01:00:00-05:00"]),
    # --- fixed-time on a repeated wall time: once, at the first occurrence ---
    ("30 1 * * *", NEW_YORK, "2026-10-31T12:00:00-04:00",
     ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"]),
    ("30 2 * * *", PRAGUE, "2026-10-24T12:00:00+02:00",
     ["2026-10-25T02:30:00+02:00", "2026-10-26T02:30:00+01:00"]),
    ("45 1 * * *", LORD_HOWE, "2026-04-04T12:00:00+11:00",
     ["2026-04-05T01:45:00+11:00", "2026-04-06T01:45:00+10:30"]),
    ("0 0-23 * * *", NEW_YORK, "2026-11-01T00:30:00-04:00",
     ["2026-11-01T01:00:00-04:00", "2026-11-01T02:00:00-05:00"]),
    ("0 0-23 * * *", PRAGUE, "2026-10-25T01:30:00+02:00",
     ["2026-10-25T02:00:00+02:00", "2026-10-25T03:00:00+01:00"]),
    ("45 0-23 * * *", LORD_HOWE, "2026-04-05T01:00:00+11:00",
     ["2026-04-05T01:45:00+11:00", "2026-04-05T02:45:00+10:30"]),
    # starting inside the second pass of the repeated hour: the first pass already fired
    ("30 1 * * *", NEW_YORK, "2026-11-01T01:10:00-05:00", ["2026-11-02T01:30:00-05:00"]),
    # --- 6-field expressions follow the same rules (cronsim alone would not fix them up) ---
    ("0 30 2 * * *", PRAGUE, "2026-03-28T12:00:00+01:00",
     ["2026-03-29T03:00:00+02:00", "2026-03-30T02:30:00+02:00"]),
    ("30 30 2 * * *", NEW_YORK, "2026-03-07T12:00:00-05:00",
     ["2026-03-08T03:00:00-04:00", "2026-03-09T02:30:30-04:00"]),
    ("0 30 1 * * *", NEW_YORK, "2026-10-31T12:00:00-04:00",
     ["2026-11-01T01:30:00-04:00", "2026-11-02T01:30:00-05:00"]),
    ("0 0 * * * *", NEW_YORK, "2026-11-01T00:30:00-04:00",
     ["2026-11-01T01:00:00-04:00", "2026-11-01T01:00:00-05:00", "2026-11-01T02:00:00-05:00"]),
    ("*/20 30 2 * * *", PRAGUE, "2026-03-28T12:00:00+01:00",
     ["2026-03-30T02:30:00+02:00", "2026-03-30T02:30:20+02:00", "2026-03-30T02:30:40+02:00"]),
    ("15 10 2 * * *", LORD_HOWE, "2026-10-03T12:00:00+10:30",
     ["2026-10-04T02:30:00+11:00", "2026-10-05T02:10:15+11:00"]),
]  # fmt: skip


@pytest.mark.parametrize(("expr", "zone", "start", "expected"), DST_CASES)
def test_dst_rules(expr: str, zone: str, start: str, expected: list[str]) -> None:
    assert fires(expr, zone, start, len(expected)) == expected


UTC_CASES = [
    # Vixie OR when both day fields are restricted: the 1st, and every Monday
    ("0 0 1 * MON", "2026-02-27T00:00:00Z",
     ["2026-03-01T00:00:00+00:00", "2026-03-02T00:00:00+00:00", "2026-03-09T00:00:00+00:00"]),
    ("0 0 13 * 5", "2026-03-01T00:00:00Z",
     ["2026-03-06T00:00:00+00:00", "2026-03-13T00:00:00+00:00", "2026-03-20T00:00:00+00:00"]),
    # a day field starting with * (also */2) is unrestricted: both must match
    ("0 0 */2 * MON", "2026-03-01T00:00:00Z",
     ["2026-03-09T00:00:00+00:00", "2026-03-23T00:00:00+00:00", "2026-04-13T00:00:00+00:00"]),
    ("0 0 1-7 * *", "2026-03-01T00:00:00Z",
     ["2026-03-02T00:00:00+00:00", "2026-03-03T00:00:00+00:00"]),
    ("0 0 ? * MON", "2026-03-01T00:00:00Z",
     ["2026-03-02T00:00:00+00:00", "2026-03-09T00:00:00+00:00"]),
    ("0 0 1 * ?", "2026-03-01T00:00:00Z",
     ["2026-04-01T00:00:00+00:00", "2026-05-01T00:00:00+00:00"]),
    # steps: 5/15 is 5,20,35,50 as in Vixie cron
    ("5/15 * * * *", "2026-03-01T10:00:00Z",
     ["2026-03-01T10:05:00+00:00", "2026-03-01T10:20:00+00:00", "2026-03-01T10:35:00+00:00",
      "2026-03-01T10:50:00+00:00", "2026-03-01T11:05:00+00:00"]),
    ("10-30/10 9 * * *", "2026-03-01T00:00:00Z",
     ["2026-03-01T09:10:00+00:00", "2026-03-01T09:20:00+00:00", "2026-03-01T09:30:00+00:00",
      "2026-03-02T09:10:00+00:00"]),
    ("0 */6 * * *", "2026-03-01T01:00:00Z",
     ["2026-03-01T06:00:00+00:00", "2026-03-01T12:00:00+00:00", "2026-03-01T18:00:00+00:00",
      "2026-03-02T00:00:00+00:00"]),
    ("*/15 * * * * *", "2026-03-01T00:00:00Z",
     ["2026-03-01T00:00:15+00:00", "2026-03-01T00:00:30+00:00"]),
    # names, case-insensitive; 0 and 7 are Sunday; FRI-SUN closes the week
    ("0 0 1 jan *", "2026-03-01T00:00:00Z", ["2027-01-01T00:00:00+00:00"]),
    ("0 9 * * mon-Fri", "2026-03-06T10:00:00Z",
     ["2026-03-09T09:00:00+00:00", "2026-03-10T09:00:00+00:00"]),
    ("0 0 * * 7", "2026-03-01T00:00:00Z",
     ["2026-03-08T00:00:00+00:00", "2026-03-15T00:00:00+00:00"]),
    ("0 0 * * 0", "2026-03-01T00:00:00Z",
     ["2026-03-08T00:00:00+00:00", "2026-03-15T00:00:00+00:00"]),
    ("0 0 * * SUN", "2026-03-01T00:00:00Z", ["2026-03-08T00:00:00+00:00"]),
    ("0 0 * * FRI-SUN", "2026-03-02T00:00:00Z",
     ["2026-03-06T00:00:00+00:00", "2026-03-07T00:00:00+00:00", "2026-03-08T00:00:00+00:00",
      "2026-03-13T00:00:00+00:00"]),
    # macros
    ("@yearly", "2026-03-01T00:00:00Z", ["2027-01-01T00:00:00+00:00"]),
    ("@annually", "2026-03-01T00:00:00Z", ["2027-01-01T00:00:00+00:00"]),
    ("@monthly", "2026-03-01T00:00:00Z", ["2026-04-01T00:00:00+00:00"]),
    ("@weekly", "2026-03-02T00:00:00Z", ["2026-03-08T00:00:00+00:00"]),
    ("@daily", "2026-03-01T00:00:00Z", ["2026-03-02T00:00:00+00:00"]),
    ("@midnight", "2026-03-01T00:00:00Z", ["2026-03-02T00:00:00+00:00"]),
    ("@HOURLY", "2026-03-01T00:00:00Z", ["2026-03-01T01:00:00+00:00"]),
    # L, LW, nW
    ("0 0 L * *", "2026-01-15T00:00:00Z",
     ["2026-01-31T00:00:00+00:00", "2026-02-28T00:00:00+00:00", "2026-03-31T00:00:00+00:00"]),
    ("0 0 L 2 *", "2027-03-01T00:00:00Z", ["2028-02-29T00:00:00+00:00"]),
    ("0 0 LW * *", "2026-01-01T00:00:00Z",
     ["2026-01-30T00:00:00+00:00", "2026-02-27T00:00:00+00:00", "2026-03-31T00:00:00+00:00"]),
    ("0 0 LW 5 *", "2026-01-01T00:00:00Z", ["2026-05-29T00:00:00+00:00"]),
    ("0 0 15W * *", "2026-08-01T00:00:00Z",
     ["2026-08-14T00:00:00+00:00", "2026-09-15T00:00:00+00:00", "2026-10-15T00:00:00+00:00",
      "2026-11-16T00:00:00+00:00"]),
    # 1W on Saturday the 1st → Monday the 3rd (never back into the previous month)
    ("0 0 1W 8 *", "2026-01-01T00:00:00Z", ["2026-08-03T00:00:00+00:00"]),
    # 31W on Sunday the 31st → Friday the 29th (never into the next month)
    ("0 0 31W 5 *", "2026-01-01T00:00:00Z", ["2026-05-29T00:00:00+00:00"]),
    # 31W skips months without a 31st, like plain 31
    ("0 0 31W * *", "2026-03-31T12:00:00Z",
     ["2026-05-29T00:00:00+00:00", "2026-07-31T00:00:00+00:00"]),
    ("0 0 1W,15W * *", "2026-08-01T00:00:00Z",
     ["2026-08-03T00:00:00+00:00", "2026-08-14T00:00:00+00:00", "2026-09-01T00:00:00+00:00"]),
    # W with OR semantics against a restricted day-of-week
    ("0 0 15W 8 MON", "2026-08-01T00:00:00Z",
     ["2026-08-03T00:00:00+00:00", "2026-08-10T00:00:00+00:00", "2026-08-14T00:00:00+00:00",
      "2026-08-17T00:00:00+00:00"]),
    # day-of-week L and #
    ("0 0 * * 5L", "2026-01-01T00:00:00Z",
     ["2026-01-30T00:00:00+00:00", "2026-02-27T00:00:00+00:00", "2026-03-27T00:00:00+00:00"]),
    ("0 0 * * MON#1", "2026-02-15T00:00:00Z",
     ["2026-03-02T00:00:00+00:00", "2026-04-06T00:00:00+00:00"]),
    ("0 0 * * 1#1", "2026-02-15T00:00:00Z",
     ["2026-03-02T00:00:00+00:00", "2026-04-06T00:00:00+00:00"]),
    ("0 0 * * 7#2", "2026-03-01T00:00:00Z", ["2026-03-08T00:00:00+00:00"]),
    ("0 0 * 2 MON#5", "2026-01-01T00:00:00Z", ["2044-02-29T00:00:00+00:00"]),
    # a rare AND combination far ahead but within the 50-year horizon
    ("0 0 29 2 */7", "2033-01-01T00:00:00Z", ["2060-02-29T00:00:00+00:00"]),
    # sub-second starts: strictly after, on whole seconds
    ("* * * * * *", "2026-03-01T00:00:00.500Z", ["2026-03-01T00:00:01+00:00"]),
    ("* * * * * *", "2026-03-01T00:00:01Z", ["2026-03-01T00:00:02+00:00"]),
]  # fmt: skip


@pytest.mark.parametrize(("expr", "start", "expected"), UTC_CASES)
def test_fields(expr: str, start: str, expected: list[str]) -> None:
    assert fires(expr, "UTC", start, len(expected)) == expected


def test_fixed_offset_zone_matches_utc_shifted() -> None:
    assert fires("0 9 * * *", "Etc/GMT-3", "2026-03-01T00:00:00Z", 2) == [
        "2026-03-01T09:00:00+03:00",
        "2026-03-02T09:00:00+03:00",
    ]


def test_no_fire_within_horizon_is_none() -> None:
    zone = get_zone("UTC")
    assert parse_cron("0 0 29 2 */7").next_after(parse_rfc3339("2060-03-01T00:00:00Z"), zone) == (
        parse_rfc3339("2088-02-29T00:00:00Z")
    )
    # Beyond what datetime can represent, the engine answers "never" rather than failing.
    assert parse_cron("* * * * *").next_after(253_400_000_000_000, zone) is None


@pytest.mark.parametrize(
    ("expr", "wildcard"),
    [
        ("0 9 * * *", False),
        ("0 0-23 * * *", False),
        ("30 2 * * *", False),
        ("* 2 * * *", True),
        ("*/30 2 * * *", True),
        ("0 * * * *", True),
        ("@hourly", True),
        ("@daily", False),
        ("0 30 2 * * *", False),
        ("* 30 2 * * *", True),
        ("*/10 30 2 * * *", True),
        ("0 */5 2 * * *", True),
    ],
)
def test_is_wildcard(expr: str, wildcard: bool) -> None:
    assert parse_cron(expr).is_wildcard is wildcard


ERRORS = [
    ("0 25 * * *", "hour 25 is out of range 0-23"),
    ("60 * * * *", "minute 60 is out of range 0-59"),
    ("0 0 0 * *", "day-of-month 0 is out of range 1-31"),
    ("0 0 * 13 *", "month 13 is out of range 1-12"),
    ("0 0 * * 8", "day-of-week 8 is out of range 0-7"),
    ("61 0 0 * * *", "second 61 is out of range 0-59"),
    ("0 0 * * FOO", 'day-of-week "FOO" is not a day name'),
    ("0 0 * FOO *", 'month "FOO" is not a month name'),
    ("0 0 * * M0N", 'day-of-week "M0N" is not a number or day name'),
    ("x * * * *", 'minute "x" is not a number'),
    ("* * * *", "expected 5 or 6 fields, got 4"),
    ("* * * * * * *", "expected 5 or 6 fields, got 7"),
    ("", "expected 5 or 6 fields, got 0"),
    ("@reboot", 'unknown macro "@reboot" (use @hourly, @daily, @midnight, @weekly, '
                "@monthly, @yearly or @annually)"),
    ("*/0 * * * *", "minute step 0 is out of range 1-59"),
    ("*/60 * * * *", "minute step 60 is out of range 1-59"),
    ("0 */x * * *", 'hour step "x" is not a number'),
    ("5-3 * * * *", 'minute range "5-3" runs backwards (5 > 3)'),
    ("0 0 * * SAT-MON", 'day-of-week range "SAT-MON" runs backwards (6 > 1)'),
    ("1,,2 * * * *", 'minute "1,,2" has an empty list item'),
    ("? * * * *", 'minute "?" is only allowed in day-of-month and day-of-week'),
    ("0 0 ?,1 * *", 'day-of-month "?,1": "?" cannot be combined with other values'),
    ("0 0 * * MON#6", 'day-of-week "MON#6": occurrence 6 is out of range 1-5'),
    ("0 0 * * 1#x", 'day-of-week "1#x": occurrence "x" is not a number'),
    ("0 0 * * 9L", "day-of-week 9 is out of range 0-7"),
    ("0 0 32W * *", "day-of-month 32 is out of range 1-31"),
    ("0 0 XW * *", 'day-of-month "X" is not a number'),
    ("0 0 L * 1L5", 'day-of-week "1L5" is not a number or day name'),
    ("0 L * * *", 'hour "L" is not a number'),
    ("0 0 31 2 *", "day-of-month 31 never occurs in February"),
    ("0 0 30,31 2 *", "day-of-month 30 never occurs in February"),
    ("0 0 31 4,6,9 *", "day-of-month 31 never occurs in April or June or September"),
    ("0 0 31W 2 *", "day-of-month 31 never occurs in February"),
    ("0 0 -1 * *", "day-of-month has an empty value"),
]  # fmt: skip


@pytest.mark.parametrize(("expr", "detail"), ERRORS)
def test_errors(expr: str, detail: str) -> None:
    with pytest.raises(CronError) as info:
        parse_cron(expr)
    assert str(info.value).startswith(f'invalid cron expression "{expr}": ')
    assert info.value.detail == detail or info.value.detail.startswith(detail)
    assert isinstance(info.value, ValueError)


def test_restricted_day_of_week_rescues_a_missing_day() -> None:
    # OR semantics: "31st of February or any Monday in February" does fire.
    assert fires("0 0 31 2 MON", "UTC", "2026-01-01T00:00:00Z", 1) == ["2026-02-02T00:00:00+00:00"]


@pytest.mark.parametrize(
    ("expr", "text"),
    [
        ("0 9 * * 1-5", "at 09:00 on Monday through Friday"),
        ("@daily", "at 00:00 every day"),
        ("@hourly", "at the start of every hour"),
        ("0 0 L * *", "at 00:00 on the last day of every month"),
        ("0 0 * * 5L", "at 00:00 on the last Friday of the month"),
        ("0 0 15W * *", "at 00:00 on the weekday nearest the 15th day of the month"),
        ("0 0 1W,15W * MON",
         "at 00:00 on the weekday nearest the first and the 15th day of the month and on Monday"),
        ("0 9 15W 1,6 *", "at 09:00 on the weekday nearest the 15th day of the month in January "
                          "and June"),
        ("30 0 9 * * 1-5", "at 09:00:30 on Monday through Friday"),
        ("0 9 * * FRI-SUN", "at 09:00 on Friday through Sunday"),
    ],
)  # fmt: skip
def test_explain(expr: str, text: str) -> None:
    assert parse_cron(expr).explain() == text


def test_parse_is_cached_and_keeps_the_text() -> None:
    assert parse_cron("0 9 * * 1-5") is parse_cron("0 9 * * 1-5")
    assert parse_cron("0  9 * * mon").expr == "0  9 * * mon"


# --- counting agrees with iterating --------------------------------------------------------

COUNT_CASES = [
    ("0 * * * *", NEW_YORK, "2026-10-31T00:00:00-04:00", "2026-11-02T00:00:00-05:00", 49),
    ("0 0-23 * * *", NEW_YORK, "2026-10-31T00:00:00-04:00", "2026-11-02T00:00:00-05:00", 48),
    ("15,45 2 * * *", PRAGUE, "2026-03-28T00:00:00+01:00", "2026-03-31T00:00:00+02:00", 5),
    ("0 2,3 * * *", PRAGUE, "2026-03-28T00:00:00+01:00", "2026-03-31T00:00:00+02:00", 5),
    ("*/10 2 * * *", LORD_HOWE, "2026-10-03T00:00:00+10:30", "2026-10-05T00:00:00+11:00", 9),
    ("45 * * * *", LORD_HOWE, "2026-04-05T00:00:00+11:00", "2026-04-06T00:00:00+10:30", 25),
    ("* * * * * *", "UTC", "2026-01-01T00:00:00Z", "2027-01-01T00:00:00Z", 365 * 86_400),
    ("* * * * * *", PRAGUE, "2026-01-01T00:00:00+01:00", "2027-01-01T00:00:00+01:00",
     365 * 86_400),
    ("0 9 * * 1-5", PRAGUE, "2026-01-01T00:00:00+01:00", "2027-01-01T00:00:00+01:00", 261),
]  # fmt: skip


def _iterate_count(expr: str, zone: tzinfo, after_ms: int, until_ms: int) -> int:
    n, t = 0, after_ms
    while True:
        nxt = parse_cron(expr).next_after(t, zone)
        if nxt is None or nxt > until_ms:
            return n
        n, t = n + 1, nxt


@pytest.mark.parametrize(("expr", "zone", "after", "until", "expected"), COUNT_CASES)
def test_count_between(expr: str, zone: str, after: str, until: str, expected: int) -> None:
    z = get_zone(zone)
    a, b = parse_rfc3339(after), parse_rfc3339(until)
    cron = parse_cron(expr)
    assert cron.count_between(a, b, z) == expected
    if expected < 1000:
        assert _iterate_count(expr, z, a, b) == expected


def _random_field(rng: random.Random, lo: int, hi: int) -> str:
    k = rng.random()
    if k < 0.3:
        return "*"
    if k < 0.4:
        return f"*/{rng.randint(2, (hi - lo) // 2 + 1)}"
    if k < 0.6:
        return str(rng.randint(lo, hi))
    if k < 0.75:
        a = rng.randint(lo, hi)
        return f"{a}-{rng.randint(a, hi)}"
    if k < 0.85:
        return ",".join(str(x) for x in sorted(rng.sample(range(lo, hi + 1), 3)))
    return f"{rng.randint(lo, hi)}/{rng.randint(1, max(1, (hi - lo) // 2))}"


def _random_expr(rng: random.Random) -> str:
    hour = _random_field(rng, 0, 23)
    if rng.random() < 0.3:  # bias towards the hours where DST happens
        hour = rng.choice(["1", "2", "3", "1-3", "*/2", "2,3", "0-23"])
    return " ".join(
        [
            _random_field(rng, 0, 59),
            hour,
            _random_field(rng, 1, 28),
            _random_field(rng, 1, 12),
            _random_field(rng, 0, 6),
        ]
    )


@pytest.mark.parametrize("zone_name", [PRAGUE, NEW_YORK, "UTC"])
def test_differential_against_cronsim(zone_name: str) -> None:
    """Plain 5-field expressions must fire exactly where cronsim (Debian semantics) fires,
    DST days included, over a whole year."""
    rng = random.Random(zone_name)
    zone = get_zone(zone_name)
    start = datetime(2026, 1, 1, tzinfo=zone)
    end_ms = to_unix_ms(datetime(2027, 1, 1, tzinfo=zone))
    for _ in range(100):
        expr = _random_expr(rng)
        expected: list[int] = []
        for dt in CronSim(expr, start):
            ms = to_unix_ms(dt)
            if ms > end_ms or len(expected) >= 300:
                break
            expected.append(ms)
        got: list[int] = []
        t = to_unix_ms(start)
        cron = parse_cron(expr)
        while len(got) < len(expected):
            nxt = cron.next_after(t, zone)
            assert nxt is not None, expr
            got.append(nxt)
            t = nxt
        assert got == expected, expr
        if len(expected) < 300:  # cronsim has nothing more this year; neither do we
            nxt = cron.next_after(t, zone)
            assert nxt is None or nxt > end_ms, expr


@pytest.mark.parametrize("zone_name", [PRAGUE, NEW_YORK, LORD_HOWE, "UTC"])
def test_count_matches_iteration_randomly(zone_name: str) -> None:
    rng = random.Random(f"count-{zone_name}")
    zone = get_zone(zone_name)
    bases = [
        "2026-03-07T00:00:00Z",
        "2026-03-28T00:00:00Z",
        "2026-04-04T00:00:00Z",
        "2026-10-03T00:00:00Z",
        "2026-10-24T00:00:00Z",
        "2026-10-31T00:00:00Z",
    ]
    for _ in range(60):
        expr = _random_expr(rng)
        if rng.random() < 0.3:
            expr = rng.choice(["0 ", "*/20 ", "15 ", "* "]) + expr
        a = parse_rfc3339(rng.choice(bases)) + rng.randint(0, 3 * 86_400_000)
        b = a + rng.randint(0, 4 * 86_400_000)
        expected = _iterate_count(expr, zone, a, b)
        assert parse_cron(expr).count_between(a, b, zone) == expected, (expr, a, b)
