"""Where things are in a JSON text: line/column of JSON paths, duplicate keys, syntax errors.

Validation works on parsed values (fast); this module maps its findings back to the text only
when there is something to report. It walks the text along the requested paths and skips
every other value with the C scanner of the standard ``json`` module, so even a 50 MB
document is located in about a second rather than tokenized character by character in
Python. ``Reader`` lets a caller stream a big document value by value the same way.
Lines and columns are 1-based and columns count characters, not bytes.
"""

from __future__ import annotations

import json
import re
import sys
from _json import scanstring
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "JsonSyntaxError",
    "LocateResult",
    "NonJsonConstant",
    "Path",
    "Reader",
    "line_columns",
    "locate",
    "locate_offsets",
    "syntax_error",
]

Path = tuple[str | int, ...]

_WS = re.compile(r"[ \t\n\r]*")
_Scan = Callable[[str, int], tuple[Any, int]]


def _scanner(decoder: json.JSONDecoder) -> _Scan:
    """The C scanner behind ``decoder``: parses one value at an offset, returns (value, end)."""
    scan: _Scan = decoder.scan_once  # type: ignore[attr-defined]
    return scan


class JsonSyntaxError(ValueError):
    """The text is not JSON; ``line``/``column`` (1-based, characters) point at the problem."""

    def __init__(self, message: str, offset: int, line: int, column: int) -> None:
        super().__init__(f"{message} (line {line}, column {column})")
        self.message = message
        self.offset = offset
        self.line = line
        self.column = column


@dataclass
class LocateResult:
    """``positions[i]`` is the (line, column) of ``targets[i]``; ``duplicates`` lists every
    repeated key of an object as (path of the key, line, column) of its later occurrence."""

    positions: list[tuple[int, int]]
    duplicates: list[tuple[Path, int, int]] = field(default_factory=list)


def line_columns(text: str, offsets: Iterable[int]) -> dict[int, tuple[int, int]]:
    """Map character offsets to 1-based (line, column) in one pass over the text."""
    out: dict[int, tuple[int, int]] = {}
    line = 1
    last = 0
    for key in sorted(set(offsets)):
        off = max(0, min(key, len(text)))
        line += text.count("\n", last, off)
        line_start = text.rfind("\n", 0, off) + 1
        out[key] = (line, off - line_start + 1)
        last = off
    return out


# The standard scanner's messages, reworded for people editing a file by hand.
_MESSAGES = {
    "Expecting ',' delimiter": "expected ',' or a closing bracket",
    "Expecting ':' delimiter": "expected ':' after the key",
    "Expecting property name enclosed in double quotes": (
        "expected a key in double quotes (a trailing comma is not allowed)"
    ),
    "Expecting value": "expected a JSON value",
    "Unterminated string starting at": "unterminated string",
    "Invalid control character at": (
        "control character inside a string (write it escaped, e.g. \\n or \\t)"
    ),
    "Invalid \\escape": "invalid escape sequence in a string",
    "Invalid \\uXXXX escape": "invalid \\u escape in a string",
}


def _friendly(message: str) -> str:
    return _MESSAGES.get(message, message)


def _value_expected(text: str, offset: int) -> str:
    if text.startswith("]", offset):
        i = offset - 1
        while i >= 0 and text[i] in " \t\n\r":
            i -= 1
        if i >= 0 and text[i] == ",":
            return "a trailing comma is not allowed"
    return "expected a JSON value"


def _value_error(text: str, pos: int, exc: ValueError) -> tuple[str, int]:
    """The message and offset for a ValueError of the scanner inside the value at ``pos``:
    an integer longer than Python converts (its message tells a programmer what to call)."""
    limit = sys.get_int_max_str_digits()
    if limit and str(exc).startswith("Exceeds the limit"):
        m = re.compile(rf"[0-9]{{{limit + 1},}}").search(text, pos)
        return f"a number with more than {limit} digits", pos if m is None else m.start()
    return str(exc), pos


def _stop_offset(stop: StopIteration, default: int) -> int:
    return stop.value if isinstance(stop.value, int) else default


class _Node:
    """A trie of requested paths; offsets are filled in as the walk meets them."""

    __slots__ = ("children", "key_at", "value_at")

    def __init__(self) -> None:
        self.children: dict[str | int, _Node] = {}
        self.key_at = -1
        self.value_at = -1


