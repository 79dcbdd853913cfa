"""Learning from a run's output (SPEC §6 "Learning"): the ``::palyra-learn`` lines and the
sampling decision.

A routine teaches the daemon by printing, on a line of its own,
``::palyra-learn {"kind": "fact", "text": "...", "confidence": 0.9}``. The output is whatever
the run wrote (stdout and stderr merged, up to 10 MiB, arbitrary bytes, possibly cut
mid-line), so reading it is defensive: only a line that *starts* with the marker counts (a
shell trace echoing the command has it mid-line), a malformed marker line is reported and
never fatal, and reading holds at most one line of ``MAX_LINE_BYTES`` at a time however long
a line is. Most output has no marker at all, so a stretch without one costs a byte search
and a newline count, never a Python loop over its lines.

The reflection task does the I/O around this (which run, which routine, the journal);
``scan_output`` only reads the one file it is given.
"""

from __future__ import annotations

import errno
import hashlib
import math
import os
import re
import stat
from dataclasses import dataclass, field
from pathlib import Path

import orjson

MARKER: bytes = b"::palyra-learn"
KINDS: tuple[str, ...] = ("fact", "preference", "procedure")
MAX_TEXT_BYTES: int = 16 * 1024
MAX_LINE_BYTES: int = 64 * 1024
# C0 and C1 control characters but tab and newline (ESC, BEL, CR, DEL, CSI...): a text that
# is printed to an operator's terminal must not be able to drive it.
CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")
MAX_PROBLEMS = 20

