"""One cron field at a time: validation with a precise message per mistake, and the field
rewritten in cronsim's dialect (numbers only, ``?`` as ``*``, ``nW`` days taken out, since
Palyra matches those itself).

Apart from ``routines.cron`` because the two jobs are independent: this module knows cron's
*syntax* (names, ranges, steps, lists, ``L``/``W``/``#``) and what each mistake should say;
``routines.cron`` knows its *arithmetic* (which instants match, DST, the next fire).
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Callable
from typing import NoReturn

from cronsim.cronsim import Field as SimField

SECOND, MINUTE, HOUR, DAY_OF_MONTH, MONTH, DAY_OF_WEEK = range(6)
_FIELD_NAMES = ("second", "minute", "hour", "day-of-month", "month", "day-of-week")
_LOW = (0, 0, 0, 1, 1, 0)
_HIGH = (59, 59, 23, 31, 12, 7)
_MONTH_NAMES = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAY_NAMES = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
_MONTH_LONG = tuple(calendar.month_name)
_DIGITS = re.compile(r"[0-9]+")
_DAYS_IN_MONTH_MAX = (0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31)


def _value(field: int, token: str, fail: Callable[[str], NoReturn]) -> int:
    """One numeric or symbolic value of a field, range-checked."""
    name = _FIELD_NAMES[field]
    up = token.upper()
    if _DIGITS.fullmatch(token):
        v = int(token)
        if not _LOW[field] <= v <= _HIGH[field]:
            fail(f"{name} {v} is out of range {_LOW[field]}-{_HIGH[field]}")
        return v
    if field == MONTH:
        if up in _MONTH_NAMES:
            return _MONTH_NAMES.index(up) + 1
        if token.isalpha():
            fail(f'month "{token}" is not a month name')
        fail(f'month "{token}" is not a number or month name')
    if field == DAY_OF_WEEK:
        if up in _DAY_NAMES:
            return _DAY_NAMES.index(up)
        if token.isalpha():
            fail(f'day-of-week "{token}" is not a day name')
        fail(f'day-of-week "{token}" is not a number or day name')
    if token == "":
        fail(f"{name} has an empty value")
    fail(f'{name} "{token}" is not a number')


def _step(field: int, token: str, fail: Callable[[str], NoReturn]) -> int:
    name = _FIELD_NAMES[field]
    if not _DIGITS.fullmatch(token):
        fail(f'{name} step "{token}" is not a number')
    step = int(token)
    # Like cronie: a step must be at least 1 and at most the field's top value.
    top = _HIGH[field]
    if not 1 <= step <= top:
        fail(f"{name} step {step} is out of range 1-{top}")
    return step


def normalize_field(
    field: int, text: str, fail: Callable[[str], NoReturn]
) -> tuple[str, tuple[int, ...]]:
    """Validate one field; return it in cronsim's dialect (numbers only, ``?`` as ``*``,
    ``nW`` terms removed) plus the ``nW`` day numbers, which Palyra matches itself."""
    name = _FIELD_NAMES[field]
    terms = text.split(",")
    out: list[str] = []
    w_days: list[int] = []
    for term in terms:
        up = term.upper()
        if term == "":
            fail(f'{name} "{text}" has an empty list item')
        if up == "?":
            if field not in (DAY_OF_MONTH, DAY_OF_WEEK):
                fail(f'{name} "?" is only allowed in day-of-month and day-of-week')
            if len(terms) > 1:
                fail(f'{name} "{text}": "?" cannot be combined with other values')
            out.append("*")
            continue
        if field == DAY_OF_MONTH:
            if up in ("L", "LW"):
                out.append(up)
                continue
            if up.endswith("W"):
                w_days.append(_value(field, term[:-1], fail))
                continue
        if field == DAY_OF_WEEK and up.endswith("L") and up not in _DAY_NAMES:
            out.append(f"{_value(field, term[:-1], fail)}L")
            continue
        if field == DAY_OF_WEEK and "#" in term:
            base, nth = term.split("#", 1)
            day = _value(field, base, fail)
            if not _DIGITS.fullmatch(nth):
                fail(f'day-of-week "{term}": occurrence "{nth}" is not a number')
            if not 1 <= int(nth) <= 5:
                fail(f'day-of-week "{term}": occurrence {int(nth)} is out of range 1-5')
            out.append(f"{day}#{int(nth)}")
            continue
        base, slash, step_text = term.partition("/")
        suffix = f"/{_step(field, step_text, fail)}" if slash else ""
        if base == "*":
            out.append("*" + suffix)
            continue
        if "-" in base:
            a_text, _, b_text = base.partition("-")
            a = _value(field, a_text, fail)
            b = _value(field, b_text, fail)
            if field == DAY_OF_WEEK and b == 0 and a > 0:
                b = 7  # FRI-SUN: Sunday closes the week
            if b < a:
                fail(f'{name} range "{base}" runs backwards ({a} > {b})')
            out.append(f"{a}-{b}{suffix}")
            continue
        out.append(f"{_value(field, base, fail)}{suffix}")
    return ",".join(out), tuple(w_days)


def check_days_exist(
    dom: str, month: str, w_days: tuple[int, ...], fail: Callable[[str], NoReturn]
) -> None:
    """Refuse day numbers no selected month has when they cannot be rescued by day-of-week
    (AND semantics): ``0 0 31 4 *`` would otherwise silently never fire."""
    days = {d for d in SimField.DAY.parse(dom) if isinstance(d, int) and d > 0} if dom else set()
    if any(isinstance(d, int) and d < 0 for d in (SimField.DAY.parse(dom) if dom else ())):
        return  # L / LW exist in every month
    numeric = days | set(w_days)
    if not numeric:
        return
    months = sorted(m for m in SimField.MONTH.parse(month) if isinstance(m, int))
    if min(numeric) > max(_DAYS_IN_MONTH_MAX[m] for m in months):
        where = (
            " or ".join(_MONTH_LONG[m] for m in months)
            if len(months) <= 3
            else "any of the selected months"
        )
        fail(f"day-of-month {min(numeric)} never occurs in {where}")
