"""Natural-language schedule phrases (SPEC §2.1) resolved to one of the three schedule types.

Accepted wherever a schedule is typed on the CLI. The resolution is explicit and previewable:
``every N unit`` → ``every`` anchored at now; day/weekday/time phrases → ``cron`` in the
given zone; ``in …``, ``tomorrow at …`` and timestamps → ``at``.
"""

from __future__ import annotations

import re

from routines.cron import CronError, looks_like_cron, parse_cron
from routines.model import AtSchedule, CronSchedule, EverySchedule, Schedule
from routines.timefmt import TimeFormatError, format_rfc3339, get_zone, parse_rfc3339
from routines.walltime import civil_from_days, days_from_civil, transitions_for

__all__ = ["PhraseError", "resolve_phrase"]

HINT = (
    'try "every 5 minutes", "every 2h", "every day at 9:30", "every weekday at 9", '
    '"every monday at 8am", "daily at 18:00", "hourly", "in 20 minutes", "tomorrow at 7", '
    'an RFC 3339 timestamp like "2026-03-30T09:00:00+02:00", or a cron expression like '
    '"0 9 * * 1-5"'
)


class PhraseError(ValueError):
    """A schedule phrase that is none of the accepted forms."""


_UNIT_MS: dict[str, int] = {}
for _names, _ms in (
    (("s", "sec", "secs", "second", "seconds"), 1_000),
    (("m", "min", "mins", "minute", "minutes"), 60_000),
    (("h", "hr", "hrs", "hour", "hours"), 3_600_000),
    (("d", "day", "days"), 86_400_000),
):
    for _name in _names:
        _UNIT_MS[_name] = _ms

_DAYS = {
    "sunday": 0,
    "monday": 1,
    "tuesday": 2,
    "wednesday": 3,
    "thursday": 4,
    "friday": 5,
    "saturday": 6,
}
for _day, _num in list(_DAYS.items()):
    _DAYS[_day[:3]] = _num
    _DAYS[_day + "s"] = _num  # "every mondays" reads oddly but is harmless

_AMOUNT = re.compile(r"(\d+)\s*([a-z]+)")
_TIME = re.compile(r"(\d{1,2})(?::(\d{2}))?\s*(am|pm)?")
# Bare unit phrases that mean a cron schedule at the top of the unit.
_FIXED = {
    "hourly": "0 * * * *",
    "every hour": "0 * * * *",
    "every minute": "* * * * *",
    "daily": "0 0 * * *",
    "every day": "0 0 * * *",
}


def _amount_ms(text: str, phrase: str) -> int:
    m = _AMOUNT.fullmatch(text)
    if m is None or m.group(2) not in _UNIT_MS:
        raise PhraseError(f'cannot read a duration in "{phrase}" ({HINT})')
    n = int(m.group(1))
    if n <= 0:
        raise PhraseError(f'the amount in "{phrase}" must be at least 1')
    return n * _UNIT_MS[m.group(2)]


def _time_of_day(text: str, phrase: str) -> tuple[int, int]:
    """'9', '9:30', '8am', '8:30 pm', '18:00' → (hour, minute)."""
    m = _TIME.fullmatch(text)
    if m is None:
        raise PhraseError(f'cannot read a time of day in "{phrase}" (use e.g. 9, 9:30, 8am, 18:00)')
    hour, minute, half = int(m.group(1)), int(m.group(2) or 0), m.group(3)
    if half is not None:
        if not 1 <= hour <= 12:
            raise PhraseError(f'hour {hour} is not valid with {half} in "{phrase}" (use 1-12)')
        hour = hour % 12 + (12 if half == "pm" else 0)
    elif hour > 23:
        raise PhraseError(f'hour {hour} is out of range 0-23 in "{phrase}"')
    if minute > 59:
        raise PhraseError(f'minute {minute} is out of range 0-59 in "{phrase}"')
    return hour, minute


def resolve_phrase(text: str, *, zone_name: str, now_ms: int) -> Schedule:
    """Resolve a CLI schedule phrase in ``zone_name``, relative to ``now_ms``.

    Case-insensitive and tolerant of extra spaces. Raises PhraseError (with a hint listing
    the accepted forms) for anything else, or the cron message for a malformed expression.
    """
    try:
        zone = get_zone(zone_name)
    except TimeFormatError as exc:
        raise PhraseError(str(exc)) from exc
    raw = " ".join(text.split())
    phrase = raw.lower()
    if not phrase:
        raise PhraseError(f"empty schedule ({HINT})")

    if phrase in _FIXED:
        return CronSchedule(_FIXED[phrase], timezone=zone_name)

    if phrase.startswith("every ") or phrase.startswith("daily at "):
        cron = _cron_phrase(phrase)
        if cron is not None:
            return CronSchedule(cron, timezone=zone_name)
        interval = _amount_ms(phrase.removeprefix("every "), raw)
        return EverySchedule(
            interval_ms=interval,
            anchor=format_rfc3339(now_ms, zone),
            anchor_unix_ms=now_ms,
        )

    if phrase.startswith("in "):
        at = now_ms + _amount_ms(phrase.removeprefix("in "), raw)
        return AtSchedule(at=format_rfc3339(at, zone), at_unix_ms=at)

    if phrase.startswith("tomorrow at "):
        hour, minute = _time_of_day(phrase.removeprefix("tomorrow at "), raw)
        table = transitions_for(zone)
        today = table.wall_of(now_ms // 1000) // 86_400
        y, mo, d = civil_from_days(today + 1)
        wall = days_from_civil(y, mo, d) * 86_400 + hour * 3600 + minute * 60
        # Same rule as fixed-time cron: a wall time in a DST gap means the gap's end.
        at = table.first_instant(wall) * 1000
        return AtSchedule(at=format_rfc3339(at, zone), at_unix_ms=at)

    if re.match(r"\d{4}-\d{2}-\d{2}", phrase):
        try:
            at = parse_rfc3339(raw, zone)
        except TimeFormatError as exc:
            raise PhraseError(f"{exc} ({HINT})") from exc
        has_offset = re.search(r"(z|[+-]\d{2}:?\d{2})$", phrase) is not None
        return AtSchedule(at=raw if has_offset else format_rfc3339(at, zone), at_unix_ms=at)

    if looks_like_cron(raw):
        try:
            parse_cron(raw)
        except CronError as exc:
            raise PhraseError(str(exc)) from exc
        return CronSchedule(raw, timezone=zone_name)

    raise PhraseError(f'unrecognised schedule "{raw}" ({HINT})')


def _cron_phrase(phrase: str) -> str | None:
    """'every day at 9:30' → '30 9 * * *'; None when the phrase is not a day phrase."""
    m = re.fullmatch(r"(?:every (\w+)|daily) at (.+)", phrase)
    if m is None:
        return None
    day, when = m.group(1), m.group(2)
    if day is None or day == "day":
        dow = "*"
    elif day == "weekday":
        dow = "1-5"
    elif day in _DAYS:
        dow = str(_DAYS[day])
    else:
        raise PhraseError(f'"{day}" is not a day in "{phrase}" ({HINT})')
    hour, minute = _time_of_day(when, phrase)
    return f"{minute} {hour} * * {dow}"
