"""Where a run's result goes once it ends (SPEC §2.3 ``delivery``).

``logs_only``: the journal and the run log are the record. ``file``: one JSON line per run
appended to the file (``O_APPEND``, so concurrent runs never interleave a line). ``channel``:
a row in the journal's outbox, kept until a paired node acknowledges it. Delivery problems
are logged and never change the run's own outcome.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import orjson

from palyrad.domain.runs import Run, RunStatus, run_to_json
from palyrad.journal import Journal
from routines.model import Delivery, SilentPolicy

log = logging.getLogger("palyrad.delivery")


def result_record(run: Run) -> dict[str, Any]:
    """The delivered record: the run's JSON (SPEC §3) without internals."""
    return run_to_json(run)


def should_deliver(silent_policy: str | None, status: str) -> bool:
    """Whether a channel hears about a run that ended ``status`` under ``silent_policy``."""
    if silent_policy == SilentPolicy.AUDIT_ONLY:
        return False
    if silent_policy == SilentPolicy.FAILURE_ONLY:
        return status == RunStatus.FAILED  # failed and timed-out runs (SPEC §7)
    return True


def deliver(
    journal: Journal, run: Run, delivery: Delivery, now_ms: int, *, raise_errors: bool = False
) -> bool:
    """Deliver a finished run's result as its spec's ``delivery`` says. A delivery problem
    (a file that cannot be written) is logged, and raised too with ``raise_errors`` (the
    ``delivery`` task: its attempt fails and is retried). True when an entry went into the
    outbox (the caller then pokes node_rpc, whose watch streams send it on)."""
    mode = delivery.mode
    if mode == "logs_only" or run.status in (RunStatus.PENDING, RunStatus.RUNNING):
        return False
    record = orjson.dumps(result_record(run))
    try:
        if mode == "file":
            path = os.path.expanduser(str(delivery.path or ""))
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, record + b"\n")
            finally:
                os.close(fd)
        elif mode == "channel":
            if not should_deliver(delivery.silent_policy, run.status):
                return False
            channel = str(delivery.channel)
            if run.status == RunStatus.FAILED and delivery.failure_channel:
                channel = str(delivery.failure_channel)
            # Once per run and channel: the delivery task is at-least-once.
            _id, added = journal.outbox.add_once(
                channel, run.routine_id, run.run_id, record.decode(), now_ms
            )
            return added
    except OSError as exc:
        log.warning(
            "delivery failed",
            extra={"run_id": run.run_id, "mode": mode, "error": exc.strerror},
        )
        if raise_errors:
            raise
    return False
