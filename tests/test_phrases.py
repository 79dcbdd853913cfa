"""Natural-language schedule phrases → schedules (SPEC §2.1)."""

from __future__ import annotations

import pytest

from routines.model import AtSchedule, CronSchedule, EverySchedule
from routines.phrases import PhraseError, resolve_phrase
from routines.timefmt import format_rfc3339, get_zone, parse_rfc3339

PRAGUE = "Europe/Prague"
NOW = parse_rfc3339("2026-03-30T09:15:00+02:00")


@pytest.mark.parametrize(
    ("text", "interval_ms"),
    [
        ("every 5 minutes", 300_000),
        ("every 2h", 7_200_000),
        ("every 30s", 30_000),
        ("every 1 second", 1_000),
        ("every 10 sec", 10_000),
        ("every 10 secs", 10_000),
        ("every 15 seconds", 15_000),
        ("every 5m", 300_000),
        ("every 5 min", 300_000),
        ("every 5 mins", 300_000),
        ("every 1 minute", 60_000),
        ("every 3 hr", 10_800_000),
        ("every 3 hrs", 10_800_000),
        ("every 1 hour", 3_600_000),
        ("every 2 hours", 7_200_000),
        ("every 1d", 86_400_000),
        ("every 1 day", 86_400_000),
        ("every 7 days", 604_800_000),
        ("  Every   5   MINUTES ", 300_000),
    ],
)
def test_every(text: str, interval_ms: int) -> None:
    s = resolve_phrase(text, zone_name=PRAGUE, now_ms=NOW)
    assert s == EverySchedule(
        interval_ms=interval_ms, anchor="2026-03-30T09:15:00+02:00", anchor_unix_ms=NOW
    )


@pytest.mark.parametrize(
    ("text", "expr"),
    [
        ("every day at 9:30", "30 9 * * *"),
        ("every day at 09:30", "30 9 * * *"),
        ("every weekday at 9", "0 9 * * 1-5"),
        ("every monday at 8am", "0 8 * * 1"),
        ("every Monday at 8 AM", "0 8 * * 1"),
        ("every mon at 8:15pm", "15 20 * * 1"),
        ("every sunday at 12am", "0 0 * * 0"),
        ("every saturday at 12pm", "0 12 * * 6"),
        ("every friday at 12:30am", "30 0 * * 5"),
        ("daily at 18:00", "0 18 * * *"),
        ("Daily at 6pm", "0 18 * * *"),
        ("hourly", "0 * * * *"),
        ("every hour", "0 * * * *"),
        ("every minute", "* * * * *"),
        ("daily", "0 0 * * *"),
        ("every day", "0 0 * * *"),
        ("0 9 * * 1-5", "0 9 * * 1-5"),
        ("  0  9 * * MON-FRI ", "0 9 * * MON-FRI"),
        ("30 0 9 * * *", "30 0 9 * * *"),
        ("@daily", "@daily"),
    ],
)
def test_cron(text: str, expr: str) -> None:
    assert resolve_phrase(text, zone_name=PRAGUE, now_ms=NOW) == CronSchedule(expr, PRAGUE)


def _at(text: str, zone: str = PRAGUE, now: int = NOW) -> str:
    s = resolve_phrase(text, zone_name=zone, now_ms=now)
    assert isinstance(s, AtSchedule)
    assert parse_rfc3339(s.at) == s.at_unix_ms
    return format_rfc3339(s.at_unix_ms, get_zone(zone))


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("in 20 minutes", "2026-03-30T09:35:00+02:00"),
        ("in 2h", "2026-03-30T11:15:00+02:00"),
        ("in 45 s", "2026-03-30T09:15:45+02:00"),
        ("in 1 day", "2026-03-31T09:15:00+02:00"),
        ("tomorrow at 7", "2026-03-31T07:00:00+02:00"),
        ("tomorrow at 7:30pm", "2026-03-31T19:30:00+02:00"),
        ("Tomorrow  at 23:59", "2026-03-31T23:59:00+02:00"),
        ("2026-04-01T08:00:00+02:00", "2026-04-01T08:00:00+02:00"),
        ("2026-04-01T06:00:00Z", "2026-04-01T08:00:00+02:00"),
        ("2026-04-01T08:00:00", "2026-04-01T08:00:00+02:00"),  # no offset: read in the zone
        ("2026-04-01 08:00", "2026-04-01T08:00:00+02:00"),
    ],
)
def test_at(text: str, expected: str) -> None:
    assert _at(text) == expected


