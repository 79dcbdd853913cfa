"""A whole definitions.json (SPEC §2.4): decoding, limits, the root object, duplicate keys and
ids, and the entry points ``validate_text`` and ``parse_routine``.

How it stays fast and small for 100 000 routines:

- the root object is walked by hand and the routines are parsed one at a time by the C
  scanner of the standard ``json`` module, validated into model objects and dropped, so the
  document never exists as one big tree of dicts (orjson would build it all at once, and
  peaks at several times the file size);
- findings are collected as (path, message) pairs; only when there are some is the text of
  the routines concerned walked again (``issues.positioned``) to turn paths into positions;
- cron expressions, zones, timestamps and paths are checked once per distinct value, and
  equal values (strings, schedules, policies) are shared between routines (``primitives``).

Duplicate keys inside one object (which JSON parsers resolve silently to the last one) are
found cheaply: the keys in the text are counted and compared with the keys validation saw;
only the routines whose counts differ are walked to find them. Unpaired surrogate escapes
(``"\\ud800"``) likewise: one scan of the text, and only routines that have one are parsed
again.
"""

from __future__ import annotations

import gc
import re
from array import array
from bisect import bisect_right
from collections.abc import Mapping

from routines import jsonpos
from routines.model import MAX_FILE_BYTES, MAX_ROUTINES, SCHEMA_VERSION, Definitions, Routine
from routines.validate.issues import (
    Finding,
    Issue,
    ValidationResult,
    file_issue,
    internal_error,
    positioned,
)
from routines.validate.primitives import Checker, describe, hint
from routines.validate.routine import parse_routine_object

_ROOT_KEYS = frozenset({"schema_version", "routines"})
_DUP_KEY_NOTE = " (only the last value would count; remove the others)"
_KEY_END_WS = re.compile(r'"[ \t\n\r]+:')
_ESCAPED_KEY_END = re.compile(r'(?<!\\)(?:\\\\)*\\"[ \t\n\r]*:')


# --- decoding ----------------------------------------------------------------------------


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


# --- the document ------------------------------------------------------------------------


