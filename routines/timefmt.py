"""The one place where instants become text and text becomes instants.

Inside Palyra an instant is an ``int`` of Unix milliseconds (cheap to compare, store and
hash); RFC 3339 strings exist only at the edges (JSON, CLI, journal output).

``zoneinfo`` (with sysconfig and the tz path search, ~3 ms) is imported by ``get_zone`` on
first use: most CLI commands import this module for ``now_ms`` and UTC formatting only.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from functools import lru_cache

__all__ = [
    "UTC",
    "TimeFormatError",
    "format_rfc3339",
    "from_unix_ms",
    "get_zone",
    "now_ms",
    "parse_rfc3339",
    "to_unix_ms",
]


class TimeFormatError(ValueError):
    """A timestamp or zone name that cannot be understood."""


def now_ms() -> int:
    """The wall clock in Unix milliseconds (the only clock the code reads directly)."""
    return time.time_ns() // 1_000_000


def seconds_until(t_ms: int) -> float:
    """Seconds from now to the instant ``t_ms`` (negative when past), at the clock's full
    resolution: ``t_ms - now_ms()`` would truncate "now" and wake a timed loop up to 1 ms
    late, on every tick."""
    return (t_ms * 1_000_000 - time.time_ns()) / 1e9


@lru_cache(maxsize=1024)
def get_zone(name: str) -> tzinfo:
    """Resolve an IANA zone name (``UTC`` included); raises TimeFormatError if unknown or
    empty (an empty name is a mistake, never a way of saying UTC)."""
    if not name.strip():
        raise TimeFormatError("the time zone name is empty")
    if name in ("UTC", "Etc/UTC", "Z"):
        return UTC
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise TimeFormatError(f"unknown time zone {name!r}") from exc


def to_unix_ms(dt: datetime) -> int:
    """An aware datetime as Unix milliseconds (naive datetimes are refused)."""
    if dt.tzinfo is None:
        raise TimeFormatError("naive datetime has no offset")
    delta = dt - datetime(1970, 1, 1, tzinfo=UTC)
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def from_unix_ms(ms: int, zone: tzinfo = UTC) -> datetime:
    """Unix milliseconds as an aware datetime in ``zone``."""
    return (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)).astimezone(zone)


def format_rfc3339(ms: int, zone: tzinfo = UTC, *, always_ms: bool = False) -> str:
    """RFC 3339 with an explicit offset; milliseconds only when non-zero unless asked."""
    dt = from_unix_ms(ms, zone)
    frac = ms % 1000
    base = dt.strftime("%Y-%m-%dT%H:%M:%S")
    if frac or always_ms:
        base += f".{frac:03d}"
    off = dt.utcoffset() or timedelta(0)
    total = int(off.total_seconds())
    sign = "+" if total >= 0 else "-"
    total = abs(total)
    return f"{base}{sign}{total // 3600:02d}:{(total % 3600) // 60:02d}"


def parse_rfc3339(text: str, default_zone: tzinfo | None = None) -> int:
    """Parse an RFC 3339 / ISO 8601 timestamp to Unix ms.

    Without an offset the text is read in ``default_zone`` (an error when none is given),
    so callers decide explicitly how local times are interpreted.
    """
    s = text.strip()
    if not s:
        raise TimeFormatError("empty timestamp")
    if s[-1] in "zZ":
        s = s[:-1] + "+00:00"
    try:
        dt = datetime.fromisoformat(s)
    except ValueError as exc:
        raise TimeFormatError(f"invalid RFC 3339 timestamp {text!r}") from exc
    if dt.tzinfo is None:
        if default_zone is None:
            raise TimeFormatError(f"timestamp {text!r} has no UTC offset (add e.g. +00:00 or Z)")
        dt = dt.replace(tzinfo=default_zone)
    return to_unix_ms(dt)


def fixed_zone(offset_minutes: int) -> tzinfo:
    """A fixed-offset zone, for echoing timestamps in the offset they were written with."""
    return timezone(timedelta(minutes=offset_minutes))
