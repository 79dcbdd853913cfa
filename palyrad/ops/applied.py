"""The definitions a read command shows: the file, or — while the file is broken or missing —
what the daemon is actually running, with a warning naming the first error.

A hand edit that breaks definitions.json does not stop the daemon (it keeps the last good
definitions), so ``routines list``, ``show``, ``cron list`` and ``cron status`` must not go
blind either: they show the last applied copy and say why. Edits still refuse a broken file.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from palyrad.ops.edits import default_timezone
from palyrad.runtime.home import Home
from routines.definitions_file import load, read_document
from routines.errors import InvalidInput
from routines.model import Definitions
from routines.validate import format_issue, validate_text


@dataclass(frozen=True, slots=True)
class ShownDefinitions:
    definitions: Definitions
    warning: str | None = None  # set when these are the daemon's last good, not the file


def definitions_to_show(
    home: Home, *, now_ms: int, env: Mapping[str, str], display_name: str
) -> ShownDefinitions:
    """The file's definitions; else the last applied ones with a warning; else
    ``InvalidInput`` naming the first error (nothing was ever applied)."""
    tz = default_timezone(home)
    result = load(home.definitions, now_ms=now_ms, env=env, default_timezone=tz)
    missing = read_document(home.definitions).missing
    if result.definitions is not None and not (missing and home.last_good_definitions.exists()):
        return ShownDefinitions(result.definitions)
    if missing:
        problem = f"{display_name} is missing"
    else:
        first = format_issue(display_name, result.errors[0])
        more = f" and {len(result.errors) - 1} more" if len(result.errors) > 1 else ""
        problem = f"{first}{more}"
    last = read_document(home.last_good_definitions)
    if last.data is not None:
        applied = validate_text(
            last.data,
            filename=str(home.last_good_definitions),
            now_ms=now_ms,
            env=env,
            default_timezone=tz,
        )
        if applied.definitions is not None:
            return ShownDefinitions(
                applied.definitions,
                f"{problem}; showing the definitions palyrad last applied"
                " (fix the file; run: palyra routines validate)",
            )
    raise InvalidInput(problem, "run: palyra routines validate")
