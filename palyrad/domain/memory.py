"""Memory items and learning candidates as people see them (SPEC §4.8): limits, validation
and JSON shapes.

The limits bound what one item costs everywhere it goes (the journal, the full-text index, a
search's result, an embedder's stdin): 16 KiB of UTF-8 text, at most 16 tags of 1-64
characters from ``[A-Za-z0-9_.:-]`` (a tag is a filter, not prose), a query of at most 1 KiB,
at most 100 results. Violations are ``InvalidInput`` naming the field and the limit.
"""

from __future__ import annotations

import re
from typing import Any

from palyrad.domain.learning import CONTROL
from palyrad.domain.memory_records import LearningCandidate, MemoryItem
from routines.errors import InvalidInput
from routines.timefmt import format_rfc3339

MAX_TEXT_BYTES = 16 * 1024
MAX_TAGS = 16
MAX_QUERY_BYTES = 1024
MAX_RESULTS = 100
MAX_LIST = 10_000
DAY_MS = 86_400_000
SOURCE_OPERATOR = "operator"
_TAG = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


def check_text(text: str, what: str = "text") -> str:
    """The item text: stripped, non-empty, at most ``MAX_TEXT_BYTES``, no NUL."""
    stripped = text.strip()
    if not stripped:
        raise InvalidInput(f"{what} is empty", "give the text to remember")
    size = len(stripped.encode("utf-8", errors="surrogatepass"))
    if size > MAX_TEXT_BYTES:
        raise InvalidInput(
            f"{what} is {size} bytes; the limit is {MAX_TEXT_BYTES}",
            "store a shorter text (split it into several items)",
        )
    if "\0" in stripped:
        raise InvalidInput(f"{what} contains a NUL character", "remove it")
    if (bad := CONTROL.search(stripped)) is not None:
        raise InvalidInput(
            f"{what} contains the control character U+{ord(bad.group()):04X}",
            "only tab and newline are allowed (no terminal escapes)",
        )
    try:
        stripped.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput(f"{what} is not valid Unicode ({exc.reason})", "fix the text") from exc
    return stripped


def check_tag(tag: str) -> str:
    if not _TAG.fullmatch(tag):
        raise InvalidInput(
            f"tag {tag[:80]!r} is not valid",
            "a tag is 1-64 characters of letters, digits, '_', '.', ':' or '-' (e.g. --tag home)",
        )
    return tag


def check_tags(tags: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    """Valid, de-duplicated (order kept), at most ``MAX_TAGS``."""
    unique = tuple(dict.fromkeys(check_tag(t) for t in tags))
    if len(unique) > MAX_TAGS:
        raise InvalidInput(f"{len(unique)} tags; the limit is {MAX_TAGS}", "give fewer --tag")
    return unique


def check_query(query: str) -> str:
    stripped = query.strip()
    if not stripped:
        raise InvalidInput("the search query is empty", "give words to search for")
    if len(stripped.encode("utf-8", errors="surrogatepass")) > MAX_QUERY_BYTES:
        raise InvalidInput(
            f"the search query is longer than {MAX_QUERY_BYTES} bytes", "search for fewer words"
        )
    return stripped


_ULID = re.compile(r"[0-9A-HJKMNP-TV-Z]{26}")


def check_id(value: str, what: str) -> str:
    """An item or candidate id as typed: a ULID, any case, spaces around."""
    cleaned = value.strip().upper()
    if not _ULID.fullmatch(cleaned):
        shown = value.encode("utf-8", "backslashreplace").decode("ascii", "backslashreplace")
        raise InvalidInput(
            f"{what} id {shown[:80]!r} is not valid",
            "an id is 26 characters (a ULID), as palyra memory list / candidates print it",
        )
    return cleaned


def check_limit(limit: int, most: int = MAX_RESULTS) -> int:
    if not 1 <= limit <= most:
        raise InvalidInput(f"--limit must be 1-{most} (got {limit})", "pass e.g. --limit 10")
    return limit


def check_ttl_days(days: int) -> int:
    if not 1 <= days <= 36_500:
        raise InvalidInput(f"--ttl-days must be 1-36500 (got {days})", "pass e.g. --ttl-days 30")
    return days


def format_time(ms: int | None) -> str | None:
    """RFC 3339 with milliseconds, or None."""
    return None if ms is None else format_rfc3339(ms, always_ms=True)


def item_to_json(item: MemoryItem) -> dict[str, Any]:
    """The item object of SPEC §4.8, with ``*_unix_ms`` twins of its times."""
    return {
        "item_id": item.item_id,
        "text": item.text,
        "tags": list(item.tags),
        "source": item.source,
        "created_at": format_time(item.created_ms),
        "created_at_unix_ms": item.created_ms,
        "expires_at": format_time(item.expires_ms),
        "expires_at_unix_ms": item.expires_ms,
    }


def candidate_to_json(c: LearningCandidate) -> dict[str, Any]:
    """The candidate object of SPEC §4.8 (plus its status, line and decision time)."""
    return {
        "candidate_id": c.candidate_id,
        "kind": c.kind,
        "text": c.text,
        "confidence": c.confidence,
        "run_id": c.run_id,
        "routine_id": c.routine_id,
        "created_at": format_time(c.created_ms),
        "created_at_unix_ms": c.created_ms,
        "status": c.status,
        "line": c.line_no,
        "decided_at": format_time(c.decided_ms),
        "item_id": c.item_id,
    }
