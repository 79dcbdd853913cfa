"""One routine object (SPEC §2): its id, and each of its keys handed to its section.

``parse_routine_object`` is where sections are dispatched: a new routine key is one line
there (and its section module). It is also the hot path of a big file, run 100 000 times:
common cases are checked inline, and absent keys (most of them, in most routines) take their
defaults without a call.
"""

from __future__ import annotations

import re
from typing import Any

from routines.jsonpos import Path
from routines.model import (
    ID_PATTERN,
    Action,
    Approval,
    Concurrency,
    Routine,
    Trigger,
    slugify,
)
from routines.validate.actions import parse_action
from routines.validate.delivery import DEFAULT_DELIVERY, parse_delivery
from routines.validate.policies import (
    DEFAULT_MISFIRE,
    DEFAULT_RETRY,
    parse_approval,
    parse_concurrency,
    parse_cooldown,
    parse_jitter,
    parse_misfire,
    parse_quiet_hours,
    parse_retry,
)
from routines.validate.primitives import MISSING, Checker, describe
from routines.validate.triggers import parse_trigger

ROUTINE_KEYS = frozenset(
    {
        "id",
        "name",
        "enabled",
        "trigger",
        "action",
        "concurrency",
        "misfire",
        "jitter_ms",
        "retry",
        "quiet_hours",
        "approval",
        "cooldown_ms",
        "delivery",
        "tags",
    }
)

_ID_RE = re.compile(ID_PATTERN)
_ID_MATCH = _ID_RE.fullmatch


def parse_routine_object(cx: Checker, obj: Any, p: Path) -> Routine | None:
    """The routine at ``p``, or None with every error in it reported."""
    if type(obj) is not dict:
        cx.err(p, f"must be an object, got {describe(obj)}")
        return None
    o: dict[str, Any] = obj
    cx.keys_seen += len(o)
    start = len(cx.errors)
    if not o.keys() <= ROUTINE_KEYS:
        cx.unknown_keys(o, ROUTINE_KEYS, p)

    rid = o.get("id")
    if type(rid) is not str or _ID_MATCH(rid) is None:
        rid = _routine_id(cx, o, p)
    trigger: Trigger | None = None
    v = o.get("trigger", MISSING)
    if v is MISSING:
        cx.missing(p, "trigger")
    else:
        trigger = parse_trigger(cx, v, (*p, "trigger"))
    action: Action | None = None
    v = o.get("action", MISSING)
    if v is MISSING:
        cx.missing(p, "action")
    else:
        action = parse_action(cx, v, (*p, "action"))

    # Absent keys (the common case) take their defaults without a call. The order of the
    # lines is the order of issues that share a position.
    name = cx.opt_string(o, "name", p, intern=False) if "name" in o else None
    enabled = cx.boolean(o, "enabled", p, True) if "enabled" in o else True
    concurrency = parse_concurrency(cx, o, p) if "concurrency" in o else Concurrency.FORBID
    misfire = parse_misfire(cx, o, p) if "misfire" in o else DEFAULT_MISFIRE
    jitter = parse_jitter(cx, o, p) if "jitter_ms" in o else 0
    retry = parse_retry(cx, o, p) if "retry" in o else DEFAULT_RETRY
    quiet = parse_quiet_hours(cx, o, p) if "quiet_hours" in o else None
    approval = parse_approval(cx, o, p) if "approval" in o else Approval.NONE
    cooldown = parse_cooldown(cx, o, p) if "cooldown_ms" in o else 0
    delivery = parse_delivery(cx, o, p) if "delivery" in o else DEFAULT_DELIVERY
    tags = cx.str_list(o, "tags", p, ()) if "tags" in o else ()

    if len(cx.errors) != start or rid is None or trigger is None or action is None:
        return None
    return Routine(
        id=rid,
        trigger=trigger,
        action=action,
        name=name,
        enabled=enabled,
        concurrency=concurrency,
        misfire=misfire,
        jitter_ms=jitter,
        retry=retry,
        quiet_hours=quiet,
        approval=approval,
        cooldown_ms=cooldown,
        delivery=delivery,
        tags=tags or (),
    )


def _routine_id(cx: Checker, o: dict[str, Any], p: Path) -> str | None:
    v = o.get("id", MISSING)
    if v is MISSING:
        cx.missing(p, "id")
        return None
    if type(v) is not str:
        cx.err((*p, "id"), f"must be a string, got {describe(v)}")
        return None
    if _ID_RE.fullmatch(v) is None:
        cx.err(
            (*p, "id"),
            f"invalid id {describe(v)}: ids are 1-128 characters of a-z, 0-9, '.', '_', '-'"
            f' starting with a letter or digit (try "{slugify(v)}")',
        )
        return None
    return v
