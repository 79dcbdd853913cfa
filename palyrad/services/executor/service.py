"""The executor service: claims decided pending runs, runs them, finalizes them.

Each run is a subprocess in its own session (process group = pid), so a timeout, a cancel
or a crash-recovery kill reaches everything it spawned. Output goes through a pipe that we
copy into ``runs/<run_id>.log`` (size-capped, the last 4 KiB kept as ``output_tail``), so a
chatty action can never fill the disk. Running runs are heartbeated; a run the executor can
no longer vouch for (its executor died) is finalized ``daemon_crashed`` at the next start.

One thread does everything: child output pipes, child exits (pidfds) and pokes are fds in
the service's one selector. Two threads per run (a pump and a waiter) cost hundreds of thread
starts a second under load, and every one of them competes for the GIL exactly when the next
run is due — the main source of start-lateness tails we measured.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import signal
import subprocess
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from palyrad.domain.runs import (
    ARM_AHEAD_MS,
    OUTPUT_TAIL_BYTES,
    Run,
    RunStatus,
    retry_follow_up,
    spec_of,
)
from palyrad.journal import STATE_LISTENED_EVENTS, Journal
from palyrad.runtime.process_groups import kill_orphan_group, signal_group
from palyrad.services.context import ServiceContext
from palyrad.services.executor.delivery import deliver
from routines.timefmt import format_rfc3339, now_ms, seconds_until

log = logging.getLogger("palyrad.executor")

KILL_GRACE_MS = 10_000
IDLE_WAIT_S = 3.0
EOF_GRACE_MS = 2_000
# Before any other work, the loop first spawns runs due within this lead (sleeping the rest):
# a finalize or a claim takes a fraction of a millisecond and must not make a launch late.
LAUNCH_LEAD_S = 0.002
FORCE_EOF_MS = 1_000


@dataclass
class ActiveRun:
    run: Run
    proc: subprocess.Popen[bytes]
    log_path: Path
    started_ms: int
    deadline_ms: int
    log_file: IO[bytes] | None = None
    stdin_data: memoryview | None = None
    pidfd: int | None = None
    tail: deque[bytes] = field(default_factory=deque)
    tail_len: int = 0
    written: int = 0
    truncated: bool = False
    eof: bool = False
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


@dataclass
class Prepared:
    """A claimed run with everything for its spawn ready, waiting for its instant."""

    run: Run
    argv: list[str]
    cwd: str | None
    env: dict[str, str]
    stdin_data: bytes | None
    log_path: Path
    log_file: IO[bytes]
    timeout_ms: int
    launch_ms: int

    def discard(self) -> None:
        """Undo the preparation of a run that will not start here."""
        self.log_file.close()
        with contextlib.suppress(OSError):
            self.log_path.unlink()


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


def build_env(
    run: Run, action_env: dict[str, str], base: dict[str, str] | None = None
) -> dict[str, str]:
    """The daemon's environment (``base``, default a fresh copy of ``os.environ``) + the
    action's ``env`` + the SPEC §2.2 ``PALYRA_*`` variables."""
    env = dict(os.environ if base is None else base)
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