_KEYS = ("kind", "text", "confidence")
_LEADING_WS = b" \t"
_TRAILING_WS = b" \t\r"
# A byte after the marker that makes it another word (``::palyra-learned``), not the marker.
_WORD = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_")
_SHOW_CHARS = 40
_JSON_TYPES: dict[type, str] = {
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


@dataclass(frozen=True, slots=True)
class LearnLine:
    """One valid marker line: what the routine taught, where in the output it said so."""

    line_no: int
    kind: str
    text: str
    confidence: float


@dataclass(frozen=True, slots=True)
class LearnProblem:
    """One malformed marker line; ``message`` starts with ``line N:`` and quotes little of it."""

    line_no: int
    message: str


@dataclass(frozen=True, slots=True)
class LearnScan:
    """What one output held: the valid lines (at most ``max_lines``, in output order), the
    first ``MAX_PROBLEMS`` malformed ones, and how many of each were left out."""

    lines: tuple[LearnLine, ...]
    problems: tuple[LearnProblem, ...]
    malformed: int
    over_limit: int


def _show(value: object) -> str:
    """A JSON rendering of ``value`` short enough for a message (at most ~40 characters)."""
    try:
        text = orjson.dumps(value).decode()
    except TypeError:  # not produced by orjson.loads; be safe anyway
        text = repr(value)
    return text if len(text) <= _SHOW_CHARS else text[: _SHOW_CHARS - 1] + "…"


def _starts_marker(start: bytes | bytearray) -> bool | None:
    """Whether a line whose content (after its leading whitespace) begins with ``start`` is a
    marker line: True or False when ``start`` decides it, None while it is too short to."""
    n = len(MARKER)
    if start[:n] != MARKER[: len(start)]:
        return False
    if len(start) <= n:
        return None
    return start[n] not in _WORD


def _opens_marker_line(start: bytes | bytearray) -> bool:
    """Whether ``start`` (a line's content after its leading whitespace, possibly only its
    first ``len(MARKER) + 1`` bytes) is the beginning of a marker line."""
    return len(start) >= len(MARKER) and _starts_marker(start) is not False


def parse_learn_line(line: bytes, line_no: int) -> LearnLine | LearnProblem | None:
    """Parse one output line (without its newline): None when it is not a marker line, else
    the taught item or what is wrong with it."""
    if line.endswith(b"\n"):
        line = line[:-1]
    content = line.lstrip(_LEADING_WS)
    if not _opens_marker_line(content):
        return None

    def problem(message: str) -> LearnProblem:
        return LearnProblem(line_no, f"line {line_no}: {message}")

    if len(line) > MAX_LINE_BYTES:
        return problem(f"longer than {MAX_LINE_BYTES} bytes")
    rest = content[len(MARKER) :]
    payload = rest.strip(_TRAILING_WS)
    if not payload:
        return problem(f"expected a JSON object after {MARKER.decode()}")
    if rest[:1] not in (b" ", b"\t"):
        return problem(f"expected a space between {MARKER.decode()} and the JSON object")
    try:
        value = orjson.loads(payload)
    except orjson.JSONDecodeError as e:
        try:
            payload.decode("utf-8")
        except UnicodeDecodeError:
            return problem("not valid UTF-8")
        return problem(f"not valid JSON ({e.msg} at character {e.pos} of the object)")
    if not isinstance(value, dict):
        return problem(f"expected a JSON object, got {_JSON_TYPES.get(type(value), 'a value')}")

    unknown = [k for k in value if k not in _KEYS]
    if unknown:
        named = ", ".join(_show(k) for k in unknown[:2])
        more = f" and {len(unknown) - 2} more" if len(unknown) > 2 else ""
        noun = "key" if len(unknown) == 1 else "keys"
        return problem(f"unknown {noun} {named}{more} (known keys: {', '.join(_KEYS)})")
    missing = [k for k in _KEYS if k not in value]
    if missing:
        noun = "key" if len(missing) == 1 else "keys"
        return problem(f"missing {noun} {', '.join(_show(k) for k in missing)}")

    kind = value["kind"]
    if not isinstance(kind, str) or kind not in KINDS:
        return problem(f'"kind" must be one of {", ".join(KINDS)} (got {_show(kind)})')

    raw_text = value["text"]
    if not isinstance(raw_text, str):
        return problem(f'"text" must be a string (got {_show(raw_text)})')
    text = raw_text.strip()
    if not text:
        return problem('"text" is empty')
    if "\0" in text:
        return problem('"text" contains a NUL character')
    if (bad := CONTROL.search(text)) is not None:
        return problem(
            f'"text" contains the control character U+{ord(bad.group()):04X} (only tab and'
            " newline are allowed: terminal escapes never reach an operator's screen)"
        )
    size = len(text.encode("utf-8"))
    if size > MAX_TEXT_BYTES:
        return problem(f'"text" is longer than {MAX_TEXT_BYTES} bytes ({size})')

    confidence = value["confidence"]
    if (
        isinstance(confidence, bool)
        or not isinstance(confidence, int | float)
        or not math.isfinite(confidence)
        or not 0 <= confidence <= 1
    ):
        return problem(f'"confidence" must be a number from 0 to 1 (got {_show(confidence)})')
    return LearnLine(line_no, kind, text, float(confidence) or 0.0)


@dataclass(slots=True)
class _Scanner:
    """The running state of one ``scan_output``: what was found so far, and the line being
    read when a chunk ends inside it."""

    max_lines: int
    lines: list[LearnLine] = field(default_factory=list)
    problems: list[LearnProblem] = field(default_factory=list)
    malformed: int = 0
    over_limit: int = 0
    line_no: int = 1  # the line being read
    # The unfinished line: its length so far, its content after the leading whitespace
    # (only while it may be a marker line; once it is too long, only enough to decide
    # whether it is one), and whether it is already decided not to matter.
    open: bool = False
    length: int = 0
    head: bytearray = field(default_factory=bytearray)
    done: bool = False

    def add(self, found: LearnLine | LearnProblem | None) -> None:
        if isinstance(found, LearnLine):
            if len(self.lines) < self.max_lines:
                self.lines.append(found)
            else:
                self.over_limit += 1
        elif isinstance(found, LearnProblem):
            self.malformed += 1
            if len(self.problems) < MAX_PROBLEMS:
                self.problems.append(found)

    def too_long(self, line_no: int) -> None:
        self.add(LearnProblem(line_no, f"line {line_no}: longer than {MAX_LINE_BYTES} bytes"))

    def extend(self, piece: bytes) -> None:
        """Add ``piece`` (no newline in it) to the unfinished line."""
        self.open = True
        if self.done:
            return
        self.length += len(piece)
        if not self.head:
            piece = piece.lstrip(_LEADING_WS)
        if self.length <= MAX_LINE_BYTES:
            self.head += piece
        else:
            # Too long to parse: keep only what decides whether it is a marker line.
            self.head += piece[: max(0, len(MARKER) + 1 - len(self.head))]
            del self.head[len(MARKER) + 1 :]
        decided = _starts_marker(self.head)
        if decided is False:
            self.done = True
            self.head.clear()
        elif decided and self.length > MAX_LINE_BYTES:
            self.too_long(self.line_no)
            self.done = True
            self.head.clear()

    def end_line(self) -> None:
        """The unfinished line ended (a newline, or the end of the output)."""
        if not self.done:
            if self.length > MAX_LINE_BYTES:
                if _opens_marker_line(self.head):  # e.g. the marker, then the line ended
                    self.too_long(self.line_no)
            else:
                self.add(parse_learn_line(bytes(self.head), self.line_no))
        self.line_no += 1
        self.open = self.done = False
        self.length = 0
        self.head.clear()

    def feed(self, chunk: bytes) -> None:
        """Read the next chunk of output."""
        pos = 0
        if self.open:
            nl = chunk.find(b"\n")
            self.extend(chunk if nl < 0 else chunk[:nl])
            if nl < 0:
                return
            self.end_line()
            pos = nl + 1
        last = chunk.rfind(b"\n", pos)
        if last >= 0:
            self._complete_lines(chunk, pos, last)
            pos = last + 1
        if pos < len(chunk):
            self.extend(chunk[pos:])

    def _complete_lines(self, chunk: bytes, start: int, last: int) -> None:
        """The whole lines in ``chunk[start:last]`` (``chunk[last]`` is their final newline).
        Only a line holding the marker can be a marker line, so only those are looked at."""
        at = chunk.find(MARKER, start, last)
        cursor, line_no = start, self.line_no
        while at >= 0:
            line_start = chunk.rfind(b"\n", start, at) + 1 or start
            line_end = chunk.find(b"\n", at, last + 1)
            line_no += chunk.count(b"\n", cursor, line_start)
            cursor = line_start
            line = chunk[line_start:line_end]
            if len(line) <= MAX_LINE_BYTES:
                self.add(parse_learn_line(line, line_no))
            elif _opens_marker_line(line.lstrip(_LEADING_WS)[: len(MARKER) + 1]):
                self.too_long(line_no)
            at = chunk.find(MARKER, line_end, last)
        self.line_no = line_no + chunk.count(b"\n", cursor, last + 1)

    def result(self) -> LearnScan:
        return LearnScan(tuple(self.lines), tuple(self.problems), self.malformed, self.over_limit)


def scan_output(
    path: Path, max_lines: int, *, chunk_size: int = 1 << 16, max_bytes: int | None = None
) -> LearnScan:
    """Read a run's output file for marker lines, in chunks of ``chunk_size`` bytes, at most
    ``max_bytes`` of it. A missing file holds nothing, and so does anything but a regular
    file (the run's own process could have swapped its log for a symlink to /dev/zero or a
    FIFO: it is opened without following links, without blocking, and judged on the open
    descriptor); any other OSError propagates (the task retries)."""
    scanner = _Scanner(max(0, max_lines))
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        return scanner.result()
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # a symlink
            return scanner.result()
        raise
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return scanner.result()
        left = max_bytes
        while chunk := f.read(chunk_size if left is None else min(chunk_size, left)):
            scanner.feed(chunk)
            if left is not None:
                left -= len(chunk)
                if left <= 0:
                    break
    if scanner.open:
        scanner.end_line()
    return scanner.result()


def sampled(run_id: str, percent: int) -> bool:
    """Whether the run's output is reflected on at ``[learning] sampling_percent``: decided by
    the run id alone, so a retried reflection decides the same."""
    if percent <= 0:
        return False
    if percent >= 100:
        return True
    digest = hashlib.sha256(run_id.encode()).digest()
    return int.from_bytes(digest[:8], "big") % 100 < percent
