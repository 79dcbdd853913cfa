"""The scheduler's request socket, ``run/control.sock``: run-now answered in one round trip.

Every other CLI command journals first and pokes second. run-now has a 100 ms budget from the
keystroke to a running process, and on a loaded two-core machine the CLI's share of it —
Python, SQLite, the journal module and its dataclasses, before a poke even leaves — was most
of it. Through this socket the CLI needs none of that: it sends one JSON line, and the
scheduler (which holds the applied definitions in memory) re-checks the file on disk, journals
the trigger, decides it through the policies, pokes the executor and answers with the
decision. The record is as durable as before (the scheduler commits it before answering);
with no daemon listening, the CLI falls back to journaling the trigger itself.

The socket lives in the home's 0700 ``run/`` directory and is itself 0600, so only the owner
can connect. Requests are capped (size, open connections, time to send a complete line) and
a malformed one gets an error reply or a closed connection, never a crashed scheduler.

The client is ``palyrad.runtime.control_client`` (kept light: it is on the CLI's start-up path).
The transport is ``palyrad.runtime.request_socket.ControlServer``; ``RequestHandler`` here
answers the requests with the scheduler's parts.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import orjson

from palyrad.ops.triggers import MAX_PAYLOAD_BYTES, manual_run, refusal

if TYPE_CHECKING:
    from palyrad.services.context import ServiceContext
    from palyrad.services.scheduler.decisions import Decisions
    from palyrad.services.scheduler.definitions import DefinitionsLoader
    from palyrad.services.scheduler.state import SchedulerState

log = logging.getLogger("palyrad.control")


class RequestHandler:
    """Answers the socket's requests in the scheduler's thread, with its journal connection."""

    def __init__(
        self,
        ctx: ServiceContext,
        state: SchedulerState,
        definitions: DefinitionsLoader,
        decisions: Decisions,
    ) -> None:
        self.ctx = ctx
        self.state = state
        self.journal = state.journal
        self.definitions = definitions
        self.decisions = decisions

    def __call__(self, msg: dict[str, Any]) -> dict[str, Any]:
        """A request from the control socket. ``run_now``: the same checks and records as
        ``palyrad.ops.triggers.run_now``, decided before the answer."""
        if msg.get("op") != "run_now":
            return {"ok": False, "error": "unknown_op"}
        rid, payload = msg.get("routine_id"), msg.get("payload")
        if not isinstance(rid, str) or not (payload is None or isinstance(payload, str)):
            return {"ok": False, "error": "bad_request"}
        if payload is not None:
            if len(payload.encode()) > MAX_PAYLOAD_BYTES:
                return {"ok": False, "error": "bad_payload", "message": "payload too large"}
            try:
                orjson.loads(payload)
            except orjson.JSONDecodeError as exc:
                return {"ok": False, "error": "bad_payload", "message": exc.msg}
        # read your writes: an edit just saved is applied first
        self.definitions.reload_if_changed()
        item = self.state.routines.get(rid)
        why = refusal(
            item.routine if item is not None else None,
            rid,
            lambda r: self.journal.approvals.is_approved(r.id, r.content_hash()),
        )
        if why is not None:
            return {"ok": False, "error": "refused", "message": why}
        now = self.state.clock.now_ms()
        run = manual_run(rid, payload, now)
        self.journal.runs.insert(run)
        if self.decisions.decide_triggers(now):
            self.ctx.poke("executor")
        got = self.journal.runs.get(run.run_id)
        assert got is not None
        return {
            "ok": True,
            "run_id": got.run_id,
            "status": got.status,
            "error_kind": got.error_kind,
        }