class _DocumentReader:
    """Walks the root object and the routines array, and remembers where each routine is in
    the text (for positions and the duplicate-key count)."""

    def __init__(self, cx: Checker) -> None:
        self.cx = cx
        self.routines: list[Routine] = []
        self.starts = array("q")  # offset of each routine in the text
        self.key_counts = array("q")  # keys seen inside each routine
        self.array_span = (0, 0)

    def read(self, text: str) -> Definitions | None:
        """Validate a whole document. The root object is walked by hand and each routine is
        parsed, validated and dropped in turn, so memory holds one routine's JSON at a time.
        Raises JsonSyntaxError on invalid JSON."""
        cx = self.cx
        rd = jsonpos.Reader(text)
        pos = rd.ws(0)
        if pos >= len(text):
            raise rd.error("the document is empty (expected a JSON object)", pos)
        if text[pos] != "{":
            val, end = rd.value(pos)
            end = rd.ws(end)
            if end < len(text):
                raise rd.error("unexpected data after the JSON document", end)
            cx.err_at(pos, (), f"the document must be a JSON object, got {describe(val)}")
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
                    cx.err_at(key_at, (key,), f'duplicate key "{key}"' + _DUP_KEY_NOTE)
                if key == "routines" and first and text.startswith("[", pos):
                    pos = self._routines_array(rd, pos)
                else:
                    val, pos = rd.value(pos)
                    if not first:
                        pass
                    elif key == "schema_version":
                        if type(val) is not int or val != SCHEMA_VERSION:
                            cx.err_at(
                                value_at, (key,), f"must be {SCHEMA_VERSION}, got {describe(val)}"
                            )
                    elif key == "routines":
                        cx.err_at(
                            value_at, (key,), f"must be an array of routines, got {describe(val)}"
                        )
                    else:
                        cx.err_at(key_at, (key,), f'unknown key "{key}"' + hint(key, _ROOT_KEYS))
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
            cx.err_at(
                root_at,
                ("schema_version",),
                f'missing required key "schema_version" (add "schema_version": {SCHEMA_VERSION})',
            )
        if cx.errors:
            return None
        return Definitions(routines=tuple(self.routines))

    def _routines_array(self, rd: jsonpos.Reader, pos: int) -> int:
        """Validate the routines array starting at ``pos``; returns the offset after it."""
        cx = self.cx
        errors = cx.errors
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
                n_errors = len(errors)
                keys_before = cx.keys_seen
                try:  # costs nothing unless it raises
                    r = parse_routine_object(cx, item, ("routines", i))
                except Exception as exc:  # a validator bug: this routine is invalid, go on
                    cx.err_at(pos, ("routines", i), internal_error(exc))
                    r = None
                if len(errors) != n_errors:  # partly visited: count its keys in full
                    cx.keys_seen = keys_before + _count_value_keys(item)
                key_counts.append(cx.keys_seen - keys_before)
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
                        p: jsonpos.Path = ("routines", i, "id")
                        errors.append(
                            Finding(
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
            cx.err_at(
                array_at, ("routines",), f"too many routines: {i} (the limit is {MAX_ROUTINES})"
            )
        return pos + 1

    def unpaired_surrogates(self, text: str) -> None:
        """Report the strings and keys of routines that hold an unpaired surrogate escape
        (``"\\ud800"``): valid JSON, but not Unicode, so nothing downstream could store, run
        or print them. One scan of the text finds the escapes (a file almost never has any);
        only the routines that have some are parsed again, to name the strings."""
        a, b = self.array_span
        if text.find("\\", a, b) < 0:
            return
        offsets = _lone_surrogate_escapes(text, a, b)
        if not offsets:
            return
        rd = jsonpos.Reader(text)
        for i in sorted({bisect_right(self.starts, off) - 1 for off in offsets} - {-1}):
            value, _ = rd.value(self.starts[i])
            for path, at_key, s in unpaired_surrogates(value):
                p = ("routines", i, *path)
                self.cx.errors.append(Finding(p, _surrogate_message(s, at_key), p, at_key, None))

    def duplicate_keys(self, text: str) -> None:
        """Report repeated keys inside routines. Cheap when there are none: the keys in the
        text are counted and compared with the keys validation saw; only routines whose
        counts differ are walked."""
        if not self.starts:
            return
        keys_seen = self.cx.keys_seen
        a, b = self.array_span
        # The text never holds fewer keys than validation saw, and escaped quotes can only
        # make the first estimate bigger: equality there settles it without the exact count.
        if _count_text_keys(text, a, b, exact=False) == keys_seen:
            return
        if _count_text_keys(text, a, b) == keys_seen:
            return
        bounds = [*self.starts, b]
        for i in range(len(self.starts)):
            if _count_text_keys(text, bounds[i], bounds[i + 1]) == self.key_counts[i]:
                continue
            _, dups = jsonpos.locate_offsets(text, [], start=bounds[i], find_duplicates=True)
            for path, offset in dups:
                self.cx.errors.append(
                    Finding(
                        ("routines", i, *path),
                        f'duplicate key "{path[-1]}"' + _DUP_KEY_NOTE,
                        offset,
                        True,
                        None,
                    )
                )


def _expected_key(text: str, pos: int) -> str:
    if text.startswith("}", pos):
        return "a trailing comma is not allowed"
    return "expected a key in double quotes"


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


# --- unpaired surrogates ------------------------------------------------------------------

# The escape of a UTF-16 surrogate (D800-DFFF). Whether it is an escape at all (not the text
# after an escaped backslash) and whether it pairs with the next one is decided in Python:
# such escapes are rare, and the regular expression finds them at memory speed.
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")


def _lone_surrogate_escapes(text: str, start: int, end: int) -> list[int]:
    """Offsets of the surrogate escapes in a slice of valid JSON that are not half of a pair
    (a high one followed at once by a low one, which decoders join into one character)."""
    lone: list[int] = []
    high = -1  # a high surrogate waiting for its low half
    for m in _SURROGATE_ESCAPE.finditer(text, start, end):
        i = m.start()
        j = i
        while j > 0 and text[j - 1] == "\\":
            j -= 1
        if (i - j) % 2:
            continue  # "\\ud800" in the file: an escaped backslash, then plain text
        is_high = text[i + 3] in "89abAB"
        if high >= 0:
            if not is_high and i == high + 6:
                high = -1
                continue
            lone.append(high)
            high = -1
        if is_high:
            high = i
        else:
            lone.append(i)
    if high >= 0:
        lone.append(high)
    return lone


def _encodable(s: str) -> bool:
    if s.isascii():
        return True
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def unpaired_surrogates(value: object) -> list[tuple[jsonpos.Path, bool, str]]:
    """(path, at the key?, the string) of every key and string inside ``value`` that holds
    an unpaired surrogate."""
    out: list[tuple[jsonpos.Path, bool, str]] = []
    stack: list[tuple[object, jsonpos.Path]] = [(value, ())]
    while stack:  # iterative: a parsed value may be nested a thousand deep
        v, p = stack.pop()
        if type(v) is str:
            if not _encodable(v):
                out.append((p, False, v))
        elif type(v) is dict:
            for k, x in v.items():
                kp = (*p, k)
                if not _encodable(k):
                    out.append((kp, True, k))
                stack.append((x, kp))
        elif type(v) is list:
            stack.extend((x, (*p, n)) for n, x in enumerate(v))
    return out


def _surrogate_message(s: str, at_key: bool) -> str:
    c = next(ch for ch in s if "\ud800" <= ch <= "\udfff")
    return (
        f"{'the key ' if at_key else ''}contains \\u{ord(c):04x}, an unpaired surrogate, "
        "which is not valid Unicode (write the character itself, or both halves of a "
        "surrogate pair)"
    )


# --- entry points ------------------------------------------------------------------------


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

    Never raises: anything that goes wrong inside validation (a bug) makes the document
    invalid, with an issue that says so (at the routine concerned when it is known), so a
    daemon reloading the file keeps its last good definitions instead of crashing.
    """
    del filename  # positions are relative to the text; the caller formats the file name
    # Handed over in a box so this frame holds no reference: the callee drops the raw bytes
    # once decoded (a 64 MiB file would otherwise stay alive beside its text and its model).
    box = [data]
    del data
    try:
        return _validate_text(box, now_ms, env, default_timezone)
    except Exception as exc:
        return ValidationResult(None, [file_issue(internal_error(exc))])


def _validate_text(
    box: list[bytes | str], now_ms: int, env: Mapping[str, str], default_timezone: str
) -> ValidationResult:
    text = decode_document(box.pop())
    if isinstance(text, Issue):
        return ValidationResult(None, [text])
    cx = Checker(now_ms, env, default_timezone)
    reader = _DocumentReader(cx)
    # Building 100 000 routines creates no reference cycles, but hundreds of thousands of
    # tracked objects: without the cycle collector re-scanning them all the time, the load
    # is markedly faster.
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        defs = reader.read(text)
    except jsonpos.JsonSyntaxError as exc:
        return ValidationResult(
            None, [Issue("", exc.line, exc.column, f"invalid JSON: {exc.message}")]
        )
    finally:
        if gc_was_enabled:
            gc.enable()
    reader.duplicate_keys(text)
    reader.unpaired_surrogates(text)
    if not (cx.errors or cx.warnings):
        return ValidationResult(defs)
    starts = reader.starts
    errors = positioned(text, cx.errors, starts)
    warnings = positioned(text, cx.warnings, starts)
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
    errors; without it line and column are 0. Never raises, like ``validate_text``.
    """
    del filename  # kept for symmetry with validate_text; callers format the name
    try:
        return _parse_routine(obj, now_ms, env, default_timezone, source_text)
    except Exception as exc:
        at = 0 if source_text is None else 1
        return None, [Issue("", at, at, internal_error(exc))], []


def _parse_routine(
    obj: object,
    now_ms: int,
    env: Mapping[str, str],
    default_timezone: str,
    source_text: str | None,
) -> tuple[Routine | None, list[Issue], list[Issue]]:
    cx = Checker(now_ms, env, default_timezone)
    routine = parse_routine_object(cx, obj, ())
    for path, at_key, s in unpaired_surrogates(obj):
        cx.errors.append(Finding(path, _surrogate_message(s, at_key), path, at_key, None))
    if source_text is not None:
        try:
            _, dups = jsonpos.locate_offsets(source_text, [], find_duplicates=True)
        except jsonpos.JsonSyntaxError as exc:
            return None, [Issue("", exc.line, exc.column, f"invalid JSON: {exc.message}")], []
        for path, offset in dups:
            cx.errors.append(
                Finding(path, f'duplicate key "{path[-1]}"' + _DUP_KEY_NOTE, offset, True, None)
            )
    if not (cx.errors or cx.warnings):
        return routine, [], []
    errors = positioned(source_text, cx.errors, None)
    warnings = positioned(source_text, cx.warnings, None)
    return (None if errors else routine), errors, warnings
