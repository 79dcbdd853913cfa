"""The checks every section is built from, and the state one validation run shares.

A ``Checker`` is one run: the settings checks depend on (now, environment, default zone),
the findings collected so far, and the memo caches. Its methods check typed values (strings,
``*_ms`` durations, counts, booleans, enums, string lists, tagged objects) and report what is
wrong with a message that says what was expected, with a did-you-mean hint where one helps.
Section modules are plain functions of a ``Checker``, so a new section needs no change here
(unless it shares equal values between routines: its memo is one more line in ``__init__``).

Speed matters (a file holds up to 100 000 routines): the common, valid case of each check is
tested first and returns at once; cron expressions, zones, timestamps and paths are checked
once per distinct value (inline ``try``/``KeyError`` memos, the cheapest hit there is); equal
strings and equal model values are shared between routines (less memory, fewer objects).
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import Any, Final

from routines.cron import CronError, parse_cron
from routines.jsonpos import Path
from routines.model import (
    Misfire,
    MisfirePolicy,
    Retry,
    Schedule,
    ScheduleTrigger,
    canonical_enum,
)
from routines.timefmt import TimeFormatError, get_zone, parse_rfc3339
from routines.validate.issues import Finding

# Any duration beyond ten years is a typo, and would overflow date arithmetic downstream.
MAX_DURATION_MS: Final = 10 * 365 * 86_400_000

# Tells an absent key from one whose value is null (which is an error, not the default).
MISSING: Final[Any] = object()

_RFC3339_RE = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?"
    r"(?:[Zz]|[+-][0-9]{2}:[0-9]{2})"
)


def enum_table(values: Iterable[Any]) -> dict[str, Any]:
    """``{value: member}`` of an enum: the table ``Checker.enum`` looks spellings up in."""
    return {v.value: v for v in values}


def describe(v: object) -> str:
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


def hint(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean "x"?)`` for the closest of ``choices``, or "" when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""


@lru_cache(maxsize=1)
def _zone_names() -> tuple[str, ...]:
    import zoneinfo  # only for a hint on an unknown zone: not worth importing up front

    return tuple(sorted(zoneinfo.available_timezones()))


class Checker:
    """One validation run: its settings, its findings, its memos, and the typed checks."""

    def __init__(self, now_ms: int, env: Mapping[str, str], default_timezone: str) -> None:
        self.now_ms = now_ms  # ``at`` schedules before it are in the past
        self.env = env  # where webhook secrets are looked up
        self.default_timezone = default_timezone  # of cron schedules that name none
        self.errors: list[Finding] = []
        self.warnings: list[Finding] = []
        # Object keys the checks looked at; compared with the keys in the text, it tells
        # whether any object repeats a key (see ``document``).
        self.keys_seen = 0
        # Equal values are shared between routines: less memory, fewer constructions.
        self.strings: dict[str, str] = {}
        self.schedules: dict[tuple[object, ...], Schedule] = {}
        self.schedule_triggers: dict[int, ScheduleTrigger] = {}  # by id() of the schedule
        self.misfires: dict[tuple[MisfirePolicy, int, int], Misfire] = {}
        self.retries: dict[tuple[int, int, int], Retry] = {}
        self._cron: dict[str, str | None] = {}
        self._zones: dict[str, str | None] = {}
        self._times: dict[str, int | str] = {}
        self._exists: dict[str, bool] = {}

    # -- reporting ------------------------------------------------------------------------

    def err(self, path: Path, message: str, *, at_key: bool = False) -> None:
        """An error at ``path`` (at its key with ``at_key``, e.g. for unknown keys)."""
        self.errors.append(Finding(path, message, path, at_key, None))

    def err_at(self, offset: int, path: Path, message: str) -> None:
        """An error whose character offset in the text is already known."""
        self.errors.append(Finding(path, message, offset, False, None))

    def warn(self, path: Path, message: str) -> None:
        """A warning: reported, but it does not stop the document being applied."""
        self.warnings.append(Finding(path, message, path, False, None))

    def missing(self, obj_path: Path, key: str, extra: str = "") -> None:
        """A required ``key`` absent from the object at ``obj_path`` (reported at the object)."""
        self.errors.append(
            Finding((*obj_path, key), f'missing required key "{key}"{extra}', obj_path, False, None)
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
        """Report keys of ``obj`` not in ``allowed``: as belonging to another kind of ``other``
        (``what`` says why it is not used here), else with a did-you-mean hint."""
        for key in obj:
            if key in allowed:
                continue
            msg = f'unknown key "{key}"'
            owners = [k for k, keys in (other or {}).items() if key in keys]
            if owners:
                msg += f" ({what}; it belongs to {' / '.join(owners)})"
            else:
                msg += hint(key, allowed)
            self.err((*p, key), msg, at_key=True)

    def null(self, p: Path, key: str) -> None:
        """``key`` of the object at ``p`` is null: an error, since omitting it is the way."""
        self.err((*p, key), f'null is not allowed (omit "{key}" to use the default)')

    def intern(self, s: str) -> str:
        """Share equal strings (zones, kinds, patterns) between routines to save memory."""
        return self.strings.setdefault(s, s)

    # -- typed values ---------------------------------------------------------------------

    def obj(self, v: Any, p: Path) -> dict[str, Any] | None:
        """``v`` when it is an object (its keys counted as seen), else None and an error."""
        if type(v) is dict:
            self.keys_seen += len(v)
            return v
        self.err(p, f"must be an object, got {describe(v)}")
        return None

    def opt_obj(self, o: dict[str, Any], key: str, p: Path) -> dict[str, Any] | None:
        """The object under an optional ``key`` of ``o``; None when absent or invalid."""
        v = o.get(key, MISSING)
        if v is MISSING:
            return None
        if v is None:
            self.null(p, key)
            return None
        return self.obj(v, (*p, key))

    def string(self, v: Any, p: Path, *, intern: bool = True) -> str | None:
        """A non-empty string without NUL; equal strings are shared unless ``intern=False``."""
        if type(v) is str:
            if v:
                if "\x00" in v:
                    self.err(p, "must not contain NUL characters")
                    return None
                return self.strings.setdefault(v, v) if intern else v
            self.err(p, "must not be empty")
            return None
        self.err(p, f"must be a string, got {describe(v)}")
        return None

    def opt_string(
        self, o: dict[str, Any], key: str, p: Path, *, intern: bool = True
    ) -> str | None:
        """An optional string key: None when absent, null or invalid (the last two reported)."""
        v = o.get(key, MISSING)
        if v is MISSING:
            return None
        if v is None:
            self.null(p, key)
            return None
        return self.string(v, (*p, key), intern=intern)

    def req_string(self, o: dict[str, Any], key: str, p: Path, extra: str = "") -> str | None:
        """A required string key: reported missing (with ``extra`` as the hint) or invalid."""
        v = o.get(key, MISSING)
        if v is MISSING:
            self.missing(p, key, extra)
            return None
        return self.string(v, (*p, key))

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
        v = o.get(key, MISSING)
        if v is MISSING:
            return default
        if type(v) is int and lo <= v <= hi:
            return v
        if v is None:
            self.null(p, key)
        elif type(v) is not int or v < 0:
            self.err((*p, key), f"must be a non-negative integer (milliseconds), got {describe(v)}")
        elif v < lo:
            self.err((*p, key), f"must be at least {lo} ms, got {v}")
        else:
            self.err((*p, key), f"must be at most {hi} ms, got {v}")
        return default

    def count(self, o: dict[str, Any], key: str, p: Path, default: int, lo: int, hi: int) -> int:
        """An integer from ``lo`` to ``hi`` (attempts, runs); ``default`` when absent or bad."""
        v = o.get(key, MISSING)
        if v is MISSING:
            return default
        if type(v) is int and lo <= v <= hi:
            return v
        if v is None:
            self.null(p, key)
        elif type(v) is not int:
            self.err((*p, key), f"must be an integer, got {describe(v)}")
        else:
            self.err((*p, key), f"must be between {lo} and {hi}, got {v}")
        return default

    def boolean(self, o: dict[str, Any], key: str, p: Path, default: bool) -> bool:
        """``true`` or ``false`` only (not 0 or 1); ``default`` when absent or bad."""
        v = o.get(key, MISSING)
        if v is MISSING:
            return default
        if v is True or v is False:
            return bool(v)
        if v is None:
            self.null(p, key)
        else:
            self.err((*p, key), f"must be true or false, got {describe(v)}")
        return default

    def enum(
        self, o: dict[str, Any], key: str, p: Path, table: Mapping[str, Any], default: Any
    ) -> Any:
        """The member of ``table`` (see ``enum_table``) named by ``key``, aliases accepted."""
        v = o.get(key, MISSING)
        if v is MISSING:
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
                f"unknown value {describe(v)} (expected one of {', '.join(table)})"
                + hint(canonical_enum(v.lower()), table),
            )
        elif v is None:
            self.null(p, key)
        else:
            self.err((*p, key), f"must be a string, got {describe(v)}")
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
        """An array of strings without NUL (each shared); None and errors when it is not."""
        v = o.get(key, MISSING)
        if v is MISSING:
            if required:
                self.missing(p, key)
                return None
            return default
        kp = (*p, key)
        if type(v) is not list:
            if v is None and not required:
                self.null(p, key)
            else:
                self.err(kp, f"must be an array of strings, got {describe(v)}")
            return None
        if nonempty and not v:
            self.err(kp, "must not be empty")
            return None
        try:
            bad = "\x00" in "".join(v)  # TypeError when an item is not a string
        except TypeError:
            bad = True
        if not bad:
            setdefault = self.strings.setdefault
            return tuple(map(setdefault, v, v))
        for i, item in enumerate(v):
            if type(item) is not str:
                self.err((*kp, i), f"must be a string, got {describe(item)}")
            elif "\x00" in item:
                self.err((*kp, i), "must not contain NUL characters")
        return None

    def kind(self, o: dict[str, Any], key: str, p: Path, table: Mapping[str, Any]) -> str | None:
        """The tag under ``key`` (a kind, type or mode) when ``table`` has it, aliases
        accepted; else None and an error listing the tags there are."""
        v = o.get(key, MISSING)
        if type(v) is str and v in table:
            return v
        if v is MISSING:
            self.missing(p, key, f" (one of {', '.join(table)})")
            return None
        if type(v) is not str:
            self.err((*p, key), f"must be a string, got {describe(v)}")
            return None
        if v in table:
            return v
        c = canonical_enum(v)
        if c in table:
            return c
        self.err(
            (*p, key),
            f"unknown {key} {describe(v)} (expected one of {', '.join(table)})"
            + hint(canonical_enum(v.lower()), table),
        )
        return None

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

    # -- memoized checks: once per distinct value -----------------------------------------

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
            msg = f"unknown time zone {describe(name)}" + hint(name, _zone_names())
        self._zones[name] = msg
        return msg

    def cron(self, expr: str) -> str | None:
        """None when ``expr`` is a valid cron expression, else the error message."""
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
                got = f"invalid RFC 3339 timestamp {describe(text)}"
        elif _RFC3339_RE.fullmatch(text + "Z") or _RFC3339_RE.fullmatch(text + ":00Z"):
            got = (
                f"timestamp {describe(text)} has no UTC offset "
                '(RFC 3339 needs one, e.g. "Z" or "+02:00")'
            )
        else:
            got = (
                f"invalid RFC 3339 timestamp {describe(text)} "
                '(expected e.g. "2026-03-29T09:00:00+02:00")'
            )
        self._times[text] = got
        return got

    def path_exists(self, path: str) -> bool:
        """Whether ``path`` (``~`` expanded) exists now: a missing one is only a warning."""
        try:
            return self._exists[path]
        except KeyError:
            pass
        got = os.path.exists(os.path.expanduser(path))
        self._exists[path] = got
        return got