class _Walker:
    def __init__(self, text: str, find_duplicates: bool) -> None:
        self.text = text
        self.find_duplicates = find_duplicates
        self.flagged = False
        self.duplicates: list[tuple[Path, int]] = []
        self._plain = _SKIP
        self._checking = (
            _scanner(json.JSONDecoder(object_pairs_hook=self._check_pairs))
            if find_duplicates
            else _SKIP
        )

    def _check_pairs(self, pairs: list[tuple[str, Any]]) -> None:
        if not self.flagged and len({k for k, _ in pairs}) != len(pairs):
            self.flagged = True

    def error(self, message: str, offset: int) -> JsonSyntaxError:
        offset = max(0, min(offset, len(self.text)))
        line, column = line_columns(self.text, [offset])[offset]
        return JsonSyntaxError(message, offset, line, column)

    def ws(self, pos: int) -> int:
        m = _WS.match(self.text, pos)
        assert m is not None  # the pattern matches the empty string
        return m.end()

    def skip(self, pos: int, checking: bool) -> int:
        """The end offset of the value starting at ``pos`` (parsed and thrown away in C)."""
        scan = self._checking if checking else self._plain
        try:
            _, end = scan(self.text, pos)
        except StopIteration as stop:  # .value: where a value was expected (maybe nested)
            off = _stop_offset(stop, pos)
            raise self.error(_value_expected(self.text, off), off) from None
        except json.JSONDecodeError as exc:
            raise self.error(_friendly(exc.msg), exc.pos) from None
        except RecursionError:
            raise self.error("nesting too deep", pos) from None
        except ValueError as exc:  # e.g. an integer beyond Python's digit limit
            raise self.error(*_value_error(self.text, pos, exc)) from None
        return int(end)

    def document(self, root: _Node | None) -> None:
        pos = self.ws(0)
        if pos >= len(self.text):
            raise self.error("the document is empty (expected a JSON value)", pos)
        pos = self.value(pos, root, ())
        pos = self.ws(pos)
        if pos < len(self.text):
            raise self.error("unexpected data after the JSON document", pos)

    def value(self, pos: int, node: _Node | None, path: Path) -> int:
        if node is not None:
            node.value_at = pos
        if node is None or not node.children:
            if not self.find_duplicates:
                return self.skip(pos, False)
            self.flagged = False
            end = self.skip(pos, True)
            if not self.flagged:
                return end
            node = None  # a duplicate is somewhere inside: walk it key by key
        c = self.text[pos : pos + 1]
        if c == "{":
            return self.object(pos, node, path)
        if c == "[":
            return self.array(pos, node, path)
        return self.skip(pos, False)

    def object(self, pos: int, node: _Node | None, path: Path) -> int:
        text = self.text
        seen: set[str] = set()
        pos = self.ws(pos + 1)
        if pos < len(text) and text[pos] == "}":
            return pos + 1
        while True:
            if pos >= len(text) or text[pos] != '"':
                trailing = text.startswith("}", pos)
                raise self.error(
                    "a trailing comma is not allowed"
                    if trailing
                    else "expected a key in double quotes",
                    pos,
                )
            key_at = pos
            try:
                key, pos = scanstring(text, pos + 1, True)
            except json.JSONDecodeError as exc:
                raise self.error(_friendly(exc.msg), exc.pos) from None
            if self.find_duplicates:
                if key in seen:
                    self.duplicates.append(((*path, key), key_at))
                seen.add(key)
            pos = self.ws(pos)
            if pos >= len(text) or text[pos] != ":":
                raise self.error("expected ':' after the key", pos)
            pos = self.ws(pos + 1)
            child = node.children.get(key) if node is not None else None
            if child is not None:
                child.key_at = key_at
            pos = self.ws(self.value(pos, child, (*path, key)))
            if pos < len(text) and text[pos] == ",":
                pos = self.ws(pos + 1)
                continue
            if pos < len(text) and text[pos] == "}":
                return pos + 1
            raise self.error("expected ',' or '}' after an object member", pos)

    def array(self, pos: int, node: _Node | None, path: Path) -> int:
        text = self.text
        pos = self.ws(pos + 1)
        if pos < len(text) and text[pos] == "]":
            return pos + 1
        index = 0
        while True:
            child = node.children.get(index) if node is not None else None
            pos = self.ws(self.value(pos, child, (*path, index)))
            index += 1
            if pos < len(text) and text[pos] == ",":
                pos = self.ws(pos + 1)
                if text.startswith("]", pos):
                    raise self.error("a trailing comma is not allowed", pos)
                continue
            if pos < len(text) and text[pos] == "]":
                return pos + 1
            raise self.error("expected ',' or ']' after an array element", pos)


def _discard(pairs: list[tuple[str, Any]]) -> None:
    return None


_SKIP = _scanner(json.JSONDecoder(object_pairs_hook=_discard))  # parses, keeps nothing


