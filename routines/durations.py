"""Durations as people type them on the command line: ``30s``, ``10m``, ``2h``, ``1h30m``.

One parser for every CLI option that takes a span of time (``palyra node pair-code --ttl``
first). Config files keep integer milliseconds (``*_ms``, SPEC conventions); this is only
the human spelling. The caller checks the range, since only it knows which range applies.
"""

from __future__ import annotations

import re

__all__ = ["DURATION_EXAMPLES", "DurationError", "format_duration_ms", "parse_duration_ms"]

DURATION_EXAMPLES = "e.g. 30s, 10m, 2h, 1h30m or plain seconds"

# Units in descending order, each at most once: 1d2h3m4s. At most 12 digits per part (more is
# a typo, never a duration, and keeps int() far from its digit limit).
_DURATION = re.compile(
    r"(?:(?P<d>\d{1,12})d)?(?:(?P<h>\d{1,12})h)?(?:(?P<m>\d{1,12})m)?(?:(?P<s>\d{1,12})s)?"
)
_UNIT_MS = {"d": 86_400_000, "h": 3_600_000, "m": 60_000, "s": 1_000}


class DurationError(ValueError):
    """Text that is not a duration (the message quotes it)."""


def parse_duration_ms(text: str) -> int:
    """``text`` as milliseconds. Accepted: a plain number of seconds (``90``), or one or more
    ``<n><unit>`` parts with units ``d``, ``h``, ``m``, ``s`` in that order, each at most
    once (``1h30m``, ``2h``, ``45s``); case and spaces between parts do not matter.
    ``DurationError`` for anything else (empty, negative, fractions, ``ms``, repeated or
    out-of-order units)."""
    compact = "".join(text.split()).lower()
    if re.fullmatch(r"\d{1,12}", compact):
        return int(compact) * 1_000
    m = _DURATION.fullmatch(compact)
    if not compact or m is None or not any(m.groupdict().values()):
        raise DurationError(f"cannot read {text!r} as a duration")
    return sum(int(v) * _UNIT_MS[k] for k, v in m.groupdict().items() if v is not None)


def format_duration_ms(ms: int) -> str:
    """The short spelling ``parse_duration_ms`` reads back: ``1h30m``, ``45s``, ``0s``
    (whole seconds; a remainder below a second is dropped)."""
    seconds = max(0, ms) // 1_000
    parts: list[str] = []
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)):
        n, seconds = divmod(seconds, size)
        if n:
            parts.append(f"{n}{unit}")
    return "".join(parts) or "0s"
