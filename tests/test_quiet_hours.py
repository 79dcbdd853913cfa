"""Quiet hours as a decision table: (window, instant) → quiet?, when it ends, next start."""

from __future__ import annotations

import pytest

from routines.model import QuietHours
from routines.quiet_hours import is_quiet, next_quiet_start, quiet_end_after
from routines.timefmt import parse_rfc3339

NIGHT = QuietHours(start="22:00", end="07:00")  # wraps midnight
LUNCH = QuietHours(start="12:00", end="13:00")
ALWAYS = QuietHours(start="09:00", end="09:00")
PRAGUE = "Europe/Prague"


def ms(text: str) -> int:
    return parse_rfc3339(text)


@pytest.mark.parametrize(
    ("qh", "at", "quiet"),
    [
        (LUNCH, "2026-03-30T11:59:59.999+02:00", False),
        (LUNCH, "2026-03-30T12:00:00+02:00", True),  # start inclusive
        (LUNCH, "2026-03-30T12:59:59.999+02:00", True),
        (LUNCH, "2026-03-30T13:00:00+02:00", False),  # end exclusive
        (NIGHT, "2026-03-30T21:59:59+02:00", False),
        (NIGHT, "2026-03-30T22:00:00+02:00", True),
        (NIGHT, "2026-03-30T23:59:59+02:00", True),
        (NIGHT, "2026-03-31T00:00:00+02:00", True),  # wraps midnight
        (NIGHT, "2026-03-31T06:59:59+02:00", True),
        (NIGHT, "2026-03-31T07:00:00+02:00", False),
        (NIGHT, "2026-03-31T12:00:00+02:00", False),
        (ALWAYS, "2026-03-31T09:00:00+02:00", True),  # start == end: always quiet
        (ALWAYS, "2026-03-31T03:00:00+02:00", True),
    ],
)
def test_is_quiet(qh: QuietHours, at: str, quiet: bool) -> None:
    assert is_quiet(qh, ms(at), PRAGUE) is quiet


@pytest.mark.parametrize(
    ("qh", "at", "end"),
    [
        (LUNCH, "2026-03-30T12:00:00+02:00", "2026-03-30T13:00:00+02:00"),
        (LUNCH, "2026-03-30T12:30:00+02:00", "2026-03-30T13:00:00+02:00"),
        (LUNCH, "2026-03-30T14:00:00+02:00", "2026-03-30T14:00:00+02:00"),  # not quiet: now
        (NIGHT, "2026-03-30T23:00:00+02:00", "2026-03-31T07:00:00+02:00"),
        (NIGHT, "2026-03-31T01:00:00+02:00", "2026-03-31T07:00:00+02:00"),
    ],
)
def test_quiet_end_after(qh: QuietHours, at: str, end: str) -> None:
    assert quiet_end_after(qh, ms(at), PRAGUE) == ms(end)


def test_always_quiet_has_no_end_and_no_start() -> None:
    assert quiet_end_after(ALWAYS, ms("2026-03-30T12:00:00Z"), PRAGUE) is None
    assert next_quiet_start(ALWAYS, ms("2026-03-30T12:00:00Z"), PRAGUE) is None


@pytest.mark.parametrize(
    ("qh", "after", "start"),
    [
        (LUNCH, "2026-03-30T11:00:00+02:00", "2026-03-30T12:00:00+02:00"),
        (LUNCH, "2026-03-30T12:00:00+02:00", "2026-03-31T12:00:00+02:00"),  # strictly after
        (LUNCH, "2026-03-30T12:30:00+02:00", "2026-03-31T12:00:00+02:00"),
        (NIGHT, "2026-03-30T23:00:00+02:00", "2026-03-31T22:00:00+02:00"),
        (NIGHT, "2026-03-31T08:00:00+02:00", "2026-03-31T22:00:00+02:00"),
    ],
)
def test_next_quiet_start(qh: QuietHours, after: str, start: str) -> None:
    assert next_quiet_start(qh, ms(after), PRAGUE) == ms(start)