def locate(
    text: str,
    targets: Sequence[tuple[Path, bool]],
    *,
    start: int | None = None,
    find_duplicates: bool = False,
) -> LocateResult:
    """Find each target ``(path, at_key)`` in ``text``: the position of the path's value, or of
    its key when ``at_key`` is true (the root has no key). A path that does not exist resolves
    to its deepest existing ancestor. With a repeated key the last occurrence counts, as in
    every JSON parser that accepts duplicates. Paths are relative to the whole document, or
    to the value that begins at offset ``start`` (then only that value is read).
    Raises JsonSyntaxError on invalid JSON.
    """
    offsets, duplicates = locate_offsets(
        text, targets, start=start, find_duplicates=find_duplicates
    )
    lc = line_columns(text, offsets + [off for _, off in duplicates])
    return LocateResult(
        positions=[lc[off] for off in offsets],
        duplicates=[(p, *lc[off]) for p, off in duplicates],
    )


def locate_offsets(
    text: str,
    targets: Sequence[tuple[Path, bool]],
    *,
    start: int | None = None,
    find_duplicates: bool = False,
) -> tuple[list[int], list[tuple[Path, int]]]:
    """``locate`` with character offsets instead of line/column (convert many at once with
    ``line_columns``): (offset of each target, [(path of a repeated key, its offset)])."""
    root = _Node()
    for path, _ in targets:
        node = root
        for part in path:
            nxt = node.children.get(part)
            if nxt is None:
                nxt = node.children[part] = _Node()
            node = nxt
    return _walk(text, targets, root, start, find_duplicates)


def _walk(
    text: str,
    targets: Sequence[tuple[Path, bool]],
    root: _Node,
    start: int | None,
    find_duplicates: bool,
) -> tuple[list[int], list[tuple[Path, int]]]:
    walker = _Walker(text, find_duplicates)
    if start is None:
        walker.document(root)
    else:
        walker.value(start, root, ())

    offsets: list[int] = []
    for path, at_key in targets:
        node = root
        best = root.value_at
        for part in path:
            nxt = node.children.get(part)
            if nxt is None or nxt.value_at < 0:
                break
            node = nxt
            best = node.value_at
        else:
            if at_key and path and node.key_at >= 0:
                best = node.key_at
        offsets.append(max(best, 0))
    return offsets, walker.duplicates


class NonJsonConstant:
    """``NaN``/``Infinity``/``-Infinity``: accepted by Python's scanner, not JSON. The reader
    returns this marker so that validation reports it where it occurs."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"{self.name} (not valid JSON)"


class Reader:
    """Step through a JSON text: the caller walks the outer structure with ``ws``/``string``
    and has single values parsed by the C scanner with ``value``, one at a time, so a big
    array never has to exist as one Python object."""

    def __init__(self, text: str) -> None:
        self.text = text
        self._scan = _scanner(json.JSONDecoder(parse_constant=NonJsonConstant))

    def error(self, message: str, offset: int) -> JsonSyntaxError:
        offset = max(0, min(offset, len(self.text)))
        line, column = line_columns(self.text, [offset])[offset]
        return JsonSyntaxError(message, offset, line, column)

    def ws(self, pos: int) -> int:
        """The offset of the first non-whitespace character at or after ``pos``."""
        m = _WS.match(self.text, pos)
        assert m is not None  # the pattern matches the empty string
        return m.end()

    def value(self, pos: int) -> tuple[Any, int]:
        """Parse the value at ``pos``: (value, end offset)."""
        try:
            return self._scan(self.text, pos)
        except StopIteration as stop:  # .value: where a value was expected (maybe nested)
            off = _stop_offset(stop, pos)
            raise self.error(_value_expected(self.text, off), off) from None
        except json.JSONDecodeError as exc:
            raise self.error(_friendly(exc.msg), exc.pos) from None
        except RecursionError:
            raise self.error("nesting too deep", pos) from None
        except ValueError as exc:  # e.g. an integer beyond Python's digit limit
            raise self.error(*_value_error(self.text, pos, exc)) from None

    def string(self, pos: int) -> tuple[str, int]:
        """Parse the string whose opening quote is at ``pos``: (value, end offset)."""
        try:
            key, end = scanstring(self.text, pos + 1, True)
        except json.JSONDecodeError as exc:
            raise self.error(_friendly(exc.msg), exc.pos) from None
        return str(key), int(end)


def syntax_error(text: str) -> JsonSyntaxError | None:
    """The first syntax error of ``text`` with its position, or None when it is valid JSON."""
    try:
        _Walker(text, False).document(None)
    except JsonSyntaxError as exc:
        return exc
    return None
