"""Quiet-hours windows (SPEC §2.3) as pure functions of (window, instant, default zone).

A window runs from ``start`` (inclusive) to ``end`` (exclusive) local time in its zone
(``qh.timezone``, else the caller's default); ``start > end`` wraps midnight; ``start == end``
means always quiet. Boundaries are resolved to instants like fixed-time cron (docs/dst.md):
a boundary inside a spring-forward gap takes effect at the first instant after the gap, and a
boundary on a repeated wall time takes effect at its first occurrence.
"""

from __future__ import annotations

from routines.model import QuietHours
from routines.timefmt import get_zone
from routines.walltime import ZoneTransitions, transitions_for

__all__ = ["is_quiet", "next_quiet_start", "quiet_end_after", "windows_around"]


def _table(qh: QuietHours, default_zone: str) -> ZoneTransitions:
    return transitions_for(get_zone(qh.timezone or default_zone))


def _window(qh: QuietHours, table: ZoneTransitions, day: int) -> tuple[int, int]:
    """[start, end) in Unix ms of the window that starts on local day number ``day``."""
    start_min, end_min = qh.start_minute, qh.end_minute
    end_day = day + 1 if end_min < start_min else day
    start = table.first_instant(day * 86_400 + start_min * 60) * 1000
    end = table.first_instant(end_day * 86_400 + end_min * 60) * 1000
    return start, end


def windows_around(qh: QuietHours, at_ms: int, default_zone: str) -> list[tuple[int, int]]:
    """The non-empty windows starting on the local days around ``at_ms`` (yesterday to the
    day after tomorrow), oldest first; a window can be empty when both of its boundaries
    fall in the same DST gap."""
    table = _table(qh, default_zone)
    today = table.wall_of(at_ms // 1000) // 86_400
    out = []
    for day in range(today - 1, today + 3):
        start, end = _window(qh, table, day)
        if start < end:
            out.append((start, end))
    return out


def is_quiet(qh: QuietHours, at_ms: int, default_zone: str) -> bool:
    """Whether nothing may fire at ``at_ms``."""
    if qh.start_minute == qh.end_minute:
        return True
    return any(start <= at_ms < end for start, end in windows_around(qh, at_ms, default_zone))


def quiet_end_after(qh: QuietHours, at_ms: int, default_zone: str) -> int | None:
    """The first instant at or after ``at_ms`` outside quiet hours: the end of the window
    containing ``at_ms`` (``at_ms`` itself when it is not quiet); None when always quiet."""
    if qh.start_minute == qh.end_minute:
        return None
    t = at_ms
    for _ in range(4):  # windows never overlap; the loop only guards against abutting ones
        for start, end in windows_around(qh, t, default_zone):
            if start <= t < end:
                t = end
                break
        else:
            return t
    return t


def next_quiet_start(qh: QuietHours, after_ms: int, default_zone: str) -> int | None:
    """The instant the next window starts, strictly after ``after_ms``; None when always
    quiet (a window that never starts or ends)."""
    if qh.start_minute == qh.end_minute:
        return None
    for start, _end in windows_around(qh, after_ms, default_zone):
        if start > after_ms:
            return start
    return None  # pragma: no cover - a non-empty window starts every day or two