def _pidfd(pid: int) -> int | None:
    """A pidfd for ``pid`` (Linux ≥ 5.3): readable once the process exits."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


class Executor:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.journal: Journal = ctx.journal
        self.owner = f"executor:{ctx.instance}:{os.getpid()}"
        self.active: dict[str, ActiveRun] = {}
        self.armed: dict[str, Prepared] = {}  # claimed, spawning on their instant
        self._listened: set[str] = set()
        self._listened_at = -10_000
        # os.environ is re-encoded on every copy; the daemon's own environment is fixed.
        self._base_env = dict(os.environ)

    # --- crash recovery ------------------------------------------------------------------

    def recover(self) -> None:
        """Finalize runs a dead executor left ``running``; retry them if policy allows."""
        now = now_ms()
        released = self.journal.release_foreign_leases(self.owner, now)
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
        """Claim runnable runs up to capacity: due ones spawn now; ones due within
        ``ARM_AHEAD_MS`` are prepared and wait in ``armed`` for their instant."""
        capacity = self.ctx.config.max_concurrent_runs - len(self.active) - len(self.armed)
        if capacity <= 0 or self.ctx.stopping:
            return
        now = now_ms()
        candidates = self.journal.runnable_pending(now + ARM_AHEAD_MS, capacity * 4 + 16)
        if not candidates:
            return
        busy = self.journal.running_routine_ids()
        busy |= {a.run.routine_id for a in self.active.values()}
        busy |= {p.run.routine_id for p in self.armed.values()}
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
            if run.run_id in leased and (prepared := self.prepare(run)) is not None:
                self.armed[run.run_id] = prepared
        # Due-now runs spawn at once (launch_ms 0 or past), the others on their instant.
        self.launch_due(LAUNCH_LEAD_S)

    def launch_due(self, lead_s: float = 0.0) -> None:
        """Spawn the armed runs whose instant is within ``lead_s``, each on its instant;
        runs already due go first, in the order they were claimed (manual triggers first)."""
        while self.armed:
            now = now_ms()
            nxt = min(self.armed.values(), key=lambda p: max(p.launch_ms, now))
            left = seconds_until(nxt.launch_ms)
            if left > lead_s:
                return
            if left > 0:
                time.sleep(left)
            del self.armed[nxt.run.run_id]
            self.launch(nxt)

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

    def prepare(self, run: Run) -> Prepared | None:
        """Everything a spawn needs except the spawn; None when the run cannot start (it is
        finalized here)."""
        spec = spec_of(run)
        action = spec.get("action") or {}
        log_path = self.ctx.home.run_log(run.run_id)
        try:
            argv, stdin_data = self._command(run, action)
        except SpawnError as exc:
            self._finish_unstarted(run, exc.kind, str(exc))
            return None
        cwd = action.get("cwd")
        env_extra = {str(k): str(v) for k, v in (action.get("env") or {}).items()}
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
        return Prepared(
            run=run,
            argv=argv,
            cwd=os.path.expanduser(cwd) if cwd else None,
            env=build_env(run, env_extra, self._base_env),
            stdin_data=stdin_data,
            log_path=log_path,
            log_file=os.fdopen(os.open(log_path, flags, 0o600), "wb"),
            timeout_ms=int(action.get("timeout_ms", 3_600_000)),
            launch_ms=run.not_before_ms or 0,
        )

    def launch(self, p: Prepared) -> None:
        """Spawn a prepared run and mark it running (stamped right after the spawn)."""
        run = p.run
        try:
            proc = subprocess.Popen(
                p.argv,
                cwd=p.cwd,
                env=p.env,
                stdin=subprocess.PIPE if p.stdin_data is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                close_fds=True,
            )
        except OSError as exc:
            p.discard()  # no process, no log: the run's error says why
            self._finish_unstarted(
                run, "spawn_failed", f"cannot start {p.argv[0]!r}: {exc.strerror}"
            )
            return
        started = now_ms()
        active = ActiveRun(
            run, proc, p.log_path, started, started + p.timeout_ms, log_file=p.log_file
        )
        self.active[run.run_id] = active
        self._watch(active, p.stdin_data)
        if not self.journal.mark_started(
            run.run_id, self.owner, proc.pid, started, str(p.log_path)
        ):
            # Lost the lease (e.g. cancelled meanwhile): stop what we just started.
            signal_group(proc.pid, signal.SIGKILL)
            active.reason = "cancelled"
        log.debug("run started", extra={"run_id": run.run_id, "routine_id": run.routine_id})

    # --- child I/O and exits, all on the service's selector ------------------------------

    def _watch(self, active: ActiveRun, stdin_data: bytes | None) -> None:
        proc = active.proc
        assert proc.stdout is not None
        out_fd = proc.stdout.fileno()
        os.set_blocking(out_fd, False)
        self.ctx.register(out_fd, selectors.EVENT_READ, lambda _m: self._on_output(active))
        if stdin_data is not None and proc.stdin is not None:
            active.stdin_data = memoryview(stdin_data)
            in_fd = proc.stdin.fileno()
            os.set_blocking(in_fd, False)
            self.ctx.register(in_fd, selectors.EVENT_WRITE, lambda _m: self._on_stdin(active))
        active.pidfd = _pidfd(proc.pid)
        if active.pidfd is not None:
            self.ctx.register(active.pidfd, selectors.EVENT_READ, lambda _m: self._reap(active))
        else:  # no pidfds (old kernel): a waiter thread per run, as a fallback
            threading.Thread(target=self._wait_thread, args=(active,), daemon=True).start()

    def _on_output(self, active: ActiveRun) -> bool:
        """Copy what the child wrote to the run log up to the cap, keeping the tail; True
        (look again) only at EOF, when the run may be ready to finalize."""
        assert active.proc.stdout is not None
        fd = active.proc.stdout.fileno()
        while True:
            try:
                chunk = os.read(fd, 65536)
            except BlockingIOError:
                return False
            except OSError:
                chunk = b""
            if not chunk:
                self._close_output(active)
                return True
            self._record_output(active, chunk)

    def _record_output(self, active: ActiveRun, chunk: bytes) -> None:
        active.add_tail(chunk)
        log_file = active.log_file
        if log_file is None:
            return
        try:
            if active.written < self.ctx.config.max_output_bytes:
                part = chunk[: self.ctx.config.max_output_bytes - active.written]
                log_file.write(part)
                active.written += len(part)
            elif not active.truncated:
                active.truncated = True
                log_file.write(b"\n[palyra: output truncated at the size cap]\n")
            # Flushed per read: `palyra runs show --follow` tails the file while it runs.
            log_file.flush()
        except OSError as exc:
            # A full disk must not take the executor down: the log stops here, the tail
            # (in memory) is still kept for output_tail, and the run goes on.
            log.warning(
                "run log write failed; output kept in the tail only",
                extra={"run_id": active.run.run_id, "error": exc.strerror},
            )
            with contextlib.suppress(OSError):
                log_file.close()
            active.log_file = None

    def _close_output(self, active: ActiveRun) -> None:
        if active.eof:
            return
        active.eof = True
        stdout = active.proc.stdout
        if stdout is not None:
            self.ctx.unregister(stdout.fileno())
            stdout.close()
        if active.log_file is not None:
            with contextlib.suppress(OSError):  # the last flush can meet a full disk too
                active.log_file.close()
            active.log_file = None
        self._close_stdin(active)

    def _on_stdin(self, active: ActiveRun) -> bool:
        """Feed a prompt to the agent runner without ever blocking the loop."""
        data = active.stdin_data
        stdin = active.proc.stdin
        if data is None or stdin is None:
            self._close_stdin(active)
            return False
        try:
            n = os.write(stdin.fileno(), data[:65536])
        except BlockingIOError:
            return False
        except OSError:  # the runner closed its stdin early; what it read is what it gets
            n = len(data)
        active.stdin_data = data[n:] if n < len(data) else None
        if active.stdin_data is None:
            self._close_stdin(active)
        return False

    def _close_stdin(self, active: ActiveRun) -> None:
        stdin = active.proc.stdin
        active.stdin_data = None
        if stdin is not None and not stdin.closed:
            self.ctx.unregister(stdin.fileno())
            with contextlib.suppress(OSError):
                stdin.close()

    def _reap(self, active: ActiveRun) -> bool:
        if active.proc.poll() is None:
            return False
        active.exited_ms = active.exited_ms or now_ms()
        if active.pidfd is not None:
            self.ctx.unregister(active.pidfd)
            os.close(active.pidfd)
            active.pidfd = None
        return True

    def _wait_thread(self, active: ActiveRun) -> None:
        active.proc.wait()
        active.exited_ms = now_ms()
        self.ctx.wake()

    def _force_eof(self, active: ActiveRun) -> None:
        """Something outside the run's group still holds its output pipe: take what is
        buffered and stop listening."""
        if not active.eof:
            self._on_output(active)
            self._close_output(active)

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
            elif (prepared := self.armed.pop(run_id, None)) is not None:
                prepared.discard()
                self.journal.finish_run(
                    run_id,
                    status=RunStatus.CANCELLED,
                    finished_ms=now,
                    error_kind="cancelled",
                    error_message="cancelled before it started",
                    owner=self.owner,
                )
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
            if not active.eof:
                if now - active.exited_ms < EOF_GRACE_MS:
                    continue
                # The main process is gone but something in its group holds the pipe open:
                # kill the group, and if the pipe outlives that too (a process that left
                # the group), stop waiting for it.
                signal_group(active.proc.pid, signal.SIGKILL)
                if now - active.exited_ms < EOF_GRACE_MS + FORCE_EOF_MS:
                    continue
                self._force_eof(active)
            self.finalize(active, now)
            self.launch_due(LAUNCH_LEAD_S)

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
            if a.exited_ms is not None and not a.eof:
                wake = min(wake, a.exited_ms + EOF_GRACE_MS, now + 100)
        wake = min(wake, now + self.ctx.config.heartbeat_interval_ms)
        for p in self.armed.values():
            wake = min(wake, p.launch_ms)
        nxt = self.journal.next_pending_ms()
        if (
            nxt is not None
            and len(self.active) + len(self.armed) < self.ctx.config.max_concurrent_runs
        ):
            wake = min(wake, max(nxt - ARM_AHEAD_MS, now))
        return max(0.0, seconds_until(wake))

    def finish_ready(self) -> None:
        """Finalize the runs whose process exited and whose output pipe is drained."""
        now = now_ms()
        for active in list(self.active.values()):
            if active.exited_ms is not None and active.eof:
                self.finalize(active, now)

    def stop_all(self) -> None:
        """Graceful stop: SIGTERM every run, SIGKILL after the deadline, finalize them.
        Armed runs never started: they go back to the queue for the next start."""
        for prepared in self.armed.values():
            prepared.discard()
            self.journal.release_lease(prepared.run.run_id, self.owner, now_ms())
        self.armed.clear()
        now = now_ms()
        for active in self.active.values():
            if active.exited_ms is None:  # finished runs are finalized as what they were
                self._terminate(active, "daemon_stopped", now)
        deadline = time.monotonic() + self.ctx.config.stop_timeout_ms / 1000
        while self.active and time.monotonic() < deadline:
            self.ctx.wait(0.2)
            self.finish_ready()
        for active in list(self.active.values()):
            signal_group(active.proc.pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                active.proc.wait(timeout=5)
            self._reap(active)
            if not active.eof:
                self._force_eof(active)
            self.finalize(active, now_ms())


def run_executor(ctx: ServiceContext) -> None:
    ex = Executor(ctx)
    ex.recover()
    ctx.ready()
    last_heartbeat = 0
    try:
        while not ctx.stopping:
            ex.launch_due(LAUNCH_LEAD_S)
            now = now_ms()
            ex.supervise(now)
            ex.claim_and_start()
            ex.launch_due(LAUNCH_LEAD_S)
            now = now_ms()
            if now - last_heartbeat >= ctx.config.heartbeat_interval_ms:
                ex.heartbeat(now)
                last_heartbeat = now
            ctx.wait(ex.next_wake_s(now))
    finally:
        ex.stop_all()
