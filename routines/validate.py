"""Parsing and validation of definitions.json (SPEC §2, §2.4).

The whole document is validated and *every* problem is reported, each with a JSON path and
a 1-based line and column (in characters). How it stays fast and small for 100 000 routines:

- the root object is walked by hand and the routines are parsed one at a time by the C
  scanner of the standard ``json`` module, validated into model objects and dropped, so the
  document never exists as one big tree of dicts (orjson would build it all at once, and
  peaks at several times the file size);
- findings are collected as (path, message) pairs; only when there are some is the text of
  the routines concerned walked again (``routines.jsonpos``) to turn paths into positions;
- cron expressions, zones, timestamps and paths are checked once per distinct value, and
  equal values (strings, schedules, policies) are shared between routines.

Duplicate keys inside one object (which JSON parsers resolve silently to the last one) are
found cheaply: the keys in the text are counted and compared with the keys validation saw;
only the routines whose counts differ are walked to find them.
"""

from __future__ import annotations

import difflib
import gc
import json
import os
import re
from array import array
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Final, NamedTuple

from routines import jsonpos
from routines.cron import CronError, parse_cron
from routines.jsonpos import Path
from routines.model import (
    DEFAULT_TIMEOUT_MS,
    ID_PATTERN,
    MAX_CATCH_UP_RUNS,
    MAX_FILE_BYTES,
    MAX_JITTER_MS,
    MAX_PROMPT_BYTES,
    MAX_ROUTINES,
    MIN_EVERY_INTERVAL_MS,
    SCHEMA_VERSION,
    Action,
    Approval,
    AtSchedule,
    CommandAction,
    Concurrency,
    CronSchedule,
    Definitions,
    Delivery,
    EverySchedule,
    FileEvent,
    FileWatchTrigger,
    HookTrigger,
    ManualTrigger,
    Misfire,
    MisfirePolicy,
    PromptAction,
    QuietHours,
    Retry,
    Routine,
    Schedule,
    ScheduleTrigger,
    SilentPolicy,
    SkillAction,
    SystemEventTrigger,
    Trigger,
    WebhookTrigger,
    canonical_enum,
    slugify,
)
from routines.timefmt import TimeFormatError, get_zone, parse_rfc3339

__all__ = [
    "Issue",
    "ValidationResult",
    "decode_document",
    "file_issue",
    "format_issue",
    "format_path",
    "parse_routine",
    "validate_text",
]

MAX_RETRY_ATTEMPTS: Final = 16
# Any duration beyond ten years is a typo, and would overflow date arithmetic downstream.
MAX_DURATION_MS: Final = 10 * 365 * 86_400_000


@dataclass(frozen=True)
class Issue:
    """One error or warning. ``line``/``column`` are 1-based (characters); 0 means unknown."""

    path: str
    line: int
    column: int
    message: str


@dataclass
class ValidationResult:
    """The outcome of validating a document: the definitions when there are no errors."""

    definitions: Definitions | None
    errors: list[Issue] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


def format_issue(filename: str, issue: Issue) -> str:
    """``file:line:column: path: message`` (the position and path are left out when unknown)."""
    out = filename
    if issue.line > 0:
        out += f":{issue.line}:{issue.column}"
    if issue.path:
        out += f": {issue.path}"
    return f"{out}: {issue.message}"


_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


