"""Wall time ↔ instant tables: calendar arithmetic and discovered DST transitions."""

from __future__ import annotations

from datetime import date, timedelta

import pytest

from routines.timefmt import get_zone, parse_rfc3339
from routines.walltime import civil_from_days, days_from_civil, transitions_for


def test_civil_round_trip() -> None:
    epoch = date(1970, 1, 1)
    for day in [*range(-700_000, 2_900_000, 997), 0, -1, 59, 60, 11_016, 2_932_896]:
        d = epoch + timedelta(days=day)
        assert civil_from_days(day) == (d.year, d.month, d.day)
        assert days_from_civil(d.year, d.month, d.day) == day


def s(text: str) -> int:
    return parse_rfc3339(text) // 1000


@pytest.mark.parametrize(
    ("zone", "transitions"),
    [
        ("Europe/Prague", [("2026-03-29T01:00:00Z", 3600, 7200),
                           ("2026-10-25T01:00:00Z", 7200, 3600)]),
        ("America/New_York", [("2026-03-08T07:00:00Z", -18000, -14400),
                              ("2026-11-01T06:00:00Z", -14400, -18000)]),
        ("Australia/Lord_Howe", [("2026-04-04T15:00:00Z", 39600, 37800),
                                 ("2026-10-03T15:30:00Z", 37800, 39600)]),
        ("Asia/Tokyo", []),
    ],
)  # fmt: skip
def test_transitions_found_to_the_second(
    zone: str, transitions: list[tuple[str, int, int]]
) -> None:
    table = transitions_for(get_zone(zone))
    found = table.transitions_between(s("2026-01-01T00:00:00Z"), s("2027-01-01T00:00:00Z"))
    assert found == [(s(t), before, after) for t, before, after in transitions]


def test_wall_to_instants() -> None:
    ny = transitions_for(get_zone("America/New_York"))
    wall = days_from_civil(2026, 3, 8) * 86_400 + 2 * 3600 + 30 * 60  # 02:30, in the gap
    assert ny.instants(wall) == ()
    assert ny.first_instant(wall) == s("2026-03-08T03:00:00-04:00")
    wall = days_from_civil(2026, 11, 1) * 86_400 + 1 * 3600 + 30 * 60  # 01:30, twice
    assert ny.instants(wall) == (s("2026-11-01T01:30:00-04:00"), s("2026-11-01T01:30:00-05:00"))
    assert ny.first_instant(wall) == s("2026-11-01T01:30:00-04:00")
    wall = days_from_civil(2026, 7, 1) * 86_400 + 12 * 3600
    assert ny.instants(wall) == (s("2026-07-01T12:00:00-04:00"),)
    assert ny.wall_of(s("2026-07-01T12:00:00-04:00")) == wall
    utc = transitions_for(get_zone("UTC"))
    assert utc.instants(wall) == (wall,)
    assert utc.first_wall_after(wall) == wall
