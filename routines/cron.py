"""Cron expressions: parsing with precise error messages, and a fast next-fire engine.

Built on cronsim (docs/dst.md says why): cronsim parses each field into value sets and
decides which calendar days match (Vixie OR/AND, ``L``, ``LW``, ``5L``, ``MON#1``) and
explains expressions in English. Palyra adds what cronsim lacks — macros, ``?``, ``nW``,
field-by-field error messages, and Debian DST semantics for 6-field expressions too — and
replaces cronsim's datetime-stepping iterator with integer wall-clock arithmetic over cached
per-month day lists and per-zone transition tables (``routines.walltime``), which is what
makes tens of thousands of next-fire computations per second possible. The rest of Palyra
imports this module, never cronsim.

DST (SPEC §2.1): an expression whose seconds, minute or hour field begins with ``*`` is a
*wildcard* schedule and fires at every real instant whose wall time matches; any other is
*fixed-time* and fires once per matching wall time — at its first occurrence, or at the first
instant after a spring-forward gap (several wall times in one gap fire once).
"""

from __future__ import annotations

import calendar
from bisect import bisect_left
from datetime import date, datetime, tzinfo
from functools import lru_cache
from typing import NoReturn

from cronsim import CronSim, CronSimError
from cronsim.explain import Expression, ordinal

from routines.cron_fields import (
    DAY_OF_MONTH,
    DAY_OF_WEEK,
    HOUR,
    MINUTE,
    MONTH,
    SECOND,
    check_days_exist,
    normalize_field,
)
from routines.walltime import (
    MAX_SUPPORTED_S,
    MIN_SUPPORTED_S,
    civil_from_days,
    days_from_civil,
    transitions_for,
)

__all__ = ["MACROS", "SEARCH_YEARS", "CronError", "CronExpr", "looks_like_cron", "parse_cron"]

# A schedule with no fire within this many years of the start is treated as never firing
# (the same horizon as cronsim and Debian's cron.c).
SEARCH_YEARS = 50

MACROS: dict[str, str] = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}


# (day-of-month, day-of-week, nW days) → {year*12+month: matching days}; see CronExpr.
_DAY_CACHES: dict[tuple[str, str, tuple[int, ...]], dict[int, tuple[int, ...]]] = {}


class CronError(ValueError):
    """An invalid cron expression; ``detail`` names the field and the problem."""

    def __init__(self, expr: str, detail: str) -> None:
        super().__init__(f'invalid cron expression "{expr}": {detail}')
        self.expr = expr
        self.detail = detail


class _Sim(CronSim):
    """cronsim's parsed field sets and day matching, plus ``nW`` (nearest weekday)."""

    w_days: tuple[int, ...] = ()

    def match_dom(self, d: date) -> bool:
        if super().match_dom(d):
            return True
        return any(nearest_weekday(d.year, d.month, n) == d.day for n in self.w_days)


def nearest_weekday(year: int, month: int, n: int) -> int | None:
    """Day of the month that ``nW`` selects: the weekday nearest the n-th without leaving the
    month (1W on a Saturday → Monday the 3rd; 31W on a Sunday → Friday the 29th); None when
    the month has no n-th day (31W in April never fires, like plain ``31``)."""
    first_dow, last = calendar.monthrange(year, month)
    if n > last:
        return None
    dow = (first_dow + n - 1) % 7  # Monday = 0
    if dow == 5:  # Saturday
        return n - 1 if n > 1 else n + 2
    if dow == 6:  # Sunday
        return n + 1 if n < last else n - 2
    return n


def _next_table(values: set[int], size: int) -> tuple[int, ...]:
    """nxt[v] = smallest allowed value >= v, or -1."""
    out = [-1] * (size + 1)
    nxt = -1
    for v in range(size - 1, -1, -1):
        if v in values:
            nxt = v
        out[v] = nxt
    return tuple(out)


def _below_table(values: set[int], size: int) -> tuple[int, ...]:
    """below[v] = how many allowed values are < v (v = 0..size)."""
    out = [0]
    for v in range(size):
        out.append(out[-1] + (v in values))
    return tuple(out)


def looks_like_cron(text: str) -> bool:
    """True when text has the shape of a cron expression (a macro, or 5-6 fields)."""
    parts = text.split()
    return (len(parts) == 1 and parts[0].startswith("@")) or len(parts) in (5, 6)


