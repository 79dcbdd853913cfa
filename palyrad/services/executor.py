"""The executor service: claims decided pending runs, runs them, finalizes them.

Each run is a subprocess in its own session (process group = pid), so a timeout, a cancel
or a crash-recovery kill reaches everything it spawned. Output goes through a pipe that we
pump into ``runs/<run_id>.log`` (size-capped, the last 4 KiB kept as ``output_tail``), so a
chatty action can never fill the disk. Running runs are heartbeated; a run the executor can
no longer vouch for (its executor died) is finalized ``daemon_crashed`` at the next start.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from palyrad.delivery import deliver
from palyrad.journal import STATE_LISTENED_EVENTS, Journal
from palyrad.process_groups import kill_orphan_group, signal_group
from palyrad.runs import OUTPUT_TAIL_BYTES, Run, RunStatus, retry_follow_up, spec_of
from palyrad.services import ServiceContext
from routines.timefmt import format_rfc3339, now_ms

log = logging.getLogger("palyrad.executor")

KILL_GRACE_MS = 10_000
IDLE_WAIT_S = 3.0
EOF_GRACE_MS = 2_000


@dataclass
class ActiveRun:
    run: Run
    proc: subprocess.Popen[bytes]
    log_path: Path
    started_ms: int
    deadline_ms: int
    tail: deque[bytes] = field(default_factory=deque)
    tail_len: int = 0
    eof: threading.Event = field(default_factory=threading.Event)
    exited_ms: int | None = None
    term_sent_ms: int | None = None
    killed: bool = False
    reason: str | None = None  # timeout | cancelled | daemon_stopped

    def add_tail(self, chunk: bytes) -> None:
        self.tail.append(chunk)
        self.tail_len += len(chunk)
        while self.tail_len - len(self.tail[0]) >= OUTPUT_TAIL_BYTES:
            self.tail_len -= len(self.tail.popleft())

    def tail_text(self) -> str:
        data = b"".join(self.tail)[-OUTPUT_TAIL_BYTES:]
        return data.decode("utf-8", errors="replace")


def classify_outcome(reason: str | None, code: int) -> tuple[RunStatus, str | None, str | None]:
    """A finished process's run status, error_kind and message.

    Why we stopped it decides first (cancel, timeout), except that a process that exited 0
    succeeded even if a daemon stop was racing its end: a finished success is never turned
    into a failure that the retry policy would then run again.
    """
    if reason == "cancelled":
        return RunStatus.CANCELLED, "cancelled", "cancelled"
    if reason == "timeout":
        return RunStatus.FAILED, "timeout", "timed out"
    if code == 0:
        return RunStatus.SUCCEEDED, None, None
    if reason == "daemon_stopped":
        return RunStatus.FAILED, "daemon_stopped", "the daemon stopped"
    msg = f"exited with code {code}" if code >= 0 else f"killed by signal {-code}"
    return RunStatus.FAILED, "exit_code", msg


class SpawnError(Exception):
    """The action could not be started; ``kind`` is the run's error_kind."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def build_env(run: Run, action_env: dict[str, str]) -> dict[str, str]:
    """The daemon's environment + the action's ``env`` + the SPEC §2.2 ``PALYRA_*`` vars."""
    env = dict(os.environ)
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


