"""Wall-clock time in IANA zones as integer seconds, with the DST rules written down once.

The schedule engine, quiet hours and phrase resolution all need the same two questions
answered fast: "what is the UTC offset at instant t?" and "which real instants carry wall time
w?". ``datetime`` answers them one object at a time (slow in hot loops, and it hides the
transition instants); this module answers them with integer arithmetic over a per-zone table
of offset transitions, discovered lazily by probing the zone (``zoneinfo`` exposes no
transition list) and cached for the life of the process.

A *wall* time here is the local calendar time expressed as seconds since 1970-01-01T00:00
local (i.e. ``instant + utc_offset``), so calendar arithmetic is plain integer arithmetic.

DST decisions (docs/dst.md): a wall time inside a spring-forward gap resolves to the first
instant after the gap; a wall time that occurs twice resolves to its first occurrence.
"""

from __future__ import annotations

from bisect import bisect_right
from datetime import datetime, timezone, tzinfo
from threading import Lock
from typing import NamedTuple

__all__ = [
    "MAX_SUPPORTED_S",
    "MIN_SUPPORTED_S",
    "ZoneTransitions",
    "civil_from_days",
    "days_from_civil",
    "transitions_for",
]

# Probe step when looking for offset changes. Two transitions closer than this would be
# missed; the tz database has none since 1970 (the closest are months apart), and 6 h keeps
# the one-off cost of scanning a zone-year around 1.5k probes.
_PROBE_STEP_S = 6 * 3600
# The table grows in chunks of 2^25 s (~388 days) around the instants actually asked about.
_CHUNK_S = 1 << 25
# datetime cannot represent years outside 1..9999; keep clear of both ends.
MIN_SUPPORTED_S = -62_000_000_000  # ~ year 5
MAX_SUPPORTED_S = 253_000_000_000  # ~ year 9987
_MARGIN_S = 2 * 86_400  # offsets are within ±26 h, so this covers every wall → instant lookup


def days_from_civil(y: int, m: int, d: int) -> int:
    """Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm)."""
    y -= m <= 2
    era = (y if y >= 0 else y - 399) // 400
    yoe = y - era * 400
    doy = (153 * (m + (-3 if m > 2 else 9)) + 2) // 5 + d - 1
    doe = yoe * 365 + yoe // 4 - yoe // 100 + doy
    return era * 146_097 + doe - 719_468


