"""A run's end: classify the outcome, finalize the record with its retry, then deliver the
result and emit ``run.*`` events.

A failed attempt's finalization and its retry (the next attempt, ``not_before`` after its
backoff) are written in one transaction, so a crash between them cannot lose the retry.
"""

from __future__ import annotations

import contextlib
import logging
import signal

import orjson

# retry_follow_up imports these on first use; loading them with the executor keeps that
# import (20-70 ms on a loaded machine) out of the first run's finish (bench/node_rpc.py).
import routines.model
import routines.policies  # noqa: F401
from palyrad.domain.run_spec import RunSpec
from palyrad.domain.runs import Run, RunStatus, new_ulid, retry_follow_up
from palyrad.domain.tasks import DELIVERY, POST_RUN_REFLECTION
from palyrad.journal import STATE_LISTENED_EVENTS
from palyrad.runtime.process_groups import signal_group
from palyrad.services.executor.active_run import ActiveRun
from palyrad.services.executor.state import ExecutorPart, ExecutorState
from routines.kinds import ErrorKind, SystemEvent, TriggerKind
from routines.model import Delivery

log = logging.getLogger("palyrad.executor")

# The event a finished run emits (when some routine listens), by its final status.
RUN_EVENTS: dict[str, str] = {
    RunStatus.SUCCEEDED: SystemEvent.RUN_SUCCEEDED,
    RunStatus.FAILED: SystemEvent.RUN_FAILED,
}


def classify_outcome(
    reason: str | None, code: int
) -> tuple[RunStatus, ErrorKind | None, str | None]:
    """A finished process's run status, error_kind and message.

    Why we stopped it decides first (cancel, timeout), except that a process that exited 0
    succeeded even if a daemon stop (or crash) was racing its end: a finished success is
    never turned into a failure that the retry policy would then run again.
    """
    if reason == ErrorKind.CANCELLED:
        return RunStatus.CANCELLED, ErrorKind.CANCELLED, "cancelled"
    if reason == ErrorKind.TIMEOUT:
        return RunStatus.FAILED, ErrorKind.TIMEOUT, "timed out"
    if code == 0:
        return RunStatus.SUCCEEDED, None, None
    if reason == ErrorKind.DAEMON_STOPPED:
        return RunStatus.FAILED, ErrorKind.DAEMON_STOPPED, "the daemon stopped"
    if reason == ErrorKind.DAEMON_CRASHED:
        return (
            RunStatus.FAILED,
            ErrorKind.DAEMON_CRASHED,
            "the daemon died while this run was running (its supervisor was killed)",
        )
    msg = f"exited with code {code}" if code >= 0 else f"killed by signal {-code}"
    return RunStatus.FAILED, ErrorKind.EXIT_CODE, msg


class Finalizer(ExecutorPart):
    """Writes the end of this executor's runs and what follows from it."""

    def __init__(self, state: ExecutorState) -> None:
        super().__init__(state)
        self._state = state
        self._listened: set[str] = set()
        self._listened_at = -10_000

    def nudge_tasks(self) -> None:
        self._state.nudge_tasks()

    def finish_unstarted(self, run: Run, kind: str, message: str) -> None:
        """Fail a claimed run that could not start (``kind`` is its error_kind); retry it
        if its policy allows."""
        now = self.clock.now_ms()
        self.journal.runs.finish(
            run.run_id,
            status=RunStatus.FAILED,
            finished_ms=now,
            error_kind=kind,
            error_message=message,
            owner=self.owner,
            follow_up=retry_follow_up(run, RunStatus.FAILED, now),
        )
        log.warning("run could not start", extra={"run_id": run.run_id, "error_kind": kind})

    def finalize(self, active: ActiveRun, now: int) -> None:
        """Record how a started run ended (and its retry), then deliver and announce it."""
        # Leftovers in the group after the main process ended are ours to clean up.
        signal_group(active.proc.pid, signal.SIGKILL)
        self.active.pop(active.run.run_id, None)
        code = active.proc.returncode
        run = active.run
        status, kind, msg = classify_outcome(active.reason, code)
        follow = retry_follow_up(run, status, now)
        # The finish and its delivery task are one transaction: a crash between them can
        # lose neither (the delivery runs on the queue, never on this loop).
        with self.journal.transaction():
            done = self.journal.runs.finish(
                run.run_id,
                status=status,
                finished_ms=now,
                exit_code=code,
                error_kind=kind,
                error_message=msg,
                output_tail=active.tail_text(),
                owner=self.owner,
                follow_up=follow,
            )
            queued = done and self._enqueue_delivery(run, now)
            if done and active.learn_marker_seen:
                # Learning reads the log after the run (SPEC §6), off this loop.
                payload = orjson.dumps({"run_id": run.run_id}).decode()
                self.journal.tasks.enqueue(new_ulid(now), POST_RUN_REFLECTION, payload, now)
                queued = True
        if queued:
            self.nudge_tasks()
        if done:
            self.after_finish(run.run_id, now)
        (log.info if status is not RunStatus.SUCCEEDED else log.debug)(
            "run finished",
            extra={"run_id": run.run_id, "status": status.value, "exit_code": code},
        )

    def _enqueue_delivery(self, run: Run, now: int) -> bool:
        """Queue the ``delivery`` task of a run whose spec delivers to a file or channel
        (inside the caller's transaction); whether one was queued."""
        spec = RunSpec.from_json(run.spec)
        mode = (Delivery() if spec is None else spec.delivery).mode
        if mode == "logs_only":
            return False
        payload = orjson.dumps({"run_id": run.run_id}).decode()
        self.journal.tasks.enqueue(new_ulid(now), DELIVERY, payload, now, priority=10)
        return True

    def after_finish(self, run_id: str, now: int) -> None:
        """Emit ``run.succeeded``/``run.failed`` if anyone listens (delivery is a task)."""
        run = self.journal.runs.get(run_id)
        if run is None:
            return
        name = RUN_EVENTS.get(run.status)
        if name is None or name not in self.listened_events(now):
            return
        depth = 0
        if run.trigger_kind == TriggerKind.SYSTEM_EVENT and run.trigger_payload:
            with contextlib.suppress(ValueError, TypeError, AttributeError):
                depth = int(orjson.loads(run.trigger_payload).get("depth", 0)) + 1
        payload = {
            "run_id": run.run_id,
            "routine_id": run.routine_id,
            "status": run.status,
            "error_kind": run.error_kind,
            "exit_code": run.exit_code,
            "depth": depth,
        }
        self.journal.events.emit(name, orjson.dumps(payload).decode(), now)
        self.ctx.poke("scheduler")

    def listened_events(self, now: int) -> set[str]:
        """Event names some routine listens to (published by the scheduler; cached 1 s)."""
        if now - self._listened_at > 1_000:
            raw = self.journal.state.get(STATE_LISTENED_EVENTS)
            self._listened = set(orjson.loads(raw)) if raw else set()
            self._listened_at = now
        return self._listened
