"""What validation reports, and where: issues with a JSON path, a line and a column.

Checks only record *findings* (a path and a message) while they run; positions are worked out
afterwards, and only when there is something to report, by walking the text of the routines
concerned again (``routines.jsonpos``). A valid file never pays for positions.
"""

from __future__ import annotations

import json
import os
import re
import traceback
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

from routines import jsonpos
from routines.jsonpos import Path
from routines.model import Definitions


def printable(s: str) -> str:
    """``s`` with unpaired surrogates written as escapes (``\\ud800``): text quoted from the
    input may hold them (a ``"\\ud800"`` escape in the file, an undecodable file name), and
    then no output, UTF-8 or JSON, could encode it."""
    if s.isascii():
        return s
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return s.encode("utf-8", "backslashreplace").decode("utf-8")
    return s


@dataclass(frozen=True)
class Issue:
    """One error or warning. ``line``/``column`` are 1-based (characters); 0 means unknown.
    Its text is always printable (see ``printable``), whatever the input held."""

    path: str
    line: int
    column: int
    message: str

    def __post_init__(self) -> None:
        # Issues are only made when something is wrong, so this costs a valid file nothing.
        object.__setattr__(self, "path", printable(self.path))
        object.__setattr__(self, "message", printable(self.message))


@dataclass
class ValidationResult:
    """The outcome of validating a document: the definitions when there are no errors."""

    definitions: Definitions | None
    errors: list[Issue] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when there are no errors (warnings do not stop a document being applied)."""
        return not self.errors


def format_issue(filename: str, issue: Issue) -> str:
    """``file:line:column: path: message`` (the position and path are left out when unknown)."""
    out = printable(filename)
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


def internal_error(exc: BaseException) -> str:
    """The message for a bug in the validator: the document counts as invalid, the operator
    is asked to report it, and the exception's type and place are named (never a traceback)."""
    where = detail = ""
    try:  # the backstop's own message must not fail, whatever the exception holds
        tb = traceback.extract_tb(exc.__traceback__)
        if tb:
            where = f" at {os.path.basename(tb[-1].filename)}:{tb[-1].lineno}"
        detail = str(exc)[:200]
    except Exception:
        pass
    detail = f": {detail}" if detail else ""
    return (
        f"internal validator error ({type(exc).__name__}{detail}{where}); the document is "
        "treated as invalid. This is a bug in palyra: please report it with this file"
    )


class Finding(NamedTuple):
    """A problem before its position is known (a tuple: checks create many of them cheaply)."""

    path: Path  # reported
    message: str
    loc: Path | int  # where it is: a path to locate, or a known character offset
    at_key: bool  # at the key rather than the value
    related: Path | None  # a path whose line is appended to the message


def positioned(
    text: str | None, findings: list[Finding], starts: Sequence[int] | None
) -> list[Issue]:
    """Findings → Issues with line/column (0:0 without text), in document order.

    Paths into ``routines[i]`` are located by walking only that routine's text (its offset
    is in ``starts``), so reporting a few errors in a huge file stays cheap.
    """
    if text is None:
        return [
            Issue(format_path(f.path), 0, 0, f.message + (")" if f.related else ""))
            for f in findings
        ]
    locs: list[tuple[Path | int, bool]] = [(f.loc, f.at_key) for f in findings]
    related = [f.related for f in findings if f.related is not None]
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
    related_line = {
        rp: lc[off][0] for rp, off in zip(related, offsets[len(findings) :], strict=True)
    }
    out: list[Issue] = []
    for f, off in zip(findings, offsets, strict=False):
        msg = f.message
        if f.related is not None:
            msg += f", line {related_line[f.related]})"
        line, col = lc[off]
        out.append(Issue(format_path(f.path), line, col, msg))
    out.sort(key=lambda i: (i.line, i.column))
    return out