def civil_from_days(z: int) -> tuple[int, int, int]:
    """(year, month, day) of a day number counted from 1970-01-01 (inverse of the above)."""
    z += 719_468
    era = (z if z >= 0 else z - 146_096) // 146_097
    doe = z - era * 146_097
    yoe = (doe - doe // 1460 + doe // 36_524 - doe // 146_096) // 365
    doy = doe - (365 * yoe + yoe // 4 - yoe // 100)
    mp = (5 * doy + 2) // 153
    d = doy - (153 * mp + 2) // 5 + 1
    m = mp + (3 if mp < 10 else -9)
    return yoe + era * 400 + (m <= 2), m, d


class _Table(NamedTuple):
    """An immutable snapshot of a zone's known transitions (seconds), replaced as a whole
    when it grows so that readers never need the lock.

    ``trans[i]`` is the first instant with offset ``after[i]``; the instant before it had
    ``before[i]``. ``wall_lo[i]``/``wall_hi[i]`` bound the wall times the transition makes
    special: missing (gap, ``after > before``) or repeated (overlap, ``after < before``).
    """

    lo_s: int  # covered instants: [lo_s, hi_s)
    hi_s: int
    init_off: int  # offset in force at lo_s, before trans[0]
    trans: tuple[int, ...]
    before: tuple[int, ...]
    after: tuple[int, ...]
    wall_lo: tuple[int, ...]
    wall_hi: tuple[int, ...]


_EMPTY = _Table(0, 0, 0, (), (), (), (), ())


class ZoneTransitions:
    """Wall time ↔ instant for one zone, from a lazily grown table of offset transitions."""

    def __init__(self, zone: tzinfo) -> None:
        self.zone = zone
        self._lock = Lock()
        self.fixed: int | None = None
        if isinstance(zone, timezone):
            off = zone.utcoffset(None)
            self.fixed = int(off.total_seconds())
        self._table = _EMPTY

    # --- probing -------------------------------------------------------------------------

    def _probe(self, t: int) -> int:
        off = datetime.fromtimestamp(t, self.zone).utcoffset()
        return int(off.total_seconds()) if off is not None else 0

    def _scan(self, start: int, end: int) -> list[tuple[int, int, int]]:
        """Transitions T with start <= T < end, as (T, before, after)."""
        out: list[tuple[int, int, int]] = []
        prev_t = start - 1
        prev = self._probe(prev_t)
        t = start
        while True:
            cur = self._probe(t)
            if cur != prev:
                lo, hi = prev_t, t  # offset(lo) == prev, offset(hi) == cur
                while hi - lo > 1:
                    mid = (lo + hi) // 2
                    if self._probe(mid) == prev:
                        lo = mid
                    else:
                        hi = mid
                out.append((hi, prev, cur))
            if t >= end - 1:
                return out
            prev_t, prev = t, cur
            t = min(t + _PROBE_STEP_S, end - 1)

    def _covering(self, t: int) -> _Table:
        """A snapshot that covers instants t ± 2 days, growing the table when needed."""
        table = self._table
        if table.lo_s + _MARGIN_S <= t < table.hi_s - _MARGIN_S:
            return table
        lo_k = max(t - _MARGIN_S, MIN_SUPPORTED_S) // _CHUNK_S
        hi_k = min(t + _MARGIN_S, MAX_SUPPORTED_S) // _CHUNK_S + 1
        with self._lock:
            table = self._table
            if table.hi_s == table.lo_s:
                lo_s = hi_s = lo_k * _CHUNK_S
                found: list[tuple[int, int, int]] = []
            else:
                lo_s, hi_s = table.lo_s, table.hi_s
                found = list(zip(table.trans, table.before, table.after, strict=True))
            if lo_s > lo_k * _CHUNK_S:
                found = self._scan(lo_k * _CHUNK_S, lo_s) + found
                lo_s = lo_k * _CHUNK_S
            if hi_s < hi_k * _CHUNK_S:
                found = found + self._scan(hi_s, hi_k * _CHUNK_S)
                hi_s = hi_k * _CHUNK_S
            if (lo_s, hi_s) != (table.lo_s, table.hi_s):
                table = _Table(
                    lo_s=lo_s,
                    hi_s=hi_s,
                    init_off=self._probe(lo_s),
                    trans=tuple(f[0] for f in found),
                    before=tuple(f[1] for f in found),
                    after=tuple(f[2] for f in found),
                    wall_lo=tuple(f[0] + min(f[1], f[2]) for f in found),
                    wall_hi=tuple(f[0] + max(f[1], f[2]) for f in found),
                )
                self._table = table
            return table

    # --- queries -------------------------------------------------------------------------

    def offset_at(self, t: int) -> int:
        """UTC offset in seconds at instant t (Unix seconds)."""
        if self.fixed is not None:
            return self.fixed
        table = self._covering(t)
        i = bisect_right(table.trans, t) - 1
        return table.after[i] if i >= 0 else table.init_off

    def segment(self, t: int) -> tuple[int, int]:
        """(offset at t, first instant after t where the offset may change).

        The second value is the next transition, or the end of the scanned table (a harmless
        boundary: the offset simply continues past it).
        """
        if self.fixed is not None:
            return self.fixed, MAX_SUPPORTED_S
        table = self._covering(t)
        trans = table.trans
        i = bisect_right(trans, t) - 1
        off = table.after[i] if i >= 0 else table.init_off
        end = trans[i + 1] if i + 1 < len(trans) else table.hi_s - _MARGIN_S
        return off, max(end, t + 1)

    def transitions_between(self, a: int, b: int) -> list[tuple[int, int, int]]:
        """Transitions T with a < T <= b, as (T, offset before, offset after)."""
        if self.fixed is not None or b <= a:
            return []
        out: list[tuple[int, int, int]] = []
        t = a
        while t < b:
            table = self._covering(t + 1)  # covers (t, stop]
            stop = min(b, table.hi_s - _MARGIN_S - 1)
            for i in range(bisect_right(table.trans, t), bisect_right(table.trans, stop)):
                out.append((table.trans[i], table.before[i], table.after[i]))
            t = stop
        return out

    def wall_of(self, t: int) -> int:
        """Local wall time (seconds) at instant t."""
        return t + self.offset_at(t)

    def _locate_wall(self, w: int) -> tuple[_Table, int]:
        """The table, and the index of the last transition whose special wall range starts
        at or before w (-1 when none)."""
        table = self._covering(w)
        return table, bisect_right(table.wall_lo, w) - 1

    def instants(self, w: int) -> tuple[int, ...]:
        """Every real instant whose wall time is w: none (gap), one, or two (overlap)."""
        if self.fixed is not None:
            return (w - self.fixed,)
        table, i = self._locate_wall(w)
        if i < 0:
            return (w - table.init_off,)
        b, a = table.before[i], table.after[i]
        if w < table.wall_hi[i]:
            if a > b:
                return ()
            return (w - b, w - a)
        return (w - a,)

    def first_instant(self, w: int) -> int:
        """The instant a fixed-time wall time w takes effect: its first occurrence, or the
        first instant after the gap when w does not exist."""
        if self.fixed is not None:
            return w - self.fixed
        table, i = self._locate_wall(w)
        if i < 0:
            return w - table.init_off
        b, a = table.before[i], table.after[i]
        if w < table.wall_hi[i]:
            return table.trans[i] if a > b else w - b
        return w - a

    def first_wall_after(self, t: int) -> int:
        """Smallest wall time whose first_instant() is >= instant t.

        Usually just wall_of(t); but when t is exactly a gap's end the gap's wall times also
        resolve to t, and when t is inside the second pass of a repeated hour every repeated
        wall time already had its first occurrence, so the answer is the hour's end.
        """
        if self.fixed is not None:
            return t + self.fixed
        table = self._covering(t)
        i = bisect_right(table.trans, t) - 1
        if i < 0:
            return t + table.init_off
        b, a = table.before[i], table.after[i]
        tr = table.trans[i]
        if a > b and tr == t:
            return tr + b
        if a < b and t < tr + (b - a):
            return tr + b
        return t + a


_tables: dict[tzinfo, ZoneTransitions] = {}
_tables_lock = Lock()


def transitions_for(zone: tzinfo) -> ZoneTransitions:
    """The shared transition table of a zone (one per zone object per process)."""
    table = _tables.get(zone)
    if table is None:
        with _tables_lock:
            table = _tables.get(zone)
            if table is None:
                table = ZoneTransitions(zone)
                _tables[zone] = table
    return table
