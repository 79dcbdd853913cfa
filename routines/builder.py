"""Building routine JSON objects from CLI-style options (``palyra cron add``).

The builder only assembles a JSON object; ``routines.validate.parse_routine`` then checks it
exactly as it would check a hand-written one, so the CLI and the file share every rule and
every message.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from routines.model import canonical_enum, schedule_to_json
from routines.phrases import resolve_phrase


def unique_id(base: str, taken: Collection[str]) -> str:
    """``base``, else ``base-2``, ``base-3``… — the first that is not taken."""
    if base not in taken:
        return base
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"


def parse_quiet_hours(text: str) -> dict[str, str]:
    """``22:00-07:00`` → ``{"start": "22:00", "end": "07:00"}`` (validated later)."""
    start, sep, end = text.partition("-")
    if not sep:
        raise ValueError(f"quiet hours {text!r} must look like 22:00-07:00")
    return {"start": start.strip(), "end": end.strip()}


def schedule_routine_object(
    *,
    routine_id: str,
    name: str,
    schedule_text: str,
    zone: str,
    now_ms: int,
    action: dict[str, Any],
    enabled: bool = True,
    concurrency: str | None = None,
    misfire: str | None = None,
    grace_ms: int | None = None,
    jitter_ms: int | None = None,
    max_attempts: int | None = None,
    backoff_ms: int | None = None,
    quiet_hours: str | None = None,
    approval: str | None = None,
) -> dict[str, Any]:
    """The routine object ``cron add`` writes; only the options given are spelled out
    beyond the schedule (the rest take the SPEC defaults when validated)."""
    schedule = resolve_phrase(schedule_text, zone_name=zone, now_ms=now_ms)
    obj: dict[str, Any] = {
        "id": routine_id,
        "name": name,
        "enabled": enabled,
        "trigger": {"kind": "schedule", "schedule": schedule_to_json(schedule)},
        "action": action,
    }
    if concurrency is not None:
        obj["concurrency"] = canonical_enum(concurrency)
    misfire_obj: dict[str, Any] = {}
    if misfire is not None:
        misfire_obj["policy"] = canonical_enum(misfire)
    if grace_ms is not None:
        misfire_obj["grace_ms"] = grace_ms
    if misfire_obj:
        obj["misfire"] = misfire_obj
    if jitter_ms is not None:
        obj["jitter_ms"] = jitter_ms
    retry: dict[str, Any] = {}
    if max_attempts is not None:
        retry["max_attempts"] = max_attempts
    if backoff_ms is not None:
        retry["backoff_ms"] = backoff_ms
    if retry:
        obj["retry"] = retry
    if quiet_hours is not None:
        obj["quiet_hours"] = parse_quiet_hours(quiet_hours)
    if approval is not None:
        obj["approval"] = canonical_enum(approval)
    return obj


def command_action(
    *, shell: str | None, argv: tuple[str, ...] | None, prompt: str | None
) -> dict[str, Any]:
    """Exactly one of ``--command`` / ``--argv`` / ``--prompt`` as an action object."""
    given = [x for x in (shell, argv, prompt) if x]
    if len(given) != 1:
        raise ValueError("give exactly one of --command, --argv or --prompt")
    if shell:
        return {"kind": "command", "shell": shell}
    if argv:
        return {"kind": "command", "argv": list(argv)}
    return {"kind": "prompt", "prompt": prompt}
