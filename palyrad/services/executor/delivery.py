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

from palyrad.domain.runs import Run, run_to_json
from palyrad.journal import Journal

log = logging.getLogger("palyrad.delivery")


def result_record(run: Run) -> dict[str, Any]:
    """The delivered record: the run's JSON (SPEC §3) without internals."""
    return run_to_json(run)


def should_deliver(silent_policy: str | None, status: str) -> bool:
    if silent_policy == "audit_only":
        return False
    if silent_policy == "failure_only":
        return status not in ("succeeded", "skipped")
    return True


def deliver(journal: Journal, run: Run, delivery: dict[str, Any], now_ms: int) -> None:
    mode = delivery.get("mode", "logs_only")
    if mode == "logs_only" or run.status in ("pending", "running"):
        return
    record = orjson.dumps(result_record(run))
    try:
        if mode == "file":
            path = os.path.expanduser(str(delivery.get("path", "")))
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, record + b"\n")
            finally:
                os.close(fd)
        elif mode == "channel":
            if not should_deliver(delivery.get("silent_policy"), run.status):
                return
            channel = str(delivery.get("channel"))
            if run.status != "succeeded" and delivery.get("failure_channel"):
                channel = str(delivery["failure_channel"])
            journal.add_outbox(channel, run.routine_id, run.run_id, record.decode(), now_ms)
    except OSError as exc:
        log.warning(
            "delivery failed",
            extra={"run_id": run.run_id, "mode": mode, "error": exc.strerror},
        )
