"""Text tables for people (``node list``, ``incidents list``): JSON is the stable shape."""

from __future__ import annotations

import re

import click


def short_time(text: str | None) -> str:
    """An RFC 3339 time without its milliseconds (tables are for people)."""
    if not text:
        return "-"
    head, dot, tail = text.partition(".")
    return head + tail[3:] if dot else text


def table(header: list[str], rows: list[list[str]]) -> None:
    """Print left-aligned columns, as wide as their widest cell."""
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(header)]
    for row in [header, *rows]:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


# Control characters (ESC, BEL, CR, newline...) shown escaped: a cell is one line, and text
# that came from a run or a node must never drive the operator's terminal.
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")


def _escape(match: re.Match[str]) -> str:
    return match.group().encode("unicode_escape").decode("ascii")


def clip(text: str, limit: int) -> str:
    text = _CONTROL.sub(_escape, text)
    return text if len(text) <= limit else text[: limit - 1] + "…"
