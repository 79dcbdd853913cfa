"""The ``schedule`` of a schedule trigger (SPEC §2.1): ``cron``, ``every`` and ``at``.

Each type is a function of the ``Checker`` registered in ``SCHEDULE_TYPES`` with the keys it
allows. Equal schedules are built once and shared between routines (``Checker.schedules``), so
100 000 routines drawing on a few thousand distinct expressions hold a few thousand objects.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from routines.jsonpos import Path
from routines.model import MIN_EVERY_INTERVAL_MS, AtSchedule, CronSchedule, EverySchedule, Schedule
from routines.validate.primitives import MISSING, Checker, describe


def parse_schedule(cx: Checker, v: Any, p: Path) -> Schedule | None:
    """The schedule at ``p``, or None with the errors reported."""
    tagged = cx.tagged(v, p, "type", SCHEDULE_KEYS, "schedule type")
    if tagged is None:
        return None
    o, typ = tagged
    return _PARSE[typ](cx, o, p)


def _cron(cx: Checker, o: dict[str, Any], p: Path) -> Schedule | None:
    expr = cx.req_string(o, "expr", p)
    if expr is not None:
        msg = cx.cron(expr)
        if msg is not None:
            cx.err((*p, "expr"), msg)
            expr = None
    tz = o.get("timezone", MISSING)
    if tz is MISSING:
        tz = cx.default_timezone
        msg = cx.zone(tz)
        if msg is not None:
            cx.missing(
                p,
                "timezone",
                f" (the default time zone {describe(tz)} from palyra.toml is unknown)",
            )
            return None
    elif tz is None:
        cx.null(p, "timezone")
        return None
    else:
        tz = cx.string(tz, (*p, "timezone"))
        if tz is None:
            return None
        msg = cx.zone(tz)
        if msg is not None:
            cx.err((*p, "timezone"), msg)
            return None
    if expr is None:
        return None
    key: tuple[object, ...] = ("cron", expr, tz)
    cron = cx.schedules.get(key)
    if cron is None:
        cron = cx.schedules[key] = CronSchedule(expr=expr, timezone=tz)
    return cron


def _every(cx: Checker, o: dict[str, Any], p: Path) -> Schedule | None:
    n = len(cx.errors)
    if "interval_ms" not in o:
        cx.missing(p, "interval_ms")
    interval = cx.ms(o, "interval_ms", p, 0, MIN_EVERY_INTERVAL_MS)
    anchor = cx.opt_string(o, "anchor", p)
    anchor_ms: int | None = None
    if anchor is not None:
        got = cx.instant(anchor)
        if isinstance(got, str):
            cx.err((*p, "anchor"), got)
        else:
            anchor_ms = got
    if len(cx.errors) != n:
        return None
    key: tuple[object, ...] = ("every", interval, anchor)
    every = cx.schedules.get(key)
    if every is None:
        every = cx.schedules[key] = EverySchedule(
            interval_ms=interval, anchor=anchor, anchor_unix_ms=anchor_ms
        )
    return every


def _at(cx: Checker, o: dict[str, Any], p: Path) -> Schedule | None:
    a = o.get("at", MISSING)
    if a is MISSING:
        cx.missing(p, "at")
        return None
    at = cx.string(a, (*p, "at"))
    if at is None:
        return None
    got = cx.instant(at)
    if isinstance(got, str):
        cx.err((*p, "at"), got)
        return None
    if got < cx.now_ms:
        cx.warn((*p, "at"), f"{describe(at)} is in the past; this schedule will not fire")
    key: tuple[object, ...] = ("at", at)
    sched = cx.schedules.get(key)
    if sched is None:
        sched = cx.schedules[key] = AtSchedule(at=at, at_unix_ms=got)
    return sched


# type → (its keys, its check). The order is the order messages list them in.
SCHEDULE_TYPES: dict[
    str, tuple[frozenset[str], Callable[[Checker, dict[str, Any], Path], Schedule | None]]
] = {
    "cron": (frozenset({"type", "expr", "timezone"}), _cron),
    "every": (frozenset({"type", "interval_ms", "anchor"}), _every),
    "at": (frozenset({"type", "at"}), _at),
}
SCHEDULE_KEYS = {typ: keys for typ, (keys, _) in SCHEDULE_TYPES.items()}
_PARSE = {typ: check for typ, (_, check) in SCHEDULE_TYPES.items()}
