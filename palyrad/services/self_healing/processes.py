"""The ``process`` domain: a daemon service that is ``fatal``, silent, or wedged (SPEC §6).

Every service journals a heartbeat (``process_heartbeats``) from its heartbeat thread: at
once when it starts, then every ~2 s, with ``state = "stalled"`` when its main loop has not
come back to its wait for a long time (``ServiceContext.loop_state``). Subject: the service
name. Judged against the supervisor's own view (run/status.json), so a service the
supervisor is already restarting is not killed again, and a heartbeat row left by the
previous process of that name never condemns its successor:

- ``fatal`` (restarted too often; the supervisor waits a cool-down): critical. The fix asks
  the supervisor to start it now.
- ``running`` and its heartbeat (from this very pid) is older than ``process_silence_ms``
  and so is its last pipe heartbeat to the supervisor (a journal that cannot be written
  delays the first, never the second), or its heartbeat says ``stalled``: the fix is
  SIGKILL, after checking the pid is still a child of our supervisor; the supervisor
  restarts it with its usual backoff.
- ``restarting``/``starting`` while its incident is open: still open (the fix is under way),
  never remediated again. The incident resolves once the service runs and beats.

The self-healing process does not judge itself (a wedged self_healing cannot run this): its
pipe heartbeats stop while its own loop is stalled (``ServiceContext._pipe_heartbeat``), and
the supervisor kills any service whose pipe heartbeats stop for 30 s.
"""

from __future__ import annotations

import os
import signal

from palyrad.runtime.notify import request_fatal_restart
from palyrad.runtime.process_groups import parent_pid
from palyrad.runtime.status import read_status
from palyrad.seams import Finding, RemediationFailed
from palyrad.services.context import ServiceContext
from routines.timefmt import format_rfc3339


class ProcessDetector:
    domain = "process"

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    def detect(self, now_ms: int, open_subjects: frozenset[str]) -> list[Finding]:
        status = read_status(self.ctx.home)
        if not status.running:
            return []
        beats = self.ctx.journal.heartbeats.all()
        silence_ms = self.ctx.config.process_silence_ms
        findings: list[Finding] = []
        for proc in status.processes:
            name = proc.name
            if name == self.ctx.name:
                continue
            if proc.state == "fatal":
                retry = (
                    f"; the supervisor tries again at {format_rfc3339(proc.retry_at_ms)}"
                    if proc.retry_at_ms is not None
                    else ""
                )
                findings.append(
                    Finding(
                        "process",
                        name,
                        "critical",
                        f"{name} crashed {proc.restarts} times and was given up on (fatal)"
                        f"{retry}; see logs/palyrad.log",
                    )
                )
                continue
            beat = beats.get(name)
            # (pid, daemon instance, restart count) name this very process: a pid recycled
            # from an earlier daemon or an earlier restart is not it.
            current = (
                beat is not None
                and proc.pid is not None
                and (beat.pid, beat.instance, beat.restarts)
                == (proc.pid, status.instance, proc.restarts)
            )
            if proc.state != "running" or not current:
                if name in open_subjects:  # being restarted, or not beating yet
                    findings.append(
                        Finding(
                            "process",
                            name,
                            "warning",
                            f"{name} is {proc.state}; waiting for it to run and heartbeat",
                            remediable=False,
                        )
                    )
                continue
            assert beat is not None
            # Its last sign of life: the journal beat, or the supervisor's pipe heartbeat.
            # The pipe one keeps coming while the journal is locked (by another service
            # frozen inside a write), so only the frozen one reads as silent then.
            age_ms = now_ms - max(beat.heartbeat_ms, proc.last_heartbeat_ms or 0)
            if age_ms > silence_ms:
                summary = (
                    f"{name} (pid {proc.pid}) has been silent for {age_ms / 1000:.1f} s"
                    f" (process_silence_ms {silence_ms}): stopped, hung or starved"
                )
            elif beat.state == "stalled":
                summary = f"{name} (pid {proc.pid}): its main loop has been busy too long (wedged)"
            else:
                continue
            findings.append(Finding("process", name, "warning", summary))
        return findings


class RestartProcess:
    """SIGKILL a silent or wedged service (the supervisor restarts it), or ask the
    supervisor to start a fatal one now. Idempotent: a service that is already restarting,
    or whose pid is no longer our supervisor's child, is left alone."""

    domain = "process"
    action = "restart_process"
    journal_free = True

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    def apply(self, finding: Finding, now_ms: int) -> str:
        name = finding.subject
        status = read_status(self.ctx.home)
        proc = status.process(name)
        if proc is None:
            raise RemediationFailed(f"the supervisor does not report a service named {name}")
        if proc.state == "fatal":
            if not request_fatal_restart(self.ctx.home.run_dir):
                raise RemediationFailed("the supervisor is not reading run/notify")
            return f"asked the supervisor to start {name} now instead of after its cool-down"
        if proc.state != "running" or proc.pid is None:
            return f"{name} is already {proc.state}; nothing to do"
        # The daemon's supervisor, as status names it (not our own parent: if the supervisor
        # died a moment ago we were re-parented, and so was the service).
        parent = parent_pid(proc.pid)
        if parent is not None and parent != status.pid:
            raise RemediationFailed(
                f"pid {proc.pid} is no longer {name} (its parent is {parent}); not killed"
            )
        try:
            os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            return f"{name} (pid {proc.pid}) had already exited"
        except PermissionError as exc:
            raise RemediationFailed(f"cannot signal pid {proc.pid}: {exc}") from exc
        return f"sent SIGKILL to {name} (pid {proc.pid}); the supervisor restarts it"
