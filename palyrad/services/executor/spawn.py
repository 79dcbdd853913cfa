"""Prepare a claimed run (argv, environment, log file) and spawn it on its instant.

Each run is a subprocess in its own session (process group = pid), so a timeout, a cancel or
a crash-recovery kill reaches everything it spawned. Everything but the ``fork``/``exec`` is
done ahead (``prepare``), so an armed run's start costs only the spawn; ``launch_due`` sleeps
the last stretch to the instant itself.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from palyrad.domain.run_spec import RunSpec
from palyrad.domain.runs import Run
from palyrad.seams import ActionRunner, ActionUnavailable, Invocation
from palyrad.services.executor.actions import build_env
from palyrad.services.executor.actions.env import payload_too_large
from palyrad.services.executor.active_run import ActiveRun
from palyrad.services.executor.finalize import Finalizer
from palyrad.services.executor.output import ChildIO
from palyrad.services.executor.state import ExecutorPart, ExecutorState
from routines.kinds import ErrorKind
from routines.timefmt import seconds_until

log = logging.getLogger("palyrad.executor")

# Before any other work, the loop first spawns runs due within this lead (sleeping the rest):
# a finalize or a claim takes a fraction of a millisecond and must not make a launch late.
LAUNCH_LEAD_S = 0.002


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
    payload_file: Path | None = None
    pass_fds: tuple[int, ...] = ()
    release: Callable[[], None] | None = None

    def released(self) -> None:
        """Close what only the child needed (once spawned, or when it never will be)."""
        if self.release is not None:
            release, self.release = self.release, None
            release()

    def discard(self) -> None:
        """Undo the preparation of a run that will not start here."""
        self.released()
        self.log_file.close()
        with contextlib.suppress(OSError):
            self.log_path.unlink()
        if self.payload_file is not None:
            with contextlib.suppress(OSError):
                self.payload_file.unlink()


class Launcher(ExecutorPart):
    """Turns claimed runs into prepared ones (``armed``) and spawns them (``active``)."""

    def __init__(
        self,
        state: ExecutorState,
        runners: Mapping[str, ActionRunner],
        io: ChildIO,
        finalizer: Finalizer,
    ) -> None:
        super().__init__(state)
        self.runners = runners
        self.io = io
        self.finalizer = finalizer
        # os.environ is re-encoded on every copy; the daemon's own environment is fixed.
        self._base_env = dict(os.environ)

    def _invocation(self, run: Run) -> tuple[Invocation, int, tuple[str, ...]]:
        """The process a run's action asks for, its timeout, and the daemon's variables it
        must not see; raises ActionUnavailable."""
        spec = RunSpec.from_json(run.spec)
        if spec is None or spec.action is None:
            raise ActionUnavailable(
                ErrorKind.SPAWN_FAILED, "the run has no action this daemon can read"
            )
        action = spec.action
        runner = self.runners.get(action.kind)
        if runner is None:
            raise ActionUnavailable(ErrorKind.SPAWN_FAILED, f"unknown action kind {action.kind!r}")
        inv = runner.prepare(run, action)
        timeout_ms = action.timeout_ms if inv.timeout_ms is None else inv.timeout_ms
        return inv, timeout_ms, spec.scrub_env

    def prepare(self, run: Run) -> Prepared | None:
        """Everything a spawn needs except the spawn; None when the run cannot start (it is
        finalized here)."""
        log_path = self.ctx.home.run_log(run.run_id)
        try:
            inv, timeout_ms, scrub = self._invocation(run)
        except ActionUnavailable as exc:
            self.finalizer.finish_unstarted(run, exc.error_kind, str(exc))
            return None
        try:
            return self._prepared(run, inv, timeout_ms, scrub, log_path)
        except BaseException:
            if inv.release is not None:  # e.g. a skill's sealed artifact: never leaked
                inv.release()
            raise

    def _prepared(
        self,
        run: Run,
        inv: Invocation,
        timeout_ms: int,
        scrub: tuple[str, ...],
        log_path: Path,
    ) -> Prepared | None:
        flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
        payload_file: Path | None = None
        if payload_too_large(run):
            payload_file = log_path.with_suffix(".payload.json")
            try:
                fd = os.open(payload_file, flags | os.O_NOFOLLOW, 0o600)
                with os.fdopen(fd, "wb") as f:
                    f.write((run.trigger_payload or "").encode("utf-8", "surrogatepass"))
            except OSError as exc:
                self.finalizer.finish_unstarted(
                    run, ErrorKind.SPAWN_FAILED, f"could not write the trigger payload: {exc}"
                )
                if inv.release is not None:
                    inv.release()
                return None
        return Prepared(
            run=run,
            argv=list(inv.argv),
            cwd=inv.cwd,
            env=build_env(run, inv.env, self._base_env, scrub, payload_file),
            stdin_data=inv.stdin,
            log_path=log_path,
            log_file=os.fdopen(os.open(log_path, flags, 0o600), "wb"),
            timeout_ms=timeout_ms,
            launch_ms=run.not_before_ms or 0,
            payload_file=payload_file,
            pass_fds=inv.pass_fds,
            release=inv.release,
        )

    def launch_due(self, lead_s: float = 0.0) -> None:
        """Spawn the armed runs whose instant is within ``lead_s``, each on its instant;
        runs already due go first, in the order they were claimed (manual triggers first)."""
        while self.armed:
            now = self.clock.now_ms()
            nxt = min(self.armed.values(), key=lambda p: max(p.launch_ms, now))
            # A real wait to the wall instant, at the clock's full resolution (a whole-ms
            # "now" would spawn up to 1 ms late): a duration to sleep, not a decision.
            left = seconds_until(nxt.launch_ms)
            if left > lead_s:
                return
            if left > 0:
                time.sleep(left)
            del self.armed[nxt.run.run_id]
            self.launch(nxt)

    def launch(self, p: Prepared) -> None:
        """Spawn a prepared run and mark it running (stamped right after the spawn)."""
        run = p.run
        try:
            # The intent first: from here on, a crash can no longer give this run back to
            # the queue as if it never started (see intents.py).
            self.intents.record(run.run_id)
        except OSError as exc:
            p.discard()
            self.finalizer.finish_unstarted(
                run, ErrorKind.SPAWN_FAILED, f"cannot record the spawn intent: {exc.strerror}"
            )
            return
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
                pass_fds=p.pass_fds,
            )
        except OSError as exc:
            p.discard()  # no process, no log: the run's error says why
            # Popen names the directory it could not enter in ``filename``: blame the cwd,
            # not the program, when that is what failed.
            what = (
                f"cannot enter its cwd {p.cwd!r}"
                if p.cwd is not None and exc.filename == p.cwd
                else f"cannot start {p.argv[0]!r}"
            )
            self.finalizer.finish_unstarted(run, ErrorKind.SPAWN_FAILED, f"{what}: {exc.strerror}")
            return
        p.released()
        started = self.clock.now_ms()
        active = ActiveRun(
            run, proc, p.log_path, started, started + p.timeout_ms, log_file=p.log_file
        )
        self.active[run.run_id] = active
        self.io.watch(active, p.stdin_data)
        if not self.journal.leases.mark_started(
            run.run_id, self.owner, proc.pid, started, str(p.log_path)
        ):
            # Lost the lease (e.g. cancelled meanwhile): stop what we just started.
            active.signal(signal.SIGKILL)
            active.reason = ErrorKind.CANCELLED
        self.intents.settled()  # this run's start is in the journal (or it was refused)
        log.debug("run started", extra={"run_id": run.run_id, "routine_id": run.routine_id})