def format_path(path: Iterable[str | int]) -> str:
    """``("routines", 1, "trigger")`` → ``routines[1].trigger`` (odd keys as ``["a b"]``)."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif _IDENT.fullmatch(part):
            out += f".{part}" if out else part
        else:
            out += f"[{json.dumps(part, ensure_ascii=False)}]"
    return out


def file_issue(message: str) -> Issue:
    """A file-level issue (unreadable, too large, not UTF-8): reported at 1:1 without a path."""
    return Issue(path="", line=1, column=1, message=message)


# --- tables ------------------------------------------------------------------------------

_MISSING: Final[Any] = object()

_ROOT_KEYS = frozenset({"schema_version", "routines"})
_ROUTINE_KEYS = frozenset(
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
_TRIGGER_KEYS: dict[str, frozenset[str]] = {
    "schedule": frozenset({"kind", "schedule"}),
    "manual": frozenset({"kind"}),
    "file_watch": frozenset(
        {"kind", "paths", "patterns", "ignore", "events", "recursive", "debounce_ms"}
    ),
    "webhook": frozenset({"kind", "secret_env"}),
    "system_event": frozenset({"kind", "event"}),
    "hook": frozenset({"kind", "hook_id", "event"}),
}
_SCHEDULE_KEYS: dict[str, frozenset[str]] = {
    "cron": frozenset({"type", "expr", "timezone"}),
    "every": frozenset({"type", "interval_ms", "anchor"}),
    "at": frozenset({"type", "at"}),
}
_ACTION_KEYS: dict[str, frozenset[str]] = {
    "command": frozenset({"kind", "argv", "shell", "cwd", "env", "timeout_ms"}),
    "prompt": frozenset({"kind", "prompt", "timeout_ms"}),
    "skill": frozenset({"kind", "skill_id", "args", "timeout_ms"}),
}
_MISFIRE_KEYS = frozenset({"policy", "grace_ms", "max_catch_up_runs"})
_RETRY_KEYS = frozenset({"max_attempts", "backoff_ms", "max_backoff_ms"})
_QUIET_KEYS = frozenset({"start", "end", "timezone"})
_DELIVERY_KEYS: dict[str, frozenset[str]] = {
    "logs_only": frozenset({"mode"}),
    "file": frozenset({"mode", "path"}),
    "channel": frozenset({"mode", "channel", "silent_policy", "failure_channel"}),
}
_ALL_DELIVERY_KEYS = frozenset().union(*_DELIVERY_KEYS.values())


def _enum_table(values: Iterable[Any]) -> dict[str, Any]:
    return {v.value: v for v in values}


_CONCURRENCY: dict[str, Concurrency] = _enum_table(Concurrency)
_MISFIRE_POLICY: dict[str, MisfirePolicy] = _enum_table(MisfirePolicy)
_APPROVAL: dict[str, Approval] = _enum_table(Approval)
_SILENT: dict[str, SilentPolicy] = _enum_table(SilentPolicy)
_FILE_EVENT: dict[str, FileEvent] = _enum_table(FileEvent)
_EVENT_ORDER = {e: i for i, e in enumerate(FileEvent)}
_ALL_EVENTS = tuple(FileEvent)

_ID_RE = re.compile(ID_PATTERN)
_ID_MATCH = _ID_RE.fullmatch
_HHMM_RE = re.compile(r"(?:[01][0-9]|2[0-3]):[0-5][0-9]")
_RFC3339_RE = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?"
    r"(?:[Zz]|[+-][0-9]{2}:[0-9]{2})"
)
_ENV_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

_DEFAULT_MISFIRE = Misfire()
_DEFAULT_RETRY = Retry()
_DEFAULT_DELIVERY = Delivery()


def _describe(v: object) -> str:
    """A JSON-ish rendering of a value for messages: ``4.0``, ``true``, ``"abc"``, ``an array``."""
    if v is None:
        return "null"
    if v is True:
        return "true"
    if v is False:
        return "false"
    t = type(v)
    if t is int or t is float:
        return repr(v)
    if t is str:
        s = str(v)
        shown = json.dumps(s[:60], ensure_ascii=False)
        return shown if len(s) <= 60 else shown[:-1] + '…"'
    if t is list:
        return "an array"
    if t is dict:
        return "an object"
    return repr(v)  # jsonpos.NonJsonConstant: NaN, Infinity


def _hint(word: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""


@lru_cache(maxsize=1)
def _zone_names() -> tuple[str, ...]:
    import zoneinfo

    return tuple(sorted(zoneinfo.available_timezones()))


class _Raw(NamedTuple):
    """A finding before its position is known."""

    path: Path  # reported
    message: str
    loc: Path | int  # where it is: a path to locate, or a known character offset
    at_key: bool  # at the key rather than the value
    related: Path | None  # a path whose line is appended to the message


class _Parser:
    """Validates parsed JSON values into model objects, collecting every problem."""

    def __init__(self, now_ms: int, env: Mapping[str, str], default_timezone: str) -> None:
        self.now_ms = now_ms
        self.env = env
        self.default_timezone = default_timezone
        self.errors: list[_Raw] = []
        self.warnings: list[_Raw] = []
        self.keys_seen = 0
        self._cron: dict[str, str | None] = {}
        self._zones: dict[str, str | None] = {}
        self._times: dict[str, int | str] = {}
        self._exists: dict[str, bool] = {}
        self._misfires: dict[tuple[MisfirePolicy, int, int], Misfire] = {}
        self._retries: dict[tuple[int, int, int], Retry] = {}
        self._strings: dict[str, str] = {}
        self.routines: list[Routine] = []
        # Equal values are shared between routines: less memory, fewer constructions.
        self._schedules: dict[tuple[object, ...], Schedule] = {}
        self._schedule_triggers: dict[int, ScheduleTrigger] = {}
        self.starts = array("q")  # offset of each routine in the text
        self.key_counts = array("q")  # keys seen inside each routine
        self.array_span = (0, 0)

    # -- reporting ------------------------------------------------------------------------

    def err(self, path: Path, message: str, *, at_key: bool = False) -> None:
        self.errors.append(_Raw(path, message, path, at_key, None))

    def err_at(self, offset: int, path: Path, message: str) -> None:
        self.errors.append(_Raw(path, message, offset, False, None))

    def warn(self, path: Path, message: str) -> None:
        self.warnings.append(_Raw(path, message, path, False, None))

    def missing(self, obj_path: Path, key: str, extra: str = "") -> None:
        self.errors.append(
            _Raw((*obj_path, key), f'missing required key "{key}"{extra}', obj_path, False, None)
        )

    def unknown_keys(
        self,
        obj: dict[str, Any],
        allowed: frozenset[str],
        p: Path,
        *,
        other: Mapping[str, frozenset[str]] | None = None,
        what: str = "",
    ) -> None:
        for key in obj:
            if key in allowed:
                continue
            msg = f'unknown key "{key}"'
            owners = [k for k, keys in (other or {}).items() if key in keys]
            if owners:
                msg += f" ({what}; it belongs to {' / '.join(owners)})"
            else:
                msg += _hint(key, allowed)
            self.err((*p, key), msg, at_key=True)

    def intern(self, s: str) -> str:
        """Share equal strings (zones, kinds, patterns) between routines to save memory."""
        return self._strings.setdefault(s, s)

    # -- typed getters --------------------------------------------------------------------

    def obj(self, v: Any, p: Path) -> dict[str, Any] | None:
        if type(v) is dict:
            self.keys_seen += len(v)
            return v
        self.err(p, f"must be an object, got {_describe(v)}")
        return None

    def string(self, v: Any, p: Path, *, intern: bool = True) -> str | None:
        """A non-empty string without NUL; equal strings are shared unless ``intern=False``."""
        if type(v) is str:
            if v:
                if "\x00" in v:
                    self.err(p, "must not contain NUL characters")
                    return None
                return self._strings.setdefault(v, v) if intern else v
            self.err(p, "must not be empty")
            return None
        self.err(p, f"must be a string, got {_describe(v)}")
        return None

    def opt_string(
        self, o: dict[str, Any], key: str, p: Path, *, intern: bool = True
    ) -> str | None:
        v = o.get(key, _MISSING)
        if v is _MISSING:
            return None
        if v is None:
            self.null(p, key)
            return None
        return self.string(v, (*p, key), intern=intern)

    def req_string(self, o: dict[str, Any], key: str, p: Path, extra: str = "") -> str | None:
        """A required string key: reported missing (with ``extra`` as the hint) or invalid."""
        v = o.get(key, _MISSING)
        if v is _MISSING:
            self.missing(p, key, extra)
            return None
        return self.string(v, (*p, key))

    def null(self, p: Path, key: str) -> None:
        self.err((*p, key), f'null is not allowed (omit "{key}" to use the default)')

    def ms(
        self,
        o: dict[str, Any],
        key: str,
        p: Path,
        default: int,
        lo: int = 0,
        hi: int = MAX_DURATION_MS,
    ) -> int:
        """A ``*_ms`` duration: a non-negative integer (``4.0`` and ``true`` are not)."""
        v = o.get(key, _MISSING)
        if v is _MISSING:
            return default
        if type(v) is int and lo <= v <= hi:
            return v
        if v is None:
            self.null(p, key)
        elif type(v) is not int or v < 0:
            self.err(
                (*p, key), f"must be a non-negative integer (milliseconds), got {_describe(v)}"
            )
        elif v < lo:
            self.err((*p, key), f"must be at least {lo} ms, got {v}")
        else:
            self.err((*p, key), f"must be at most {hi} ms, got {v}")
        return default

    def count(self, o: dict[str, Any], key: str, p: Path, default: int, lo: int, hi: int) -> int:
        v = o.get(key, _MISSING)
        if v is _MISSING:
            return default
        if type(v) is int and lo <= v <= hi:
            return v
        if v is None:
            self.null(p, key)
        elif type(v) is not int:
            self.err((*p, key), f"must be an integer, got {_describe(v)}")
        else:
            self.err((*p, key), f"must be between {lo} and {hi}, got {v}")
        return default

    def boolean(self, o: dict[str, Any], key: str, p: Path, default: bool) -> bool:
        v = o.get(key, _MISSING)
        if v is _MISSING:
            return default
        if v is True or v is False:
            return bool(v)
        if v is None:
            self.null(p, key)
        else:
            self.err((*p, key), f"must be true or false, got {_describe(v)}")
        return default

    def enum(
        self, o: dict[str, Any], key: str, p: Path, table: Mapping[str, Any], default: Any
    ) -> Any:
        v = o.get(key, _MISSING)
        if v is _MISSING:
            return default
        got = table.get(v) if type(v) is str else None
        if got is not None:
            return got
        if type(v) is str:
            got = table.get(canonical_enum(v))
            if got is not None:
                return got
            self.err(
                (*p, key),
                f"unknown value {_describe(v)} (expected one of {', '.join(table)})"
                + _hint(canonical_enum(v.lower()), table),
            )
        elif v is None:
            self.null(p, key)
        else:
            self.err((*p, key), f"must be a string, got {_describe(v)}")
        return default

    def str_list(
        self,
        o: dict[str, Any],
        key: str,
        p: Path,
        default: tuple[str, ...],
        *,
        required: bool = False,
        nonempty: bool = False,
    ) -> tuple[str, ...] | None:
        v = o.get(key, _MISSING)
        if v is _MISSING:
            if required:
                self.missing(p, key)
                return None
            return default
        kp = (*p, key)
        if type(v) is not list:
            if v is None and not required:
                self.null(p, key)
            else:
                self.err(kp, f"must be an array of strings, got {_describe(v)}")
            return None
        if nonempty and not v:
            self.err(kp, "must not be empty")
            return None
        try:
            bad = "\x00" in "".join(v)  # TypeError when an item is not a string
        except TypeError:
            bad = True
        if not bad:
            setdefault = self._strings.setdefault
            return tuple(map(setdefault, v, v))
        for i, item in enumerate(v):
            if type(item) is not str:
                self.err((*kp, i), f"must be a string, got {_describe(item)}")
            elif "\x00" in item:
                self.err((*kp, i), "must not contain NUL characters")
        return None

    # -- cached checks --------------------------------------------------------------------

    def zone(self, name: str) -> str | None:
        """None when ``name`` is a known zone, else the error message."""
        try:
            return self._zones[name]
        except KeyError:
            pass
        msg: str | None = None
        try:
            get_zone(name)
        except TimeFormatError:
            msg = f"unknown time zone {_describe(name)}" + _hint(name, _zone_names())
        self._zones[name] = msg
        return msg

    def cron(self, expr: str) -> str | None:
        try:
            return self._cron[expr]
        except KeyError:
            pass
        msg: str | None = None
        try:
            parse_cron(expr)
        except CronError as exc:
            msg = str(exc)
        self._cron[expr] = msg
        return msg

    def instant(self, text: str) -> int | str:
        """Unix ms of an RFC 3339 timestamp, or the error message."""
        try:
            return self._times[text]
        except KeyError:
            pass
        got: int | str
        if _RFC3339_RE.fullmatch(text):
            try:
                got = parse_rfc3339(text)
            except TimeFormatError:
                got = f"invalid RFC 3339 timestamp {_describe(text)}"
        elif _RFC3339_RE.fullmatch(text + "Z") or _RFC3339_RE.fullmatch(text + ":00Z"):
            got = (
                f"timestamp {_describe(text)} has no UTC offset "
                '(RFC 3339 needs one, e.g. "Z" or "+02:00")'
            )
        else:
            got = (
                f"invalid RFC 3339 timestamp {_describe(text)} "
                '(expected e.g. "2026-03-29T09:00:00+02:00")'
            )
        self._times[text] = got
        return got

    def path_exists(self, path: str) -> bool:
        try:
            return self._exists[path]
        except KeyError:
            pass
        got = os.path.exists(os.path.expanduser(path))
        self._exists[path] = got
        return got

    # -- document -------------------------------------------------------------------------

    def document(self, text: str) -> Definitions | None:
        """Validate a whole document. The root object is walked by hand and each routine is
        parsed, validated and dropped in turn, so memory holds one routine's JSON at a time.
        Raises JsonSyntaxError on invalid JSON."""
        rd = jsonpos.Reader(text)
        pos = rd.ws(0)
        if pos >= len(text):
            raise rd.error("the document is empty (expected a JSON object)", pos)
        if text[pos] != "{":
            val, end = rd.value(pos)
            end = rd.ws(end)
            if end < len(text):
                raise rd.error("unexpected data after the JSON document", end)
            self.err_at(pos, (), f"the document must be a JSON object, got {_describe(val)}")
            return None
        root_at = pos
        seen: set[str] = set()
        pos = rd.ws(pos + 1)
        if not text.startswith("}", pos):
            while True:
                if not text.startswith('"', pos):
                    raise rd.error(_expected_key(text, pos), pos)
                key_at = pos
                key, pos = rd.string(pos)
                pos = rd.ws(pos)
                if not text.startswith(":", pos):
                    raise rd.error("expected ':' after the key", pos)
                pos = value_at = rd.ws(pos + 1)
                first = key not in seen
                seen.add(key)
                if not first:
                    self.err_at(key_at, (key,), f'duplicate key "{key}"' + _DUP_KEY_NOTE)
                if key == "routines" and first and text.startswith("[", pos):
                    pos = self.routines_array(rd, pos)
                else:
                    val, pos = rd.value(pos)
                    if not first:
                        pass
                    elif key == "schema_version":
                        if type(val) is not int or val != SCHEMA_VERSION:
                            self.err_at(
                                value_at, (key,), f"must be {SCHEMA_VERSION}, got {_describe(val)}"
                            )
                    elif key == "routines":
                        self.err_at(
                            value_at, (key,), f"must be an array of routines, got {_describe(val)}"
                        )
                    else:
                        self.err_at(key_at, (key,), f'unknown key "{key}"' + _hint(key, _ROOT_KEYS))
                pos = rd.ws(pos)
                if text.startswith(",", pos):
                    pos = rd.ws(pos + 1)
                    continue
                if text.startswith("}", pos):
                    break
                raise rd.error("expected ',' or '}' after an object member", pos)
        end = rd.ws(pos + 1)
        if end < len(text):
            raise rd.error("unexpected data after the JSON document", end)
        if "schema_version" not in seen:
            self.err_at(
                root_at,
                ("schema_version",),
                f'missing required key "schema_version" (add "schema_version": {SCHEMA_VERSION})',
            )
        if self.errors:
            return None
        return Definitions(routines=tuple(self.routines))

    def routines_array(self, rd: jsonpos.Reader, pos: int) -> int:
        """Validate the routines array starting at ``pos``; returns the offset after it."""
        text = rd.text
        array_at = pos
        first_at: dict[str, int] = {}
        starts = self.starts
        key_counts = self.key_counts
        out = self.routines
        pos = rd.ws(pos + 1)
        i = 0
        if not text.startswith("]", pos):
            while True:
                item, end = rd.value(pos)
                starts.append(pos)
                n_errors = len(self.errors)
                keys_before = self.keys_seen
                r = self.routine(item, ("routines", i))
                if len(self.errors) != n_errors:  # partly visited: count its keys in full
                    self.keys_seen = keys_before + _count_value_keys(item)
                key_counts.append(self.keys_seen - keys_before)
                if r is not None:
                    out.append(r)
                    rid: object = r.id
                elif type(item) is dict:  # an invalid routine's id still counts
                    rid = item.get("id")
                else:
                    rid = None
                if type(rid) is str:
                    j = first_at.setdefault(rid, i)
                    if j != i:
                        p: Path = ("routines", i, "id")
                        self.errors.append(
                            _Raw(
                                p,
                                f'duplicate id "{rid}" (first defined at routines[{j}]',
                                p,
                                False,
                                ("routines", j, "id"),
                            )
                        )
                i += 1
                pos = rd.ws(end)
                if text.startswith(",", pos):
                    pos = rd.ws(pos + 1)
                    if text.startswith("]", pos):
                        raise rd.error("a trailing comma is not allowed", pos)
                    continue
                if text.startswith("]", pos):
                    break
                raise rd.error("expected ',' or ']' after an array element", pos)
        self.array_span = (array_at, pos + 1)
        if i > MAX_ROUTINES:
            self.err_at(
                array_at, ("routines",), f"too many routines: {i} (the limit is {MAX_ROUTINES})"
            )
        return pos + 1

    def duplicate_keys(self, text: str) -> None:
        """Report repeated keys inside routines. Cheap when there are none: the keys in the
        text are counted and compared with the keys validation saw; only routines whose
        counts differ are walked."""
        if not self.starts:
            return
        a, b = self.array_span
        # The text never holds fewer keys than validation saw, and escaped quotes can only
        # make the first estimate bigger: equality there settles it without the exact count.
        if _count_text_keys(text, a, b, exact=False) == self.keys_seen:
            return
        if _count_text_keys(text, a, b) == self.keys_seen:
            return
        bounds = [*self.starts, b]
        for i in range(len(self.starts)):
            if _count_text_keys(text, bounds[i], bounds[i + 1]) == self.key_counts[i]:
                continue
            _, dups = jsonpos.locate_offsets(text, [], start=bounds[i], find_duplicates=True)
            for path, offset in dups:
                self.errors.append(
                    _Raw(
                        ("routines", i, *path),
                        f'duplicate key "{path[-1]}"' + _DUP_KEY_NOTE,
                        offset,
                        True,
                        None,
                    )
                )

    # -- routine --------------------------------------------------------------------------

    def routine(self, obj: Any, p: Path) -> Routine | None:
        # The hot path of a big file: common cases are checked inline, before any call.
        if type(obj) is not dict:
            self.err(p, f"must be an object, got {_describe(obj)}")
            return None
        o: dict[str, Any] = obj
        self.keys_seen += len(o)
        start = len(self.errors)
        if not o.keys() <= _ROUTINE_KEYS:
            self.unknown_keys(o, _ROUTINE_KEYS, p)

        rid = o.get("id")
        if type(rid) is not str or _ID_MATCH(rid) is None:
            rid = self.routine_id(o, p)
        trigger: Trigger | None = None
        v = o.get("trigger", _MISSING)
        if v is _MISSING:
            self.missing(p, "trigger")
        else:
            trigger = self.trigger(v, (*p, "trigger"))
        action: Action | None = None
        v = o.get("action", _MISSING)
        if v is _MISSING:
            self.missing(p, "action")
        else:
            action = self.action(v, (*p, "action"))

        # Absent keys (the common case) take their defaults without a method call.
        name = self.opt_string(o, "name", p, intern=False) if "name" in o else None
        enabled = self.boolean(o, "enabled", p, True) if "enabled" in o else True
        concurrency = (
            self.enum(o, "concurrency", p, _CONCURRENCY, Concurrency.FORBID)
            if "concurrency" in o
            else Concurrency.FORBID
        )
        misfire = self.misfire(o, p) if "misfire" in o else _DEFAULT_MISFIRE
        jitter = self.ms(o, "jitter_ms", p, 0, 0, MAX_JITTER_MS) if "jitter_ms" in o else 0
        retry = self.retry(o, p) if "retry" in o else _DEFAULT_RETRY
        quiet = self.quiet_hours(o, p) if "quiet_hours" in o else None
        approval = (
            self.enum(o, "approval", p, _APPROVAL, Approval.NONE)
            if "approval" in o
            else Approval.NONE
        )
        cooldown = self.ms(o, "cooldown_ms", p, 0) if "cooldown_ms" in o else 0
        delivery = self.delivery(o, p) if "delivery" in o else _DEFAULT_DELIVERY
        tags = self.str_list(o, "tags", p, ()) if "tags" in o else ()

        if len(self.errors) != start or rid is None or trigger is None or action is None:
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

    def routine_id(self, o: dict[str, Any], p: Path) -> str | None:
        v = o.get("id", _MISSING)
        if v is _MISSING:
            self.missing(p, "id")
            return None
        if type(v) is not str:
            self.err((*p, "id"), f"must be a string, got {_describe(v)}")
            return None
        if _ID_RE.fullmatch(v) is None:
            self.err(
                (*p, "id"),
                f"invalid id {_describe(v)}: ids are 1-128 characters of a-z, 0-9, '.', '_', '-'"
                f' starting with a letter or digit (try "{slugify(v)}")',
            )
            return None
        return v

    # -- triggers -------------------------------------------------------------------------

    def tagged(
        self, v: Any, p: Path, key: str, table: Mapping[str, frozenset[str]], noun: str
    ) -> tuple[dict[str, Any], str] | None:
        """An object whose ``key`` (kind/type) picks its allowed keys from ``table``: the
        object and its tag, with wrong types, unknown tags and foreign keys reported."""
        if type(v) is not dict:
            self.obj(v, p)  # reports the wrong type
            return None
        o: dict[str, Any] = v
        self.keys_seen += len(o)
        tag = o.get(key)
        if type(tag) is not str or tag not in table:
            tag = self.kind(o, key, p, table)
            if tag is None:
                return None
        allowed = table[tag]
        if not o.keys() <= allowed:
            self.unknown_keys(o, allowed, p, other=table, what=f'not used by {noun} "{tag}"')
        return o, tag

    def kind(self, o: dict[str, Any], key: str, p: Path, table: Mapping[str, Any]) -> str | None:
        v = o.get(key, _MISSING)
        if type(v) is str and v in table:
            return v
        if v is _MISSING:
            self.missing(p, key, f" (one of {', '.join(table)})")
            return None
        if type(v) is not str:
            self.err((*p, key), f"must be a string, got {_describe(v)}")
            return None
        if v in table:
            return v
        c = canonical_enum(v)
        if c in table:
            return c
        self.err(
            (*p, key),
            f"unknown {key} {_describe(v)} (expected one of {', '.join(table)})"
            + _hint(canonical_enum(v.lower()), table),
        )
        return None

    def trigger(self, v: Any, p: Path) -> Trigger | None:
        tagged = self.tagged(v, p, "kind", _TRIGGER_KEYS, "trigger kind")
        if tagged is None:
            return None
        o, kind = tagged
        if kind == "schedule":
            s = o.get("schedule", _MISSING)
            if s is _MISSING:
                self.missing(p, "schedule")
                return None
            sched = self.schedule(s, (*p, "schedule"))
            if sched is None:
                return None
            # Schedules are shared (see schedule()), so their identity keys their trigger.
            trig = self._schedule_triggers.get(id(sched))
            if trig is None:
                trig = self._schedule_triggers[id(sched)] = ScheduleTrigger(schedule=sched)
            return trig
        if kind == "manual":
            return ManualTrigger()
        if kind == "file_watch":
            return self.file_watch(o, p)
        if kind == "webhook":
            return self.webhook(o, p)
        if kind == "system_event":
            event = self.req_string(o, "event", p)
            return None if event is None else SystemEventTrigger(event=event)
        # hook
        hook_id = self.req_string(o, "hook_id", p)
        if hook_id is None:
            return None
        event = self.opt_string(o, "event", p)
        return None if hook_id is None else HookTrigger(hook_id=hook_id, event=event)

    def schedule(self, v: Any, p: Path) -> Schedule | None:
        tagged = self.tagged(v, p, "type", _SCHEDULE_KEYS, "schedule type")
        if tagged is None:
            return None
        o, typ = tagged
        if typ == "cron":
            expr = self.req_string(o, "expr", p)
            if expr is not None:
                msg = self.cron(expr)
                if msg is not None:
                    self.err((*p, "expr"), msg)
                    expr = None
            tz = o.get("timezone", _MISSING)
            if tz is _MISSING:
                tz = self.default_timezone
                msg = self.zone(tz)
                if msg is not None:
                    self.missing(
                        p,
                        "timezone",
                        f" (the default time zone {_describe(tz)} from palyra.toml is unknown)",
                    )
                    return None
            elif tz is None:
                self.null(p, "timezone")
                return None
            else:
                tz = self.string(tz, (*p, "timezone"))
                if tz is None:
                    return None
                msg = self.zone(tz)
                if msg is not None:
                    self.err((*p, "timezone"), msg)
                    return None
            if expr is None:
                return None
            key: tuple[object, ...] = ("cron", expr, tz)
            cron = self._schedules.get(key)
            if cron is None:
                cron = self._schedules[key] = CronSchedule(expr=expr, timezone=tz)
            return cron
        if typ == "every":
            n = len(self.errors)
            if "interval_ms" not in o:
                self.missing(p, "interval_ms")
            interval = self.ms(o, "interval_ms", p, 0, MIN_EVERY_INTERVAL_MS)
            anchor = self.opt_string(o, "anchor", p)
            anchor_ms: int | None = None
            if anchor is not None:
                got = self.instant(anchor)
                if isinstance(got, str):
                    self.err((*p, "anchor"), got)
                else:
                    anchor_ms = got
            if len(self.errors) != n:
                return None
            key = ("every", interval, anchor)
            every = self._schedules.get(key)
            if every is None:
                every = self._schedules[key] = EverySchedule(
                    interval_ms=interval, anchor=anchor, anchor_unix_ms=anchor_ms
                )
            return every
        # at
        a = o.get("at", _MISSING)
        if a is _MISSING:
            self.missing(p, "at")
            return None
        at = self.string(a, (*p, "at"))
        if at is None:
            return None
        got = self.instant(at)
        if isinstance(got, str):
            self.err((*p, "at"), got)
            return None
        if got < self.now_ms:
            self.warn((*p, "at"), f"{_describe(at)} is in the past; this schedule will not fire")
        at_key = ("at", at)
        sched = self._schedules.get(at_key)
        if sched is None:
            sched = self._schedules[at_key] = AtSchedule(at=at, at_unix_ms=got)
        return sched

    def file_watch(self, o: dict[str, Any], p: Path) -> FileWatchTrigger | None:
        n = len(self.errors)
        paths = self.str_list(o, "paths", p, (), required=True, nonempty=True)
        if paths is not None:
            for i, path in enumerate(paths):
                if not path:
                    self.err((*p, "paths", i), "must not be empty")
                elif not (path.startswith("/") or path == "~" or path.startswith("~")):
                    self.err(
                        (*p, "paths", i),
                        f"{_describe(path)} is relative; use an absolute path or one starting "
                        "with ~ (the daemon's working directory is not yours)",
                    )
                elif not self.path_exists(path):
                    self.warn((*p, "paths", i), f"{_describe(path)} does not exist (yet)")
        patterns = self.str_list(o, "patterns", p, ("*",))
        ignore = self.str_list(o, "ignore", p, ())
        events = self.events(o, p)
        recursive = self.boolean(o, "recursive", p, False)
        debounce = self.ms(o, "debounce_ms", p, 500)
        if len(self.errors) != n or paths is None or patterns is None or ignore is None:
            return None
        return FileWatchTrigger(
            paths=paths,
            patterns=patterns,
            ignore=ignore,
            events=events,
            recursive=recursive,
            debounce_ms=debounce,
        )

    def events(self, o: dict[str, Any], p: Path) -> tuple[FileEvent, ...]:
        v = o.get("events", _MISSING)
        if v is _MISSING:
            return _ALL_EVENTS
        raw = self.str_list(o, "events", p, (), nonempty=True)
        if raw is None:
            return _ALL_EVENTS
        got: set[FileEvent] = set()
        for i, name in enumerate(raw):
            e = _FILE_EVENT.get(name) or _FILE_EVENT.get(canonical_enum(name))
            if e is None:
                self.err(
                    (*p, "events", i),
                    f"unknown event {_describe(name)} (expected one of "
                    f"{', '.join(_FILE_EVENT)})" + _hint(name, _FILE_EVENT),
                )
            else:
                got.add(e)
        return tuple(sorted(got, key=_EVENT_ORDER.__getitem__))

    def webhook(self, o: dict[str, Any], p: Path) -> WebhookTrigger | None:
        v = o.get("secret_env", _MISSING)
        if v is _MISSING:
            self.missing(p, "secret_env")
            return None
        name = self.string(v, (*p, "secret_env"))
        if name is None:
            return None
        if _ENV_NAME_RE.fullmatch(name) is None:
            self.err((*p, "secret_env"), f"{_describe(name)} is not an environment variable name")
            return None
        if name not in self.env:
            self.warn(
                (*p, "secret_env"),
                f'environment variable "{name}" is not set; webhook calls will be rejected '
                "until the daemon has it",
            )
        return WebhookTrigger(secret_env=name)

    # -- actions --------------------------------------------------------------------------

    def action(self, v: Any, p: Path) -> Action | None:
        tagged = self.tagged(v, p, "kind", _ACTION_KEYS, "action kind")
        if tagged is None:
            return None
        o, kind = tagged
        n = len(self.errors)
        timeout = (
            self.ms(o, "timeout_ms", p, DEFAULT_TIMEOUT_MS, 1)
            if "timeout_ms" in o
            else (DEFAULT_TIMEOUT_MS)
        )
        if kind == "command":
            argv = o.get("argv", _MISSING)
            shell = o.get("shell", _MISSING)
            argv_t: tuple[str, ...] | None = None
            shell_s: str | None = None
            if argv is _MISSING and shell is _MISSING:
                self.missing(p, "argv", ' (a command needs "argv" (a list) or "shell" (a string))')
            elif argv is not _MISSING and shell is not _MISSING:
                self.err(
                    (*p, "shell"),
                    'give either "argv" or "shell", not both',
                    at_key=True,
                )
            elif argv is not _MISSING:
                argv_t = self.str_list(o, "argv", p, (), required=True, nonempty=True)
                if argv_t is not None and not argv_t[0]:
                    self.err((*p, "argv", 0), "the program name must not be empty")
            else:
                shell_s = self.string(shell, (*p, "shell"))
            cwd = self.opt_string(o, "cwd", p) if "cwd" in o else None
            env = self.env_map(o, p) if "env" in o else ()
            if len(self.errors) != n:
                return None
            return CommandAction(argv=argv_t, shell=shell_s, cwd=cwd, env=env, timeout_ms=timeout)
        if kind == "prompt":
            prompt = self.req_string(o, "prompt", p)
            if prompt is not None and len(prompt) * 4 > MAX_PROMPT_BYTES:
                size = len(prompt.encode("utf-8", "surrogatepass"))
                if size > MAX_PROMPT_BYTES:
                    self.err(
                        (*p, "prompt"),
                        f"is {size} bytes; the limit is {MAX_PROMPT_BYTES} bytes (16 KiB)",
                    )
            if len(self.errors) != n or prompt is None:
                return None
            return PromptAction(prompt=prompt, timeout_ms=timeout)
        # skill
        skill_id = self.req_string(o, "skill_id", p)
        args = self.str_list(o, "args", p, ())
        if len(self.errors) != n or skill_id is None or args is None:
            return None
        return SkillAction(skill_id=skill_id, args=args, timeout_ms=timeout)

    def env_map(self, o: dict[str, Any], p: Path) -> tuple[tuple[str, str], ...]:
        v = o.get("env", _MISSING)
        if v is _MISSING:
            return ()
        if v is None:
            self.null(p, "env")
            return ()
        ep = (*p, "env")
        e = self.obj(v, ep)
        if e is None:
            return ()
        if not e:
            return ()
        for name, value in e.items():
            if not name or "=" in name or "\x00" in name:
                self.err(
                    (*ep, name), f"invalid environment variable name {_describe(name)}", at_key=True
                )
            elif type(value) is not str:
                self.err((*ep, name), f"must be a string, got {_describe(value)}")
            elif "\x00" in value:
                self.err((*ep, name), "must not contain NUL characters")
        st = self._strings
        return tuple(sorted((st.setdefault(k, k), st.setdefault(v, v)) for k, v in e.items()))

    # -- policies -------------------------------------------------------------------------

    def policy_obj(self, o: dict[str, Any], key: str, p: Path) -> dict[str, Any] | None:
        v = o.get(key, _MISSING)
        if v is _MISSING:
            return None
        if v is None:
            self.null(p, key)
            return None
        return self.obj(v, (*p, key))

    def misfire(self, o: dict[str, Any], p: Path) -> Misfire:
        m = self.policy_obj(o, "misfire", p)
        if m is None:
            return _DEFAULT_MISFIRE
        mp = (*p, "misfire")
        if not m.keys() <= _MISFIRE_KEYS:
            self.unknown_keys(m, _MISFIRE_KEYS, mp)
        key = (
            self.enum(m, "policy", mp, _MISFIRE_POLICY, MisfirePolicy.SKIP),
            self.ms(m, "grace_ms", mp, 60_000),
            self.count(m, "max_catch_up_runs", mp, 1, 1, MAX_CATCH_UP_RUNS),
        )
        got = self._misfires.get(key)
        if got is None:
            got = self._misfires[key] = Misfire(*key)
        return got

    def retry(self, o: dict[str, Any], p: Path) -> Retry:
        r = self.policy_obj(o, "retry", p)
        if r is None:
            return _DEFAULT_RETRY
        rp = (*p, "retry")
        if not r.keys() <= _RETRY_KEYS:
            self.unknown_keys(r, _RETRY_KEYS, rp)
        key = (
            self.count(r, "max_attempts", rp, 1, 1, MAX_RETRY_ATTEMPTS),
            self.ms(r, "backoff_ms", rp, 1_000),
            self.ms(r, "max_backoff_ms", rp, 3_600_000),
        )
        got = self._retries.get(key)
        if got is None:
            got = self._retries[key] = Retry(*key)
        return got

    def quiet_hours(self, o: dict[str, Any], p: Path) -> QuietHours | None:
        q = self.policy_obj(o, "quiet_hours", p)
        if q is None:
            return None
        qp = (*p, "quiet_hours")
        if not q.keys() <= _QUIET_KEYS:
            self.unknown_keys(q, _QUIET_KEYS, qp)
        n = len(self.errors)
        ends: list[str] = []
        for key in ("start", "end"):
            v = q.get(key, _MISSING)
            if v is _MISSING:
                self.missing(qp, key, ' ("HH:MM")')
            elif type(v) is not str or _HHMM_RE.fullmatch(v) is None:
                self.err((*qp, key), f'must be "HH:MM" from 00:00 to 23:59, got {_describe(v)}')
            else:
                ends.append(v)
        tz = self.opt_string(q, "timezone", qp)
        if tz is not None:
            msg = self.zone(tz)
            if msg is not None:
                self.err((*qp, "timezone"), msg)
        if len(self.errors) != n:
            return None
        return QuietHours(
            start=self.intern(ends[0]),
            end=self.intern(ends[1]),
            timezone=None if tz is None else self.intern(tz),
        )

    def delivery(self, o: dict[str, Any], p: Path) -> Delivery:
        d = self.policy_obj(o, "delivery", p)
        if d is None:
            return _DEFAULT_DELIVERY
        dp = (*p, "delivery")
        mode = "logs_only"
        if "mode" in d:
            got = self.kind(d, "mode", dp, _DELIVERY_KEYS)
            if got is None:
                return _DEFAULT_DELIVERY
            mode = got
        allowed = _DELIVERY_KEYS[mode]
        if not d.keys() <= allowed:
            for key in d:
                if key in allowed:
                    continue
                if key in _ALL_DELIVERY_KEYS:
                    self.err(
                        (*dp, key),
                        f'"{key}" is not used by delivery mode "{mode}"',
                        at_key=True,
                    )
                else:
                    self.err(
                        (*dp, key),
                        f'unknown key "{key}"' + _hint(key, _ALL_DELIVERY_KEYS),
                        at_key=True,
                    )
        if mode == "logs_only":
            return _DEFAULT_DELIVERY
        if mode == "file":
            path = self.req_string(d, "path", dp, ' (delivery mode "file" writes results to it)')
            return _DEFAULT_DELIVERY if path is None else Delivery(mode="file", path=path)
        channel = self.req_string(
            d, "channel", dp, ' (delivery mode "channel" needs a channel name)'
        )
        silent = self.enum(d, "silent_policy", dp, _SILENT, SilentPolicy.NOISY)
        failure = self.opt_string(d, "failure_channel", dp)
        if channel is None:
            return _DEFAULT_DELIVERY
        return Delivery(
            mode="channel",
            channel=channel,
            silent_policy=silent,
            failure_channel=failure,
        )


def _expected_key(text: str, pos: int) -> str:
    if text.startswith("}", pos):
        return "a trailing comma is not allowed"
    return "expected a key in double quotes"


# --- positions ---------------------------------------------------------------------------

_DUP_KEY_NOTE = " (only the last value would count; remove the others)"
_KEY_END_WS = re.compile(r'"[ \t\n\r]+:')
_ESCAPED_KEY_END = re.compile(r'(?<!\\)(?:\\\\)*\\"[ \t\n\r]*:')


def _count_text_keys(text: str, start: int, end: int, *, exact: bool = True) -> int:
    """The number of object keys in a *valid* JSON text slice: every closing quote followed
    by ':' ends a key, and a quote inside a string is escaped (odd run of backslashes).
    With ``exact=False`` escaped quotes followed by ':' are counted too (an upper bound)."""
    n = text.count('":', start, end) + len(_KEY_END_WS.findall(text, start, end))
    if exact and text.find('\\"', start, end) >= 0:
        n -= len(_ESCAPED_KEY_END.findall(text, start, end))
    return n


def _count_value_keys(value: object) -> int:
    """The number of object keys anywhere inside a parsed JSON value."""
    n = 0
    stack = [value]
    while stack:
        v = stack.pop()
        if type(v) is dict:
            n += len(v)
            stack.extend(v.values())
        elif type(v) is list:
            stack.extend(v)
    return n


def _issues(
    text: str | None,
    raws: list[_Raw],
    starts: Sequence[int] | None,
    offsets_out: list[int] | None = None,
) -> list[Issue]:
    """Raw findings → Issues with line/column (0:0 without text), in document order.

    Paths into ``routines[i]`` are located by walking only that routine's text (its offset
    is in ``starts``), so reporting a few errors in a huge file stays cheap.
    """
    if text is None:
        return [
            Issue(format_path(r.path), 0, 0, r.message + (")" if r.related else "")) for r in raws
        ]
    locs: list[tuple[Path | int, bool]] = [(r.loc, r.at_key) for r in raws]
    related = [r.related for r in raws if r.related is not None]
    locs += [(rp, False) for rp in related]
    offsets = [0] * len(locs)
    groups: dict[int, list[tuple[int, Path, bool]]] = {}
    for n, (loc, at_key) in enumerate(locs):
        if isinstance(loc, int):
            offsets[n] = loc
        elif starts is not None and len(loc) >= 2 and loc[0] == "routines":
            i = loc[1]
            if isinstance(i, int) and 0 <= i < len(starts):
                groups.setdefault(starts[i], []).append((n, loc[2:], at_key))
        else:
            groups.setdefault(-1, []).append((n, loc, at_key))
    for start, items in groups.items():
        try:
            found, _ = jsonpos.locate_offsets(
                text, [(p, k) for _, p, k in items], start=None if start < 0 else start
            )
        except jsonpos.JsonSyntaxError:  # the text was parsed already; never expected
            found = [max(start, 0)] * len(items)
        for (n, _, _), off in zip(items, found, strict=True):
            offsets[n] = off
    lc = jsonpos.line_columns(text, offsets)
    related_line = {rp: lc[off][0] for rp, off in zip(related, offsets[len(raws) :], strict=True)}
    out: list[Issue] = []
    for r, off in zip(raws, offsets, strict=False):
        msg = r.message
        if r.related is not None:
            msg += f", line {related_line[r.related]})"
        line, col = lc[off]
        out.append(Issue(format_path(r.path), line, col, msg))
    out.sort(key=lambda i: (i.line, i.column))
    return out


# --- public entry points -----------------------------------------------------------------


def decode_document(data: bytes | str) -> str | Issue:
    """The text of a document, or the file-level issue (too large, not UTF-8) that prevents
    reading it. A leading byte order mark is dropped (editors do not show it either)."""
    if isinstance(data, bytes):
        if len(data) > MAX_FILE_BYTES:
            return _too_large(len(data))
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as exc:
            return file_issue(
                f"file is not valid UTF-8 (invalid byte 0x{data[exc.start]:02x} at byte "
                f"offset {exc.start})"
            )
    else:
        text = data
        if not text.isascii():
            try:
                size = len(text.encode("utf-8"))
            except UnicodeEncodeError as exc:
                return file_issue(
                    f"text is not valid Unicode (unpaired surrogate at character {exc.start})"
                )
        else:
            size = len(text)
        if size > MAX_FILE_BYTES:
            return _too_large(size)
    if text.startswith("\ufeff"):
        text = text[1:]
    return text


def _too_large(size: int) -> Issue:
    return file_issue(f"file is {size} bytes; the limit is {MAX_FILE_BYTES} bytes (64 MiB)")


def validate_text(
    data: bytes | str,
    *,
    filename: str,
    now_ms: int,
    env: Mapping[str, str],
    default_timezone: str = "UTC",
) -> ValidationResult:
    """Validate a whole definitions.json document and report every error and warning.

    ``filename`` is for callers' messages only (see ``format_issue``); ``now_ms`` decides
    which ``at`` schedules are in the past; ``env`` is where webhook secrets are looked up;
    ``default_timezone`` is the zone of cron schedules that name none.
    """
    del filename  # positions are relative to the text; the caller formats the file name
    text = decode_document(data)
    if isinstance(text, Issue):
        return ValidationResult(None, [text])
    del data
    parser = _Parser(now_ms, env, default_timezone)
    # Building 100 000 routines creates no reference cycles, but hundreds of thousands of
    # tracked objects: without the cycle collector re-scanning them all the time, the load
    # is markedly faster.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        defs = parser.document(text)
    except jsonpos.JsonSyntaxError as exc:
        return ValidationResult(
            None, [Issue("", exc.line, exc.column, f"invalid JSON: {exc.message}")]
        )
    finally:
        if gc_was_enabled:
            gc.enable()
    parser.duplicate_keys(text)
    if not (parser.errors or parser.warnings):
        return ValidationResult(defs)
    starts = parser.starts
    errors = _issues(text, parser.errors, starts)
    warnings = _issues(text, parser.warnings, starts)
    return ValidationResult(None if errors else defs, errors, warnings)


def parse_routine(
    obj: object,
    *,
    now_ms: int,
    env: Mapping[str, str],
    default_timezone: str = "UTC",
    source_text: str | None = None,
    filename: str = "<routine>",
) -> tuple[Routine | None, list[Issue], list[Issue]]:
    """Validate one routine object (as for ``routines upsert``/``cron add``).

    Paths are relative to the routine (``trigger.schedule.expr``). With ``source_text`` (the
    JSON the object was parsed from) issues carry line/column and duplicate keys in it are
    errors; without it line and column are 0.
    """
    del filename  # kept for symmetry with validate_text; callers format the name
    parser = _Parser(now_ms, env, default_timezone)
    routine = parser.routine(obj, ())
    if source_text is not None:
        try:
            _, dups = jsonpos.locate_offsets(source_text, [], find_duplicates=True)
        except jsonpos.JsonSyntaxError as exc:
            return None, [Issue("", exc.line, exc.column, f"invalid JSON: {exc.message}")], []
        for path, offset in dups:
            parser.errors.append(
                _Raw(path, f'duplicate key "{path[-1]}"' + _DUP_KEY_NOTE, offset, True, None)
            )
    if not (parser.errors or parser.warnings):
        return routine, [], []
    errors = _issues(source_text, parser.errors, None)
    warnings = _issues(source_text, parser.warnings, None)
    return (None if errors else routine), errors, warnings