@lru_cache(maxsize=8192)
def parse_cron(expr: str) -> CronExpr:
    """Parse and validate a cron expression once; the result is immutable and shared.

    Raises CronError naming the offending field, e.g.
    ``invalid cron expression "0 25 * * *": hour 25 is out of range 0-23``.
    """
    return CronExpr(expr)


class CronExpr:
    """A parsed cron expression; ``next_after`` is the hot path of the scheduler."""

    __slots__ = (
        "_day_cache",
        "_hour_below",
        "_hour_next",
        "_min_below",
        "_min_next",
        "_month_ok",
        "_per_day",
        "_sec_below",
        "_sec_next",
        "_sim",
        "expr",
        "fields",
        "is_wildcard",
        "six_fields",
        "w_days",
    )

    def __init__(self, expr: str) -> None:
        def fail(detail: str) -> NoReturn:
            raise CronError(expr, detail)

        self.expr = expr
        parts = expr.split()
        if len(parts) == 1 and parts[0].startswith("@"):
            macro = MACROS.get(parts[0].lower())
            if macro is None:
                fail(
                    f'unknown macro "{parts[0]}" (use @hourly, @daily, @midnight, @weekly, '
                    "@monthly, @yearly or @annually)"
                )
            parts = macro.split()
        if len(parts) not in (5, 6):
            fail(f"expected 5 or 6 fields, got {len(parts)}")
        self.six_fields = len(parts) == 6
        if not self.six_fields:
            parts = ["0", *parts]
        normalized: list[str] = []
        w_days: tuple[int, ...] = ()
        for field, text in enumerate(parts):
            norm, wd = normalize_field(field, text, fail)
            normalized.append(norm)
            if field == DAY_OF_MONTH:
                w_days = wd
        self.w_days = w_days
        self.fields: tuple[str, ...] = tuple(normalized)
        # Debian cron: a day field beginning with "*" means both day fields must match.
        dom, dow = normalized[DAY_OF_MONTH], normalized[DAY_OF_WEEK]
        day_and = dom.startswith("*") or dow.startswith("*")
        self.is_wildcard = any(normalized[f].startswith("*") for f in (SECOND, MINUTE, HOUR))

        if day_and:
            check_days_exist(normalized[DAY_OF_MONTH], normalized[MONTH], w_days, fail)
        sim_fields = list(normalized)
        if not sim_fields[DAY_OF_MONTH]:  # only nW terms: cronsim needs something to parse
            sim_fields[DAY_OF_MONTH] = "*"
        try:
            sim = _Sim(" ".join(sim_fields), datetime(2000, 1, 1))
        except CronSimError as exc:  # pragma: no cover - our validation should catch all
            fail(f"rejected by the cron parser ({exc})")
        if not normalized[DAY_OF_MONTH]:
            sim.days = set()
        sim.day_and = day_and
        sim.w_days = w_days
        self._sim = sim

        self._sec_next = _next_table(sim.seconds, 60)
        self._min_next = _next_table(sim.minutes, 60)
        self._hour_next = _next_table(sim.hours, 24)
        self._month_ok = tuple(m in sim.months for m in range(13))
        self._sec_below = _below_table(sim.seconds, 60)
        self._min_below = _below_table(sim.minutes, 60)
        self._hour_below = _below_table(sim.hours, 24)
        self._per_day = len(sim.hours) * len(sim.minutes) * len(sim.seconds)
        # Day lists depend only on the day fields, so expressions that share them (most
        # share "* * 1-5" or "* * *") share one cache.
        day_spec = (normalized[DAY_OF_MONTH], normalized[DAY_OF_WEEK], w_days)
        self._day_cache = _DAY_CACHES.setdefault(day_spec, {})

    def __repr__(self) -> str:
        return f"CronExpr({self.expr!r})"

    # --- calendar matching -------------------------------------------------------------

    def _days_of_month(self, y: int, m: int) -> tuple[int, ...]:
        """Sorted matching days of one month (cached: computing them is ~30 cronsim calls)."""
        key = y * 12 + m
        days = self._day_cache.get(key)
        if days is None:
            last = calendar.monthrange(y, m)[1]
            if self.fields[DAY_OF_MONTH] == "*" and self.fields[DAY_OF_WEEK] == "*":
                days = tuple(range(1, last + 1))
            else:
                match = self._sim.match_day
                days = tuple(d for d in range(1, last + 1) if match(date(y, m, d)))
            if len(self._day_cache) >= 1024:
                self._day_cache.clear()
            self._day_cache[key] = days
        return days

    def _next_wall(self, w: int, limit_year: int) -> int | None:
        """Smallest matching wall time >= w (local seconds), or None past limit_year."""
        day_no, sod = divmod(w, 86_400)
        y, mo, d = civil_from_days(day_no)
        h, rem = divmod(sod, 3600)
        mi, s = divmod(rem, 60)
        month_ok = self._month_ok
        hour_next, min_next, sec_next = self._hour_next, self._min_next, self._sec_next
        while True:
            if not month_ok[mo]:
                while True:
                    mo += 1
                    if mo > 12:
                        mo = 1
                        y += 1
                    if month_ok[mo]:
                        break
                d, h, mi, s = 1, 0, 0, 0
            if y > limit_year:
                return None
            days = self._days_of_month(y, mo)
            i = bisect_left(days, d)
            if i == len(days):
                mo += 1
                if mo > 12:
                    mo = 1
                    y += 1
                d, h, mi, s = 1, 0, 0, 0
                continue
            if days[i] != d:
                d, h, mi, s = days[i], 0, 0, 0
            nh = hour_next[h]
            if nh < 0:
                d, h, mi, s = d + 1, 0, 0, 0
                continue
            if nh != h:
                h, mi, s = nh, 0, 0
            nm = min_next[mi]
            if nm < 0:
                h, mi, s = h + 1, 0, 0
                if h == 24:
                    d, h = d + 1, 0
                continue
            if nm != mi:
                mi, s = nm, 0
            ns = sec_next[s]
            if ns < 0:
                mi, s = mi + 1, 0
                if mi == 60:
                    h, mi = h + 1, 0
                    if h == 24:
                        d, h = d + 1, 0
                continue
            return days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + ns

    def _count_sod_below(self, x: int) -> int:
        """Matching times of day (h, m, s) strictly before second-of-day x (0..86400)."""
        h, rem = divmod(x, 3600)
        m, sec = divmod(rem, 60)
        n_min = self._min_below[60]
        n_sec = self._sec_below[60]
        count = self._hour_below[h] * n_min * n_sec
        if h < 24 and self._hour_next[h] == h:
            count += self._min_below[m] * n_sec
            if self._min_next[m] == m:
                count += self._sec_below[sec]
        return count

    def _day_matches(self, day_no: int) -> bool:
        y, m, d = civil_from_days(day_no)
        if not self._month_ok[m]:
            return False
        days = self._days_of_month(y, m)
        i = bisect_left(days, d)
        return i < len(days) and days[i] == d

    def _matching_days(self, first: int, last: int) -> int:
        """Number of matching calendar days with day numbers in [first, last)."""
        total = 0
        day = first
        while day < last:
            y, m, d = civil_from_days(day)
            month_len = calendar.monthrange(y, m)[1]
            stop = min(last - day + d, month_len + 1)  # exclusive day-of-month bound
            if self._month_ok[m]:
                days = self._days_of_month(y, m)
                total += bisect_left(days, stop) - bisect_left(days, d)
            day += stop - d
        return total

    def _count_walls(self, w1: int, w2: int) -> int:
        """Matching wall times in [w1, w2), by arithmetic (no iteration over fires)."""
        if w2 <= w1:
            return 0
        day1, sod1 = divmod(w1, 86_400)
        day2, sod2 = divmod(w2, 86_400)
        below = self._count_sod_below
        if day1 == day2:
            return (below(sod2) - below(sod1)) if self._day_matches(day1) else 0
        total = self._matching_days(day1 + 1, day2) * self._per_day
        if self._day_matches(day1):
            total += self._per_day - below(sod1)
        if sod2 and self._day_matches(day2):
            total += below(sod2)
        return total

    def count_between(self, after_ms: int, until_ms: int, zone: tzinfo) -> int:
        """How many fires fall in (after_ms, until_ms], computed arithmetically.

        Costs O(months + DST transitions) in the span, whatever the fire rate, so catch-up
        accounting after a long outage stays cheap even for per-second schedules. Agrees with
        iterating next_after (tests pin that), DST rules included.
        """
        a, b = after_ms // 1000, until_ms // 1000  # fires t with a < t <= b
        a = max(a, MIN_SUPPORTED_S)
        b = min(b, MAX_SUPPORTED_S - 1)
        if b <= a:
            return 0
        table = transitions_for(zone)
        if table.fixed is not None:
            return self._count_walls(a + 1 + table.fixed, b + 1 + table.fixed)
        if self.is_wildcard:
            total = 0
            cur = a + 1
            while cur <= b:
                off, end = table.segment(cur)
                stop = min(end, b + 1)
                total += self._count_walls(cur + off, stop + off)
                cur = stop
            return total
        # Fixed-time: fires are first_instant(w) for matching walls w; that map is monotonic,
        # so they are the walls in one interval, except that all walls of a gap (and the
        # wall right after it) share one instant and count once.
        total = self._count_walls(table.first_wall_after(a + 1), table.first_wall_after(b + 1))
        for tr, before, after in table.transitions_between(a, b):
            if after > before:
                shared = self._count_walls(tr + before, tr + after + 1)
                total -= max(0, shared - 1)
        return total

    # --- public API ----------------------------------------------------------------------

    def next_after(self, after_ms: int, zone: tzinfo) -> int | None:
        """First fire strictly after ``after_ms`` (Unix ms) in ``zone``, as Unix ms.

        None when nothing fires within SEARCH_YEARS years. Fires fall on whole seconds.
        """
        a = after_ms // 1000  # a fire t (whole seconds) is after after_ms iff t > a
        if not MIN_SUPPORTED_S < a < MAX_SUPPORTED_S:
            return None
        table = transitions_for(zone)
        fixed = table.fixed
        if fixed is not None:  # UTC and fixed offsets: wall time is a plain shift
            limit = civil_from_days((a + fixed) // 86_400)[0] + SEARCH_YEARS
            m = self._next_wall(a + 1 + fixed, limit)
            return None if m is None else (m - fixed) * 1000
        if self.is_wildcard:
            # Walk the timeline one constant-offset segment at a time: inside a segment wall
            # time is monotonic, so the first match in it is the next real instant.
            cur = a + 1
            off, end = table.segment(cur)
            limit = civil_from_days((cur + off) // 86_400)[0] + SEARCH_YEARS
            while True:
                m = self._next_wall(cur + off, limit)
                if m is None:
                    return None
                t = m - off
                if t < end:
                    return t * 1000
                cur = end
                if cur >= MAX_SUPPORTED_S:
                    return None
                off, end = table.segment(cur)
        # Fixed-time: each matching wall time fires once, at table.first_instant(); that
        # mapping is monotonic, so scan wall times from the first that can still fire.
        w = table.first_wall_after(a + 1)
        limit = civil_from_days(w // 86_400)[0] + SEARCH_YEARS
        while True:
            m = self._next_wall(w, limit)
            if m is None:
                return None
            t = table.first_instant(m)
            if t > a:
                return t * 1000
            w = m + 1  # pragma: no cover - first_wall_after() makes this unreachable

    def explain(self) -> str:
        """English description, e.g. "at 09:00 on Monday through Friday"."""
        parts = list(self.fields)
        if not self.w_days:
            text = Expression(parts).explain()
            return text[:1].lower() + text[1:]
        # cronsim cannot explain nW: describe the time with cronsim, then the days ourselves.
        nearest = " and the ".join(ordinal(n) for n in self.w_days)
        pieces = [f"on the weekday nearest the {nearest} day of the month"]
        if parts[DAY_OF_MONTH]:
            rest = Expression(
                [*parts[:DAY_OF_MONTH], parts[DAY_OF_MONTH], "*", "*"]
            ).translate_date(False)
            pieces.append(f"and {rest}")
        parts[DAY_OF_MONTH] = "*"
        expression = Expression(parts)
        if not parts[DAY_OF_WEEK].startswith("*"):
            dow = Expression([*parts[:MONTH], "*", parts[DAY_OF_WEEK]]).translate_date(False)
            pieces.append(f"and {dow}")
        if not parts[MONTH].startswith("*"):
            months = Expression([*parts[:MONTH], parts[MONTH], "*"]).translate_date(False)
            pieces.append(months.replace("every day ", ""))
        time_text = expression.translate_time()[0]
        return " ".join([time_text[:1].lower() + time_text[1:], *pieces])