# DST days in Prague: spring 2026-03-29 02:00→03:00, fall 2026-10-25 03:00→02:00.
GAP_END = QuietHours(start="22:00", end="02:30")  # ends inside the spring gap
GAP_START = QuietHours(start="02:30", end="05:00")  # starts inside the spring gap
REPEATED_END = QuietHours(start="22:00", end="02:30")  # 02:30 happens twice in autumn
REPEATED_START = QuietHours(start="02:30", end="05:00")


@pytest.mark.parametrize(
    ("qh", "at", "quiet"),
    [
        # a boundary inside the gap takes effect at the first instant after the gap
        (GAP_END, "2026-03-29T01:59:59+01:00", True),
        (GAP_END, "2026-03-29T03:00:00+02:00", False),
        (GAP_START, "2026-03-29T01:59:59+01:00", False),
        (GAP_START, "2026-03-29T03:00:00+02:00", True),
        (GAP_START, "2026-03-29T04:59:59+02:00", True),
        (GAP_START, "2026-03-29T05:00:00+02:00", False),
        # a boundary on a repeated wall time takes effect at its first occurrence
        (REPEATED_END, "2026-10-25T02:29:59+02:00", True),
        (REPEATED_END, "2026-10-25T02:30:00+02:00", False),
        (REPEATED_END, "2026-10-25T02:10:00+01:00", False),  # second pass of 02:xx: over
        (REPEATED_START, "2026-10-25T02:29:59+02:00", False),
        (REPEATED_START, "2026-10-25T02:30:00+02:00", True),
        (REPEATED_START, "2026-10-25T02:10:00+01:00", True),  # still inside (until 05:00)
        (REPEATED_START, "2026-10-25T04:59:59+01:00", True),
        (REPEATED_START, "2026-10-25T05:00:00+01:00", False),
    ],
)
def test_dst_days(qh: QuietHours, at: str, quiet: bool) -> None:
    assert is_quiet(qh, ms(at), PRAGUE) is quiet


def test_dst_boundaries_as_instants() -> None:
    assert quiet_end_after(GAP_END, ms("2026-03-29T01:00:00+01:00"), PRAGUE) == ms(
        "2026-03-29T03:00:00+02:00"
    )
    assert next_quiet_start(GAP_START, ms("2026-03-29T00:00:00+01:00"), PRAGUE) == ms(
        "2026-03-29T03:00:00+02:00"
    )
    assert next_quiet_start(REPEATED_START, ms("2026-10-25T00:00:00+02:00"), PRAGUE) == ms(
        "2026-10-25T02:30:00+02:00"
    )
    # A window wholly inside the gap is empty that day and does not start.
    in_gap = QuietHours(start="02:10", end="02:40")
    assert not is_quiet(in_gap, ms("2026-03-29T03:00:00+02:00"), PRAGUE)
    assert next_quiet_start(in_gap, ms("2026-03-29T00:00:00+01:00"), PRAGUE) == ms(
        "2026-03-30T02:10:00+02:00"
    )


def test_timezone_override() -> None:
    tokyo = QuietHours(start="22:00", end="07:00", timezone="Asia/Tokyo")
    at = ms("2026-03-30T16:00:00+02:00")  # 23:00 in Tokyo, 16:00 in Prague
    assert is_quiet(tokyo, at, PRAGUE)
    assert not is_quiet(NIGHT, at, PRAGUE)
    assert quiet_end_after(tokyo, at, PRAGUE) == ms("2026-03-31T07:00:00+09:00")
    # The default zone applies when the window has none; UTC is just another zone.
    assert is_quiet(NIGHT, ms("2026-03-30T23:00:00Z"), "UTC")
    assert not is_quiet(NIGHT, ms("2026-03-30T23:00:00Z"), "America/New_York")
