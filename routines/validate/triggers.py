"""A routine's ``trigger`` (SPEC §2.1): what makes it fire.

Each kind is a function of the ``Checker`` registered in ``TRIGGER_KINDS`` with the keys it
allows; a new kind (or a kind grown big enough for a module of its own, like webhooks) is its
function plus one line there. The key sets also explain a key used with the wrong kind ("not
used by trigger kind "manual"; it belongs to file_watch").
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Callable
from typing import Any

from routines.jsonpos import Path
from routines.kinds import OPERATOR_EVENT_PREFIX, SystemEvent
from routines.model import (
    FileEvent,
    FileWatchTrigger,
    HookTrigger,
    ManualTrigger,
    ScheduleTrigger,
    SystemEventTrigger,
    Trigger,
    WebhookTrigger,
    canonical_enum,
)
from routines.validate.primitives import MISSING, Checker, describe, enum_table, hint
from routines.validate.schedules import parse_schedule

_FILE_EVENT: dict[str, FileEvent] = enum_table(FileEvent)
_EVENT_ORDER = {e: i for i, e in enumerate(FileEvent)}
_ALL_EVENTS = tuple(FileEvent)
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def parse_trigger(cx: Checker, v: Any, p: Path) -> Trigger | None:
    """The trigger at ``p``, or None with the errors reported."""
    tagged = cx.tagged(v, p, "kind", TRIGGER_KEYS, "trigger kind")
    if tagged is None:
        return None
    o, kind = tagged
    return _PARSE[kind](cx, o, p)


def _schedule(cx: Checker, o: dict[str, Any], p: Path) -> Trigger | None:
    s = o.get("schedule", MISSING)
    if s is MISSING:
        cx.missing(p, "schedule")
        return None
    sched = parse_schedule(cx, s, (*p, "schedule"))
    if sched is None:
        return None
    # Schedules are shared (see schedules.py), so their identity keys their trigger.
    trig = cx.schedule_triggers.get(id(sched))
    if trig is None:
        trig = cx.schedule_triggers[id(sched)] = ScheduleTrigger(schedule=sched)
    return trig


def _manual(cx: Checker, o: dict[str, Any], p: Path) -> Trigger | None:
    return ManualTrigger()


def _file_watch(cx: Checker, o: dict[str, Any], p: Path) -> Trigger | None:
    n = len(cx.errors)
    paths = cx.str_list(o, "paths", p, (), required=True, nonempty=True)
    if paths is not None:
        for i, path in enumerate(paths):
            if not path:
                cx.err((*p, "paths", i), "must not be empty")
            elif not (path.startswith("/") or path == "~" or path.startswith("~")):
                cx.err(
                    (*p, "paths", i),
                    f"{describe(path)} is relative; use an absolute path or one starting "
                    "with ~ (the daemon's working directory is not yours)",
                )
            elif not cx.path_exists(path):
                cx.warn((*p, "paths", i), f"{describe(path)} does not exist (yet)")
    patterns = cx.str_list(o, "patterns", p, ("*",))
    ignore = cx.str_list(o, "ignore", p, ())
    events = _events(cx, o, p)
    recursive = cx.boolean(o, "recursive", p, False)
    debounce = cx.ms(o, "debounce_ms", p, 500)
    if len(cx.errors) != n or paths is None or patterns is None or ignore is None:
        return None
    return FileWatchTrigger(
        paths=paths,
        patterns=patterns,
        ignore=ignore,
        events=events,
        recursive=recursive,
        debounce_ms=debounce,
    )


def _events(cx: Checker, o: dict[str, Any], p: Path) -> tuple[FileEvent, ...]:
    v = o.get("events", MISSING)
    if v is MISSING:
        return _ALL_EVENTS
    raw = cx.str_list(o, "events", p, (), nonempty=True)
    if raw is None:
        return _ALL_EVENTS
    got: set[FileEvent] = set()
    for i, name in enumerate(raw):
        e = _FILE_EVENT.get(name) or _FILE_EVENT.get(canonical_enum(name))
        if e is None:
            cx.err(
                (*p, "events", i),
                f"unknown event {describe(name)} (expected one of "
                f"{', '.join(_FILE_EVENT)})" + hint(name, _FILE_EVENT),
            )
        else:
            got.add(e)
    return tuple(sorted(got, key=_EVENT_ORDER.__getitem__))


def _webhook(cx: Checker, o: dict[str, Any], p: Path) -> Trigger | None:
    n = len(cx.errors)
    has_env, has_file = "secret_env" in o, "secret_file" in o
    if not has_env and not has_file:
        cx.missing(p, "secret_env", ' (or "secret_file")')
    elif has_env and has_file:
        cx.err(
            (*p, "secret_file"),
            'use exactly one of "secret_env" and "secret_file"',
            at_key=True,
        )
    name = _secret_env(cx, o, p) if has_env else None
    path = _secret_file(cx, o, p) if has_file else None
    require_ts = cx.boolean(o, "require_timestamp", p, False)
    if len(cx.errors) != n:
        return None
    return WebhookTrigger(secret_env=name, secret_file=path, require_timestamp=require_ts)


def _secret_env(cx: Checker, o: dict[str, Any], p: Path) -> str | None:
    name = cx.opt_string(o, "secret_env", p)
    if name is None:
        return None
    if _ENV_NAME_RE.fullmatch(name) is None:
        cx.err((*p, "secret_env"), f"{describe(name)} is not an environment variable name")
        return None
    if name not in cx.env:
        cx.warn(
            (*p, "secret_env"),
            f'environment variable "{name}" is not set; webhook calls will be rejected '
            "until the daemon has it",
        )
    return name


def _secret_file(cx: Checker, o: dict[str, Any], p: Path) -> str | None:
    path = cx.opt_string(o, "secret_file", p)
    if path is None:
        return None
    if not path.startswith(("/", "~")):
        cx.err(
            (*p, "secret_file"),
            f"{describe(path)} is relative; use an absolute path or one starting with ~ "
            "(the daemon's working directory is not yours)",
        )
        return None
    problem = secret_file_problem(path)
    if problem is not None:
        cx.warn((*p, "secret_file"), f"{describe(path)} {problem}; webhook calls will be rejected")
    return path


def secret_file_problem(path: str) -> str | None:
    """Why the daemon would refuse the secret file at ``path`` now (``~`` expanded), as the
    end of a sentence, or None. Looked at without following symlinks, as the daemon opens it;
    the daemon checks again on every request, so this is only a warning."""
    try:
        st = os.lstat(os.path.expanduser(path))
    except FileNotFoundError:
        return "does not exist (yet)"
    except OSError as exc:
        return f"cannot be examined ({exc.strerror})"
    if stat.S_ISLNK(st.st_mode):
        return "is a symbolic link, which the daemon does not follow"
    if not stat.S_ISREG(st.st_mode):
        return "is not a regular file"
    if st.st_uid != os.geteuid():
        return f"is owned by uid {st.st_uid}, not by the daemon's user (uid {os.geteuid()})"
    if st.st_mode & 0o077:
        return (
            f"is readable or writable by others (mode {stat.S_IMODE(st.st_mode):04o}; chmod 600 it)"
        )
    return None


def _system_event(cx: Checker, o: dict[str, Any], p: Path) -> Trigger | None:
    event = cx.req_string(o, "event", p)
    if event is None:
        return None
    if event not in _SYSTEM_EVENTS and not event.startswith(OPERATOR_EVENT_PREFIX):
        # A warning, not an error: a later Palyra may emit it, and the routine is harmless.
        cx.warn(
            (*p, "event"),
            f'no part of palyra emits the event "{event}", so this routine never runs'
            f"{hint(event, _SYSTEM_EVENTS)} (events: {', '.join(_SYSTEM_EVENTS)}, or"
            f" {OPERATOR_EVENT_PREFIX}<name> from palyra events emit)",
        )
    return SystemEventTrigger(event=event)


_SYSTEM_EVENTS = tuple(e.value for e in SystemEvent)


def _hook(cx: Checker, o: dict[str, Any], p: Path) -> Trigger | None:
    hook_id = cx.req_string(o, "hook_id", p)
    if hook_id is None:
        return None
    event = cx.opt_string(o, "event", p)
    return HookTrigger(hook_id=hook_id, event=event)


# kind → (its keys, its check). The order is the order messages list them in.
TRIGGER_KINDS: dict[
    str, tuple[frozenset[str], Callable[[Checker, dict[str, Any], Path], Trigger | None]]
] = {
    "schedule": (frozenset({"kind", "schedule"}), _schedule),
    "manual": (frozenset({"kind"}), _manual),
    "file_watch": (
        frozenset({"kind", "paths", "patterns", "ignore", "events", "recursive", "debounce_ms"}),
        _file_watch,
    ),
    "webhook": (
        frozenset({"kind", "secret_env", "secret_file", "require_timestamp"}),
        _webhook,
    ),
    "system_event": (frozenset({"kind", "event"}), _system_event),
    "hook": (frozenset({"kind", "hook_id", "event"}), _hook),
}
TRIGGER_KEYS = {kind: keys for kind, (keys, _) in TRIGGER_KINDS.items()}
_PARSE = {kind: check for kind, (_, check) in TRIGGER_KINDS.items()}