def test_timestamp_keeps_its_written_offset() -> None:
    s = resolve_phrase("2026-04-01T06:00:00Z", zone_name=PRAGUE, now_ms=NOW)
    assert s == AtSchedule(
        at="2026-04-01T06:00:00Z", at_unix_ms=parse_rfc3339("2026-04-01T06:00:00Z")
    )
    s = resolve_phrase("2026-04-01T08:00:00", zone_name=PRAGUE, now_ms=NOW)
    assert isinstance(s, AtSchedule) and s.at == "2026-04-01T08:00:00+02:00"


def test_tomorrow_in_a_dst_gap_is_the_first_instant_after_it() -> None:
    now = parse_rfc3339("2026-03-28T12:00:00+01:00")
    assert _at("tomorrow at 2:30", now=now) == "2026-03-29T03:00:00+02:00"
    assert _at("tomorrow at 2:30am", now=now) == "2026-03-29T03:00:00+02:00"
    ny = parse_rfc3339("2026-03-07T20:00:00-05:00")
    assert _at("tomorrow at 2:15", "America/New_York", ny) == "2026-03-08T03:00:00-04:00"


def test_tomorrow_on_a_repeated_hour_is_the_first_occurrence() -> None:
    now = parse_rfc3339("2026-10-31T12:00:00-04:00")
    assert _at("tomorrow at 1:30", "America/New_York", now) == "2026-11-01T01:30:00-04:00"


def test_tomorrow_is_the_zones_tomorrow() -> None:
    # 23:30 in Prague is already the next day in Tokyo.
    now = parse_rfc3339("2026-03-30T23:30:00+02:00")
    assert _at("tomorrow at 7", now=now) == "2026-03-31T07:00:00+02:00"
    assert _at("tomorrow at 7", "Asia/Tokyo", now) == "2026-04-01T07:00:00+09:00"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("whenever", 'unrecognised schedule "whenever" (try "every 5 minutes"'),
        ("", "empty schedule"),
        ("every 0 minutes", 'the amount in "every 0 minutes" must be at least 1'),
        ("every 5 fortnights", 'cannot read a duration in "every 5 fortnights"'),
        ("in five minutes", 'cannot read a duration in "in five minutes"'),
        ("every funday at 9", '"funday" is not a day'),
        ("every day at 25:00", "hour 25 is out of range 0-23"),
        ("every day at 9:75", "minute 75 is out of range 0-59"),
        ("every day at 13pm", "hour 13 is not valid with pm"),
        ("tomorrow at noonish", "cannot read a time of day"),
        ("0 25 * * *", 'invalid cron expression "0 25 * * *": hour 25 is out of range 0-23'),
        ("2026-13-01T00:00:00Z", "invalid RFC 3339 timestamp"),
    ],
)
def test_errors(text: str, message: str) -> None:
    with pytest.raises(PhraseError) as info:
        resolve_phrase(text, zone_name=PRAGUE, now_ms=NOW)
    assert message in str(info.value)


def test_unknown_zone() -> None:
    with pytest.raises(PhraseError, match="unknown time zone"):
        resolve_phrase("hourly", zone_name="Mars/Olympus", now_ms=NOW)


def test_hint_lists_the_accepted_forms() -> None:
    with pytest.raises(PhraseError) as info:
        resolve_phrase("at some point", zone_name=PRAGUE, now_ms=NOW)
    for form in ("every 5 minutes", "tomorrow at 7", "RFC 3339", "cron expression"):
        assert form in str(info.value)
