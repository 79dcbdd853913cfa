"""The environment of a run's process: the daemon's, the action's, and ``PALYRA_*``."""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping

from palyrad.domain.runs import Run
from routines.timefmt import format_rfc3339


def build_env(
    run: Run,
    action_env: Mapping[str, str],
    base: Mapping[str, str] | None = None,
    scrub: Iterable[str] = (),
) -> dict[str, str]:
    """The daemon's environment (``base``, default a fresh copy of ``os.environ``) without
    the ``scrub`` variables (webhook secrets, SPEC §4.5) + the action's ``env`` + the SPEC
    §2.2 ``PALYRA_*`` variables."""
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
    if run.scheduled_for_ms is not None:
        env["PALYRA_SCHEDULED_FOR"] = format_rfc3339(run.scheduled_for_ms)
    else:
        env.pop("PALYRA_SCHEDULED_FOR", None)
    return env
