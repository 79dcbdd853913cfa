"""A routine's policies (SPEC §2.3): concurrency, misfire, jitter, retry, quiet hours,
approval and cooldown.

Each is a function of the ``Checker``, the routine object and its path, called only when the
routine has the key (absent keys take their defaults in ``routine.py`` without a call). Equal
misfire and retry policies are built once and shared between routines.
"""

from __future__ import annotations

import re
from typing import Any, Final

from routines.jsonpos import Path
from routines.model import (
    MAX_CATCH_UP_RUNS,
    MAX_JITTER_MS,
    Approval,
    Concurrency,
    Misfire,
    MisfirePolicy,
    QuietHours,
    Retry,
)
from routines.validate.primitives import MISSING, Checker, describe, enum_table

MAX_RETRY_ATTEMPTS: Final = 16
DEFAULT_MISFIRE: Final = Misfire()
DEFAULT_RETRY: Final = Retry()

_MISFIRE_KEYS = frozenset({"policy", "grace_ms", "max_catch_up_runs"})
_RETRY_KEYS = frozenset({"max_attempts", "backoff_ms", "max_backoff_ms"})
_QUIET_KEYS = frozenset({"start", "end", "timezone"})
_CONCURRENCY: dict[str, Concurrency] = enum_table(Concurrency)
_MISFIRE_POLICY: dict[str, MisfirePolicy] = enum_table(MisfirePolicy)
_APPROVAL: dict[str, Approval] = enum_table(Approval)
_HHMM_RE = re.compile(r"(?:[01][0-9]|2[0-3]):[0-5][0-9]")


def parse_concurrency(cx: Checker, o: dict[str, Any], p: Path) -> Concurrency:
    """``concurrency`` (aliases such as ``queue(1)`` accepted); the default when invalid."""
    got: Concurrency = cx.enum(o, "concurrency", p, _CONCURRENCY, Concurrency.FORBID)
    return got


def parse_approval(cx: Checker, o: dict[str, Any], p: Path) -> Approval:
    """``approval``; the default when invalid."""
    got: Approval = cx.enum(o, "approval", p, _APPROVAL, Approval.NONE)
    return got


def parse_jitter(cx: Checker, o: dict[str, Any], p: Path) -> int:
    """``jitter_ms``, at most ``MAX_JITTER_MS``: a bigger delay would blur the schedule."""
    return cx.ms(o, "jitter_ms", p, 0, 0, MAX_JITTER_MS)


def parse_cooldown(cx: Checker, o: dict[str, Any], p: Path) -> int:
    """``cooldown_ms``: the least time between the starts of two runs."""
    return cx.ms(o, "cooldown_ms", p, 0)


def parse_misfire(cx: Checker, o: dict[str, Any], p: Path) -> Misfire:
    """``misfire``: what happens to ticks that could not start in time."""
    m = cx.opt_obj(o, "misfire", p)
    if m is None:
        return DEFAULT_MISFIRE
    mp = (*p, "misfire")
    if not m.keys() <= _MISFIRE_KEYS:
        cx.unknown_keys(m, _MISFIRE_KEYS, mp)
    key = (
        cx.enum(m, "policy", mp, _MISFIRE_POLICY, MisfirePolicy.SKIP),
        cx.ms(m, "grace_ms", mp, 60_000),
        cx.count(m, "max_catch_up_runs", mp, 1, 1, MAX_CATCH_UP_RUNS),
    )
    got = cx.misfires.get(key)
    if got is None:
        got = cx.misfires[key] = Misfire(*key)
    return got


def parse_retry(cx: Checker, o: dict[str, Any], p: Path) -> Retry:
    """``retry``: how often, and how long apart, failed attempts are tried again."""
    r = cx.opt_obj(o, "retry", p)
    if r is None:
        return DEFAULT_RETRY
    rp = (*p, "retry")
    if not r.keys() <= _RETRY_KEYS:
        cx.unknown_keys(r, _RETRY_KEYS, rp)
    key = (
        cx.count(r, "max_attempts", rp, 1, 1, MAX_RETRY_ATTEMPTS),
        cx.ms(r, "backoff_ms", rp, 1_000),
        cx.ms(r, "max_backoff_ms", rp, 3_600_000),
    )
    got = cx.retries.get(key)
    if got is None:
        got = cx.retries[key] = Retry(*key)
    return got


def parse_quiet_hours(cx: Checker, o: dict[str, Any], p: Path) -> QuietHours | None:
    """``quiet_hours``: a daily window in which nothing fires; None when absent or invalid."""
    q = cx.opt_obj(o, "quiet_hours", p)
    if q is None:
        return None
    qp = (*p, "quiet_hours")
    if not q.keys() <= _QUIET_KEYS:
        cx.unknown_keys(q, _QUIET_KEYS, qp)
    n = len(cx.errors)
    ends: list[str] = []
    for key in ("start", "end"):
        v = q.get(key, MISSING)
        if v is MISSING:
            cx.missing(qp, key, ' ("HH:MM")')
        elif type(v) is not str or _HHMM_RE.fullmatch(v) is None:
            cx.err((*qp, key), f'must be "HH:MM" from 00:00 to 23:59, got {describe(v)}')
        else:
            ends.append(v)
    tz = cx.opt_string(q, "timezone", qp)
    if tz is not None:
        msg = cx.zone(tz)
        if msg is not None:
            cx.err((*qp, "timezone"), msg)
    if len(cx.errors) != n:
        return None
    return QuietHours(
        start=cx.intern(ends[0]),
        end=cx.intern(ends[1]),
        timezone=None if tz is None else cx.intern(tz),
    )
