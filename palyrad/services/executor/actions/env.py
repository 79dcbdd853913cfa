"""The environment of a run's process: the daemon's, the action's, and ``PALYRA_*``.

Linux caps one environment string at 128 KiB (``MAX_ARG_STRLEN``; a longer one makes the
spawn fail with E2BIG), and a webhook body may be a megabyte. A trigger payload longer than
``INLINE_PAYLOAD_BYTES`` is therefore written to a file beside the run's log; the run gets
its path as ``PALYRA_TRIGGER_PAYLOAD_FILE``, and ``PALYRA_TRIGGER_PAYLOAD`` says where it went
(``{"payload_file": path, "bytes": n}``), so a script that reads only the variable fails
with a clear message rather than a truncated document.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import orjson

from palyrad.domain.runs import Run
from routines.timefmt import format_rfc3339

INLINE_PAYLOAD_BYTES = 64 * 1024  # what run-now, events and hooks accept: always inline


def payload_too_large(run: Run) -> bool:
    """Whether the run's payload goes to a file rather than the environment."""
    payload = run.trigger_payload
    return (
        payload is not None and len(payload.encode("utf-8", "surrogatepass")) > INLINE_PAYLOAD_BYTES
    )


def build_env(
    run: Run,
    action_env: Mapping[str, str],
    base: Mapping[str, str] | None = None,
    scrub: Iterable[str] = (),
    payload_file: Path | None = None,
) -> dict[str, str]:
    """The daemon's environment (``base``, default a fresh copy of ``os.environ``) without
    the ``scrub`` variables (webhook secrets, SPEC §4.5) + the action's ``env`` + the SPEC
    §2.2 ``PALYRA_*`` variables. ``payload_file``: where a payload too large for the
    environment was written (see the module docstring)."""
    env = dict(os.environ if base is None else base)
    for name in scrub:
        env.pop(name, None)
    # An action's own ``env`` is the definition's value, not the daemon's secret: it stays.
    env.update(action_env)
    env.update(
        PALYRA_ROUTINE_ID=run.routine_id,
        PALYRA_RUN_ID=run.run_id,
        PALYRA_ATTEMPT=str(run.attempt),
        PALYRA_TRIGGER_KIND=run.trigger_kind,
        PALYRA_TRIGGER_PAYLOAD=run.trigger_payload or "{}",
    )
    env.pop("PALYRA_TRIGGER_PAYLOAD_FILE", None)
    if payload_file is not None:
        size = len((run.trigger_payload or "").encode("utf-8", "surrogatepass"))
        env["PALYRA_TRIGGER_PAYLOAD"] = orjson.dumps(
            {"payload_file": str(payload_file), "bytes": size}
        ).decode()
        env["PALYRA_TRIGGER_PAYLOAD_FILE"] = str(payload_file)
    if run.scheduled_for_ms is not None:
        env["PALYRA_SCHEDULED_FOR"] = format_rfc3339(run.scheduled_for_ms)
    else:
        env.pop("PALYRA_SCHEDULED_FOR", None)
    return env
