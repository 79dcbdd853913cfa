"""The supervisor: palyrad's main process. Tiny on purpose, so it almost never crashes.

It owns the pid-file lock (one daemon per home), spawns each service as its own OS process
(``multiprocessing`` with the ``spawn`` start method — never ``fork`` once threads exist),
restarts crashed ones one-for-one with exponential backoff and an intensity limit, relays
pokes (child pipes and the ``run/notify`` FIFO), and turns SIGTERM/SIGINT into a graceful stop
with a deadline. It never touches SQLite: its view of the world is written to
``run/status.json`` for ``palyra daemon status`` to read.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import time
from dataclasses import dataclass, field
from multiprocessing.process import BaseProcess
from typing import Any

import orjson

from palyrad.domain.runs import new_token
from palyrad.runtime.config import DaemonConfig
from palyrad.runtime.daemon_log import rotate_if_needed
from palyrad.runtime.home import Home
from palyrad.runtime.notify import POKE_ALL, RESTART_FATAL, SERVICE_FOR_BYTE, ensure_fifo
from palyrad.runtime.status import DaemonStatus, ProcessStatus, write_status
from palyrad.runtime.stop_request import take_stop_request
from palyrad.services.registry import SERVICE_NAMES, child_main
from palyrad.supervisor.restarts import (
    RestartHistory,
    RestartPolicy,
    ServiceState,
    after_exit,
    check_transition,
)
from routines.errors import PalyraError

log = logging.getLogger("palyrad.supervisor")


SILENT_CHILD_S = 30.0
STATUS_INTERVAL_S = 1.0


class AlreadyRunning(PalyraError, RuntimeError):
    """Another palyrad holds this home's pid-file lock."""


class PidLock:
    """An ``flock`` on run/palyrad.pid: held exactly as long as the supervisor lives.

    A kernel lock (not the file's existence) is the truth, so a stale pid file after a
    crash never blocks the next start and never reads as running.
    """

    def __init__(self, home: Home) -> None:
        self.path = home.pid_file
        self.fd: int | None = None

    def acquire(self, info: dict[str, Any]) -> None:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise AlreadyRunning(
                f"palyrad is already running for this home ({self.path})"
            ) from None
        os.ftruncate(fd, 0)
        os.write(fd, orjson.dumps(info))
        os.fsync(fd)
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()
            os.close(self.fd)
            self.fd = None


@dataclass
class Slot:
    """One supervised service: its process, pipe, state and restart bookkeeping."""

    name: str
    process: BaseProcess | None = None
    conn: multiprocessing.connection.Connection | None = None
    state: ServiceState = ServiceState.STOPPED
    restarts: int = 0
    history: RestartHistory = field(default_factory=RestartHistory)
    next_start_at: float = 0.0  # monotonic; for RESTARTING and FATAL
    next_start_at_ms: int | None = None  # the same instant on the wall clock, for status
    started_at: float = 0.0
    last_heartbeat: float = 0.0
    last_heartbeat_ms: int | None = None
    info: dict[str, Any] = field(default_factory=dict)
    journal_error: dict[str, Any] | None = None  # the last failed journal write it reported


