"""Text tables for people (``node list``, ``incidents list``): JSON is the stable shape."""

from __future__ import annotations

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


def clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"