class Executor:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.journal: Journal = ctx.journal
        self.owner = f"executor:{ctx.instance}:{os.getpid()}"
        self.active: dict[str, ActiveRun] = {}
        self.max_concurrent = ctx.config.max_concurrent_runs
        self.max_output = ctx.config.max_output_bytes
        self._listened: set[str] = set()
        self._listened_at = -10_000

    # --- crash recovery ------------------------------------------------------------------

    def recover(self) -> None:
        """Finalize runs a dead executor left ``running``; retry them if policy allows."""
        now = now_ms()
        released = self.journal.release_foreign_leases(self.owner)
        orphans = self.journal.running_not_owned_by(self.owner)
        for run in orphans:
            killed = kill_orphan_group(run.pid, run.started_at_ms)
            follow = retry_follow_up(run, RunStatus.FAILED.value, now)
            self.journal.finish_run(
                run.run_id,
                status=RunStatus.FAILED,
                finished_ms=now,
                error_kind="daemon_crashed",
                error_message="the daemon died while this run was running"
                + ("; its process group was killed" if killed else ""),
                follow_up=follow,
            )
        if orphans or released:
            log.warning(
                "recovered runs of a crashed executor",
                extra={"orphans": len(orphans), "released": released},
            )

    # --- claiming and spawning -----------------------------------------------------------

    def claim_and_start(self) -> None:
        capacity = self.max_concurrent - len(self.active)
        if capacity <= 0 or self.ctx.stopping:
            return
        now = now_ms()
        candidates = self.journal.runnable_pending(now, capacity * 4 + 16)
        if not candidates:
            return
        busy = self.journal.running_routine_ids() | {a.run.routine_id for a in self.active.values()}
        heads = self.journal.active_heads()
        chosen: list[Run] = []
        for run in candidates:
            exclusive = spec_of(run).get("concurrency", "forbid") != "allow"
            if exclusive and (run.routine_id in busy or heads.get(run.routine_id) != run.chain_id):
                # One at a time, oldest chain first: queued and catch-up runs wait their
                # turn, and a retry waiting out its backoff keeps its place in line.
                continue
            chosen.append(run)
            if exclusive:
                busy.add(run.routine_id)
            if len(chosen) >= capacity:
                break
        leased = set(self.journal.lease([r.run_id for r in chosen], self.owner, now))
        for run in chosen:
            if run.run_id in leased:
                self.start(run)

    def _command(self, run: Run, action: dict[str, Any]) -> tuple[list[str], bytes | None]:
        kind = action.get("kind")
        if kind == "command":
            if action.get("argv"):
                return [str(a) for a in action["argv"]], None
            return ["/bin/sh", "-c", str(action.get("shell", ""))], None
        if kind == "prompt":
            runner = self.ctx.config.agent_command
            if not runner:
                raise SpawnError(
                    "agent_runner_not_configured",
                    "prompt routines need [agent] command = [...] in palyra.toml",
                )
            return list(runner), str(action.get("prompt", "")).encode()
        if kind == "skill":
            raise SpawnError(
                "skill_unavailable", f"skill {action.get('skill_id')!r} is not installed"
            )
        raise SpawnError("spawn_failed", f"unknown action kind {kind!r}")

    def start(self, run: Run) -> None:
        spec = spec_of(run)
        action = spec.get("action") or {}
        log_path = self.ctx.home.run_log(run.run_id)
        try:
            argv, stdin_data = self._command(run, action)
            cwd = action.get("cwd")
            cwd = os.path.expanduser(cwd) if cwd else None
            env = build_env(run, {str(k): str(v) for k, v in (action.get("env") or {}).items()})
            log_file = open(log_path, "wb")  # noqa: SIM115 - handed to the pump thread
            os.chmod(log_path, 0o600)
            try:
                proc = subprocess.Popen(
                    argv,
                    cwd=cwd,
                    env=env,
                    stdin=subprocess.PIPE if stdin_data is not None else subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    close_fds=True,
                )
            except OSError as exc:
                log_file.close()
                raise SpawnError(
                    "spawn_failed", f"cannot start {argv[0]!r}: {exc.strerror}"
                ) from exc
        except SpawnError as exc:
            self._finish_unstarted(run, exc.kind, str(exc))
            return
        started = now_ms()
        timeout = int(action.get("timeout_ms", 3_600_000))
        active = ActiveRun(run, proc, log_path, started, started + timeout)
        self.active[run.run_id] = active
        if not self.journal.mark_started(run.run_id, self.owner, proc.pid, started, str(log_path)):
            # Lost the lease (e.g. cancelled meanwhile): stop what we just started.
            signal_group(proc.pid, signal.SIGKILL)
            active.reason = "cancelled"
        threading.Thread(
            target=self._pump, args=(active, log_file, stdin_data), daemon=True
        ).start()
        threading.Thread(target=self._wait, args=(active,), daemon=True).start()
        log.debug("run started", extra={"run_id": run.run_id, "routine_id": run.routine_id})

    def _pump(self, active: ActiveRun, log_file: IO[bytes], stdin_data: bytes | None) -> None:
        """Copy output to the run log up to the cap, keeping the tail; feed the prompt."""
        proc = active.proc
        if stdin_data is not None and proc.stdin is not None:

            def feed() -> None:
                with contextlib.suppress(OSError):
                    assert proc.stdin is not None
                    proc.stdin.write(stdin_data)
                    proc.stdin.close()

            threading.Thread(target=feed, daemon=True).start()
        written = 0
        truncated = False
        assert proc.stdout is not None
        fd = proc.stdout.fileno()
        try:
            while True:
                chunk = os.read(fd, 65536)
                if not chunk:
                    break
                active.add_tail(chunk)
                if written < self.max_output:
                    part = chunk[: self.max_output - written]
                    log_file.write(part)
                    log_file.flush()
                    written += len(part)
                elif not truncated:
                    truncated = True
                    log_file.write(b"\n[palyra: output truncated at the size cap]\n")
                    log_file.flush()
        except OSError:
            pass
        finally:
            log_file.close()
            active.eof.set()
            self.ctx.wake()

    def _wait(self, active: ActiveRun) -> None:
        active.proc.wait()
        active.exited_ms = now_ms()
        self.ctx.wake()

    def _finish_unstarted(self, run: Run, kind: str, message: str) -> None:
        now = now_ms()
        self.journal.finish_run(
            run.run_id,
            status=RunStatus.FAILED,
            finished_ms=now,
            error_kind=kind,
            error_message=message,
            owner=self.owner,
            follow_up=retry_follow_up(run, RunStatus.FAILED.value, now),
        )
        log.warning("run could not start", extra={"run_id": run.run_id, "error_kind": kind})

    # --- supervision of running runs -----------------------------------------------------

    def _terminate(self, active: ActiveRun, reason: str, now: int) -> None:
        if active.term_sent_ms is None:
            active.reason = active.reason or reason
            active.term_sent_ms = now
            signal_group(active.proc.pid, signal.SIGTERM)

    def supervise(self, now: int) -> None:
        for run_id in self.journal.cancel_requested_ids(self.owner):
            active = self.active.get(run_id)
            if active is not None:
                self._terminate(active, "cancelled", now)
        for active in list(self.active.values()):
            if active.exited_ms is None:
                if now >= active.deadline_ms:
                    self._terminate(active, "timeout", now)
                if (
                    active.term_sent_ms is not None
                    and not active.killed
                    and now - active.term_sent_ms >= KILL_GRACE_MS
                ):
                    active.killed = True
                    signal_group(active.proc.pid, signal.SIGKILL)
                continue
            if not active.eof.is_set():
                if now - active.exited_ms < EOF_GRACE_MS:
                    continue
                # The main process is gone but something in its group holds the pipe open.
                signal_group(active.proc.pid, signal.SIGKILL)
                if not active.eof.wait(1.0):
                    continue
            self.finalize(active, now)

    def finalize(self, active: ActiveRun, now: int) -> None:
        # Leftovers in the group after the main process ended are ours to clean up.
        signal_group(active.proc.pid, signal.SIGKILL)
        self.active.pop(active.run.run_id, None)
        code = active.proc.returncode
        run = active.run
        status, kind, msg = classify_outcome(active.reason, code)
        follow = retry_follow_up(run, status.value, now)
        done = self.journal.finish_run(
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
        if done:
            self.after_finish(run.run_id, now)
        (log.info if status is not RunStatus.SUCCEEDED else log.debug)(
            "run finished",
            extra={"run_id": run.run_id, "status": status.value, "exit_code": code},
        )

    def after_finish(self, run_id: str, now: int) -> None:
        """Deliver the result and emit ``run.succeeded``/``run.failed`` if anyone listens."""
        run = self.journal.get_run(run_id)
        if run is None:
            return
        deliver(self.journal, run, spec_of(run).get("delivery") or {}, now)
        name = {"succeeded": "run.succeeded", "failed": "run.failed"}.get(run.status)
        if name is None or name not in self.listened_events(now):
            return
        depth = 0
        if run.trigger_kind == "system_event" and run.trigger_payload:
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
        self.journal.emit_event(name, orjson.dumps(payload).decode(), now)
        self.ctx.poke("scheduler")

    def listened_events(self, now: int) -> set[str]:
        """Event names some routine listens to (published by the scheduler; cached 1 s)."""
        if now - self._listened_at > 1_000:
            raw = self.journal.get_state(STATE_LISTENED_EVENTS)
            self._listened = set(orjson.loads(raw)) if raw else set()
            self._listened_at = now
        return self._listened

    def heartbeat(self, now: int) -> None:
        if self.active:
            self.journal.heartbeat_runs(self.owner, now)

    def next_wake_s(self, now: int) -> float:
        wake = now + int(IDLE_WAIT_S * 1000)
        for a in self.active.values():
            wake = min(wake, a.deadline_ms)
            if a.term_sent_ms is not None:
                wake = min(wake, a.term_sent_ms + KILL_GRACE_MS)
            if a.exited_ms is not None:
                wake = min(wake, now + 100)
        wake = min(wake, now + self.ctx.config.heartbeat_interval_ms)
        nxt = self.journal.next_pending_ms()
        if nxt is not None and len(self.active) < self.max_concurrent:
            wake = min(wake, max(nxt, now))
        return max(0.0, (wake - now) / 1000)

    def stop_all(self) -> None:
        """Graceful stop: SIGTERM every run, SIGKILL after the deadline, finalize them."""
        now = now_ms()
        for active in self.active.values():
            if active.exited_ms is None:  # finished runs are finalized as what they were
                self._terminate(active, "daemon_stopped", now)
        deadline = time.monotonic() + self.ctx.config.stop_timeout_ms / 1000
        while self.active and time.monotonic() < deadline:
            for active in list(self.active.values()):
                if active.exited_ms is not None and active.eof.wait(0.2):
                    self.finalize(active, now_ms())
            time.sleep(0.05)
        for active in list(self.active.values()):
            signal_group(active.proc.pid, signal.SIGKILL)
            active.proc.wait(timeout=5)
            active.eof.wait(1.0)
            self.finalize(active, now_ms())


def run_executor(ctx: ServiceContext) -> None:
    ex = Executor(ctx)
    ex.recover()
    ctx.ready()
    last_heartbeat = 0
    try:
        while not ctx.stopping:
            now = now_ms()
            ex.supervise(now)
            ex.claim_and_start()
            now = now_ms()
            if now - last_heartbeat >= ctx.config.heartbeat_interval_ms:
                ex.heartbeat(now)
                last_heartbeat = now
            ctx.wait(ex.next_wake_s(now))
    finally:
        ex.stop_all()