class Supervisor:
    def __init__(self, home: Home, config: DaemonConfig) -> None:
        self.home = home
        self.config = config
        self.ctx = multiprocessing.get_context("spawn")
        self.instance = new_token()
        self.slots = {name: Slot(name) for name in SERVICE_NAMES}
        self.policy = RestartPolicy()
        self.started_at_ms = time.time_ns() // 1_000_000
        self.stopping = False
        self.reload_requested = False
        self.lock = PidLock(home)
        self._wake_r, self._wake_w = socket.socketpair()
        self._fifo_fd: int | None = None
        self._fifo_keep: int | None = None
        self._status_dirty = True

    # --- lifecycle -----------------------------------------------------------------------

    def run(self) -> int:
        self.lock.acquire(
            {"pid": os.getpid(), "instance": self.instance, "started_at_ms": self.started_at_ms}
        )
        try:
            take_stop_request(self.home, os.getpid())  # a stale one is never ours to apply
            self._open_fifo()
            self._install_signals()
            log.info("palyrad starting", extra={"instance": self.instance})
            for slot in self.slots.values():
                self._start(slot)
            self._loop()
            self._shutdown()
            log.info("palyrad stopped")
            return 0
        finally:
            self._write_status(running=False)
            self._close_fifo()
            self.lock.release()

    def _install_signals(self) -> None:
        self._wake_w.setblocking(False)
        self._wake_r.setblocking(False)
        signal.set_wakeup_fd(self._wake_w.fileno())

        def on_stop(signum: int, _frame: object) -> None:
            self.stopping = True

        def on_hup(signum: int, _frame: object) -> None:
            self.reload_requested = True

        signal.signal(signal.SIGTERM, on_stop)
        signal.signal(signal.SIGINT, on_stop)
        signal.signal(signal.SIGHUP, on_hup)

    def _open_fifo(self) -> None:
        ensure_fifo(self.home.notify_fifo)
        self._fifo_fd = os.open(self.home.notify_fifo, os.O_RDONLY | os.O_NONBLOCK)
        # Our own writer keeps the FIFO from reporting EOF whenever a CLI poke closes.
        self._fifo_keep = os.open(self.home.notify_fifo, os.O_WRONLY | os.O_NONBLOCK)

    def _close_fifo(self) -> None:
        for fd in (self._fifo_fd, self._fifo_keep):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        with contextlib.suppress(OSError):
            self.home.notify_fifo.unlink()
        for wake in self.home.run_dir.glob("wake-*"):  # the services' direct-poke FIFOs
            with contextlib.suppress(OSError):
                wake.unlink()

    # --- children ------------------------------------------------------------------------

    def _start(self, slot: Slot) -> None:
        parent, child = self.ctx.Pipe(duplex=True)
        proc = self.ctx.Process(
            target=child_main,
            args=(slot.name, str(self.home.root), child, self.instance, slot.restarts),
            name=f"palyrad-{slot.name}",
            daemon=False,
        )
        proc.start()
        child.close()
        slot.process, slot.conn = proc, parent
        self._set_state(slot, ServiceState.STARTING)
        slot.next_start_at_ms = None
        slot.started_at = slot.last_heartbeat = time.monotonic()
        self._status_dirty = True
        log.info("started service", extra={"service": slot.name, "child_pid": proc.pid})

    def _on_exit(self, slot: Slot, now: float) -> None:
        proc = slot.process
        code = proc.exitcode if proc is not None else None
        if slot.conn is not None:
            slot.conn.close()
        slot.process, slot.conn = None, None
        if self.stopping:
            self._set_state(slot, ServiceState.STOPPED)
            return
        log.warning("service exited", extra={"service": slot.name, "exit_code": code})
        state, slot.next_start_at = after_exit(self.policy, slot.history, slot.started_at, now)
        slot.next_start_at_ms = time.time_ns() // 1_000_000 + int((slot.next_start_at - now) * 1000)
        self._set_state(slot, state)
        if state == ServiceState.FATAL:
            log.error(
                "service restarted too often; trying again after a cool-down",
                extra={"service": slot.name, "retry_in_s": round(slot.next_start_at - now, 1)},
            )
        self._status_dirty = True

    def _set_state(self, slot: Slot, state: ServiceState) -> None:
        check_transition(slot.state, state)
        slot.state = state

    def _handle_message(self, slot: Slot, msg: Any) -> None:
        slot.last_heartbeat = time.monotonic()
        slot.last_heartbeat_ms = time.time_ns() // 1_000_000
        if not isinstance(msg, tuple) or not msg:
            return
        kind = msg[0]
        if kind == "ready":
            self._set_state(slot, ServiceState.RUNNING)
            slot.info = dict(msg[1]) if len(msg) > 1 and isinstance(msg[1], dict) else {}
            self._status_dirty = True
            log.info("service ready", extra={"service": slot.name})
        elif kind == "poke":
            targets = msg[1] if len(msg) > 1 else SERVICE_NAMES
            self._poke(targets, exclude=slot.name)
        elif kind == "journal_error" and len(msg) > 1 and isinstance(msg[1], dict):
            at, error = msg[1].get("at_ms"), msg[1].get("error")
            if isinstance(at, int) and isinstance(error, str):
                slot.journal_error = {"at_ms": at, "error": error[:300]}
                self._status_dirty = True

    def _poke(self, targets: Any, exclude: str | None = None) -> None:
        for name in targets:
            target = self.slots.get(name)
            if target is None or name == exclude or target.conn is None:
                continue
            with contextlib.suppress(OSError, ValueError):
                target.conn.send(("poke",))

    def _drain_fifo(self) -> None:
        assert self._fifo_fd is not None
        targets: set[str] = set()
        while True:
            try:
                data = os.read(self._fifo_fd, 4096)
            except BlockingIOError:
                break
            if not data:
                break
            for byte in data:
                b = bytes([byte])
                if b == POKE_ALL:
                    targets.update(SERVICE_NAMES)
                elif b == RESTART_FATAL:
                    self._restart_fatal_now()
                elif b in SERVICE_FOR_BYTE:
                    targets.add(SERVICE_FOR_BYTE[b])
        if targets:
            self._poke(sorted(targets))

    def _restart_fatal_now(self) -> None:
        """End the cool-down of every ``fatal`` service: the main loop starts it at once."""
        now = time.monotonic()
        for slot in self.slots.values():
            if slot.state == ServiceState.FATAL:
                log.warning("restarting a fatal service on request", extra={"service": slot.name})
                slot.next_start_at = now
                slot.next_start_at_ms = time.time_ns() // 1_000_000

    # --- main loop -----------------------------------------------------------------------

    def _loop(self) -> None:
        last_status = 0.0
        while not self.stopping:
            now = time.monotonic()
            for slot in self.slots.values():
                waiting = slot.state in (ServiceState.RESTARTING, ServiceState.FATAL)
                if waiting and now >= slot.next_start_at:
                    slot.restarts += 1
                    self._start(slot)
            waitables: list[Any] = [self._wake_r, self._fifo_fd]
            by_obj: dict[Any, tuple[str, Slot]] = {}
            for slot in self.slots.values():
                if slot.conn is not None and slot.process is not None:
                    waitables += [slot.conn, slot.process.sentinel]
                    by_obj[slot.conn] = ("msg", slot)
                    by_obj[slot.process.sentinel] = ("exit", slot)
            timeout = max(0.0, STATUS_INTERVAL_S - (now - last_status))
            pending = [
                s.next_start_at - now
                for s in self.slots.values()
                if s.state in (ServiceState.RESTARTING, ServiceState.FATAL)
            ]
            if pending:
                timeout = max(0.0, min([timeout, *pending]))
            ready = multiprocessing.connection.wait(waitables, timeout=timeout)
            now = time.monotonic()
            for obj in ready:
                if obj is self._wake_r:
                    with contextlib.suppress(BlockingIOError):
                        self._wake_r.recv(4096)
                elif obj == self._fifo_fd:
                    self._drain_fifo()
                elif obj in by_obj:
                    what, slot = by_obj[obj]
                    if what == "msg":
                        self._read_messages(slot)
            for slot in self.slots.values():
                proc = slot.process
                if proc is not None and proc.exitcode is not None:
                    self._on_exit(slot, now)
                elif proc is not None and now - slot.last_heartbeat > SILENT_CHILD_S:
                    log.error("service silent; killing it", extra={"service": slot.name})
                    proc.kill()
            if self.reload_requested:
                self.reload_requested = False
                log.info("SIGHUP: reloading")
                self._broadcast(("reload",))
            if self._status_dirty or now - last_status >= STATUS_INTERVAL_S:
                self._write_status(running=True)
                rotate_if_needed(
                    self.home.daemon_log, self.config.log_max_bytes, self.config.log_backups
                )
                last_status = now

    def _read_messages(self, slot: Slot) -> None:
        conn = slot.conn
        try:
            while conn is not None and conn.poll():
                self._handle_message(slot, conn.recv())
        except (EOFError, OSError):
            pass  # the sentinel reports the exit

    def _broadcast(self, msg: tuple[Any, ...]) -> None:
        for slot in self.slots.values():
            if slot.conn is not None:
                with contextlib.suppress(OSError, ValueError):
                    slot.conn.send(msg)

    def _shutdown(self) -> None:
        """Graceful stop: ask every child to stop, give them the deadline, then kill."""
        requested = take_stop_request(self.home, os.getpid())
        timeout_ms = self.config.stop_timeout_ms if requested is None else requested
        log.info("graceful stop requested", extra={"stop_timeout_ms": timeout_ms})
        # The services' own SIGTERM→SIGKILL grace for runs follows the operator's timeout
        # (`palyra daemon stop --timeout`), and so does our deadline for the services.
        self._broadcast(("stop", {"stop_timeout_ms": timeout_ms}))
        deadline = time.monotonic() + timeout_ms / 1000 + 5.0
        for slot in self.slots.values():
            proc = slot.process
            if proc is None:
                continue
            proc.join(timeout=max(0.0, deadline - time.monotonic()))
            if proc.exitcode is None:
                log.error("service ignored stop; killing it", extra={"service": slot.name})
                proc.kill()
                proc.join(timeout=5)
            self._set_state(slot, ServiceState.STOPPED)
            slot.process = None

    def _write_status(self, *, running: bool) -> None:
        status = DaemonStatus(
            running=running,
            pid=os.getpid(),
            instance=self.instance,
            started_at_ms=self.started_at_ms,
            processes=tuple(
                ProcessStatus(
                    name=s.name,
                    pid=s.process.pid if s.process is not None else None,
                    state=s.state if running else ServiceState.STOPPED,
                    retry_at_ms=s.next_start_at_ms if running else None,
                    restarts=s.restarts,
                    last_heartbeat_ms=s.last_heartbeat_ms,
                    info=s.info,
                    journal_error=s.journal_error,
                )
                for s in self.slots.values()
            ),
        )
        write_status(self.home, status)
        self._status_dirty = False


def run_supervisor(home: Home, config: DaemonConfig) -> int:
    """Run palyrad in the foreground until SIGTERM/SIGINT; returns the exit code."""
    return Supervisor(home, config).run()
