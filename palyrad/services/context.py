"""Entry point and shared plumbing of the supervised service processes.

Each service runs in its own spawned process with one duplex pipe to the supervisor: the
service sends ``ready``, ``heartbeat`` and ``poke`` messages; the supervisor sends ``poke``,
``reload`` and ``stop``. EOF on the pipe means the supervisor died, which a service treats
as ``stop`` — no orphaned scheduler keeps firing routines without its daemon — but as a
crash of the daemon, not a graceful stop (``supervisor_lost``: runs end ``daemon_crashed``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import signal
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

from palyrad.journal import Journal, ProcessHeartbeat
from palyrad.journal.connection import on_write_failure
from palyrad.runtime.clock import SYSTEM_CLOCK
from palyrad.runtime.config import DaemonConfig, load_config
from palyrad.runtime.daemon_log import setup_logging
from palyrad.runtime.home import Home
from palyrad.runtime.notify import ensure_fifo, poke_fifo
from palyrad.seams import Clock
from palyrad.services.registry import service

log = logging.getLogger("palyrad.service")


def _drain(fd: int) -> None:
    """Empty a non-blocking wake pipe/FIFO: any number of pending wakes is one wake."""
    with contextlib.suppress(BlockingIOError, OSError):
        while os.read(fd, 4096):
            pass


HEARTBEAT_INTERVAL_S = 1.0
# A main loop busy this long (not back in ``wait``) is wedged, not working: its journal
# heartbeat says "stalled" so self-healing restarts it. Generous, because legitimate work
# (loading 100 000 routines) takes seconds; a SIGSTOPped or dead process is caught sooner,
# by its heartbeat going silent.
STALL_FLOOR_S = 60.0
STALL_SILENCES = 3  # ... or this many silence windows, when that is longer
# The service whose own wedged main loop nobody judges (it is the one judging the others).
UNJUDGED_SERVICE = "self_healing"
JOURNAL_ERROR_REPORT_S = 1.0  # at most one journal-failure report per second to the supervisor


def journal_heartbeat_every(process_silence_ms: int) -> int:
    """Pipe heartbeats per journal heartbeat: about four journal beats per silence window
    (2 s at the default 10 s), at most every 5 s, never more than once a second."""
    return max(1, min(5, process_silence_ms // 4000))


# The scheduler and executor checkpoint the WAL only past ~40 MB (a safety net); normally
# the self-healing process checkpoints every second, off the hot path.
HOT_LOOP_AUTOCHECKPOINT_PAGES = 10_000
SELF_HEALING_BUSY_TIMEOUT_MS = 2_000
HEARTBEAT_BUSY_TIMEOUT_MS = 300


class ServiceContext:
    """What a service loop needs: its home, config, journal, and the pipe to the supervisor."""

    def __init__(
        self,
        name: str,
        home: Home,
        conn: Connection,
        instance: str,
        restarts: int,
        clock: Clock | None = None,
    ) -> None:
        self.name = name
        self.home = home
        self.conn = conn
        self.instance = instance
        self.restarts = restarts
        self.config: DaemonConfig = load_config(home.config)
        # The one clock below the loops (a ManualClock in tests): nothing reads time itself.
        self.clock: Clock = clock if clock is not None else SYSTEM_CLOCK
        self.stop_event = threading.Event()
        # True when the stop is the supervisor's death (EOF on the pipe), not a request.
        self.supervisor_lost = False
        # How long a stop gives runs between SIGTERM and SIGKILL: the operator's
        # `palyra daemon stop --timeout` (relayed with the supervisor's stop) or the config.
        self.stop_timeout_ms: int | None = None
        self.reload_event = threading.Event()
        # Wakes are bytes in a pipe, not an Event: a wake that arrives while the loop is busy
        # stays readable until the next wait (Event.wait() + clear() drops one set in
        # between), any thread or signal handler can write one, and the loop can wait on its
        # own fds (the executor's child pipes and pidfds) in the same select.
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._fifo_fd: int | None = None
        self._send_lock = threading.Lock()
        self._journal: Journal | None = None
        # Main-loop liveness for the heartbeat thread: when the loop last left ``wait`` (None
        # while it is waiting, or before its first wait: nothing to judge yet).
        self._busy_since: float | None = None
        self._journal_error_sent = 0.0

    @property
    def journal(self) -> Journal:
        """This process's journal connection (opened lazily, owned by the main thread)."""
        if self._journal is None:
            self._journal = Journal(
                self.home.journal,
                synchronous=self.config.journal_synchronous,
                autocheckpoint_pages=HOT_LOOP_AUTOCHECKPOINT_PAGES
                if self.name in ("scheduler", "executor")
                else None,
                # Self-healing must not wait 10 s behind a service frozen inside a write:
                # that service is what it is about to kill (see self_healing/engine.py).
                busy_timeout_ms=SELF_HEALING_BUSY_TIMEOUT_MS
                if self.name == "self_healing"
                else None,
            )
        return self._journal

    def open_journal(self) -> Journal:
        """A separate connection for a helper thread (sqlite3 connections are per thread)."""
        return Journal(self.home.journal, synchronous=self.config.journal_synchronous)

    @property
    def stopping(self) -> bool:
        return self.stop_event.is_set()

    def send(self, msg: tuple[Any, ...]) -> None:
        with self._send_lock, contextlib.suppress(OSError, ValueError, BrokenPipeError):
            self.conn.send(msg)

    def ready(self, info: dict[str, Any] | None = None) -> None:
        self.send(("ready", info or {}))

    def poke(self, *targets: str) -> None:
        """Wake ``targets`` (after committing to the journal): straight through the target's
        own wake FIFO when it is listening, else relayed by the supervisor."""
        relay = [t for t in targets if not poke_fifo(self.home.wake_fifo(t))]
        if relay:
            self.send(("poke", tuple(relay)))

    def listen_fifo(self) -> None:
        """Direct pokes from sibling services and the CLI: one byte on ``run/wake-<name>`` is
        a wake. Opened read-write so the FIFO never reports EOF and opening never blocks."""
        path = self.home.wake_fifo(self.name)
        ensure_fifo(path)
        fd = os.open(path, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        self._fifo_fd = fd
        self._selector.register(fd, selectors.EVENT_READ, None)

    def wake(self) -> None:
        """Wake the main loop; safe from any thread and from signal handlers."""
        with contextlib.suppress(BlockingIOError, OSError):
            os.write(self._wake_w, b"w")  # a full pipe is a wake already pending

    def register(self, fd: int, events: int, callback: Callable[[int], bool]) -> None:
        """Have ``wait`` call ``callback(mask)`` when ``fd`` is ready (main thread only);
        the callback returns whether the service loop should look again."""
        self._selector.register(fd, events, callback)

    def unregister(self, fd: int) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(fd)

    def wait(self, timeout_s: float) -> bool:
        """Sleep until poked, stopped, a registered fd's callback asks for the loop (returns
        True), or ``timeout_s`` passes; True if the loop should look again (including for a
        wake that arrived while it was busy since its last wait). Callbacks that return
        False (e.g. a chunk of child output copied to its log) are served without waking
        the loop, so a chatty child does not cost a journal round per chunk.

        Timed wakes are exact to well under a millisecond: epoll counts whole milliseconds and
        Python rounds the timeout up twice (selectors, then epoll), which made ~1 in 8 timed
        wakes a millisecond late. So the selector waits until 1-2 ms before the deadline and
        the rest is slept at the clock's full resolution.
        """
        self._busy_since = None
        try:
            return self._wait(timeout_s)
        finally:
            self._busy_since = time.monotonic()

    def _wait(self, timeout_s: float) -> bool:
        deadline = time.monotonic() + max(0.0, timeout_s)
        while True:
            left = deadline - time.monotonic()
            whole_ms = int(left * 1000) if left > 0 else 0
            # (whole_ms - 1.5) ms is never near an integer, so both roundings end at
            # whole_ms - 1 or whole_ms: never past the deadline.
            events = self._selector.select((whole_ms - 1.5) / 1000 if whole_ms >= 2 else 0)
            woke = False
            for key, mask in events:
                if key.data is None:
                    _drain(key.fd)
                    woke = True
                elif key.data(mask):
                    woke = True
            if woke:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if left < 0.002:
                time.sleep(left)
                return False

    def _reader(self) -> None:
        while True:
            try:
                msg = self.conn.recv()
            except (EOFError, OSError):
                log.warning("supervisor gone; stopping", extra={"service": self.name})
                # Nobody asked for this stop: the daemon crashed (the supervisor was killed),
                # and what a service ends now must say so (runs: daemon_crashed).
                if not self.stop_event.is_set():
                    self.supervisor_lost = True
                self.stop_event.set()
                self.wake()
                return
            kind = msg[0] if isinstance(msg, tuple) and msg else None
            if kind == "stop":
                args = msg[1] if len(msg) > 1 and isinstance(msg[1], dict) else {}
                grace = args.get("stop_timeout_ms")
                if isinstance(grace, int) and not isinstance(grace, bool) and grace >= 0:
                    self.stop_timeout_ms = grace
                self.stop_event.set()
            elif kind == "reload":
                self.reload_config()
                self.reload_event.set()
            self.wake()

    def reload_config(self) -> None:
        """SIGHUP: re-read palyra.toml; a broken file keeps the running config."""
        try:
            self.config = load_config(self.home.config)
        except Exception as exc:
            log.error("palyra.toml not reloaded", extra={"error": str(exc)})
        else:
            log.info("palyra.toml reloaded", extra={"service": self.name})

    def loop_state(self) -> str:
        """``running``, or ``stalled`` when the main loop has been busy (out of ``wait``)
        longer than ``STALL_FLOOR_S`` or three silence windows, whichever is longer."""
        since = self._busy_since
        limit = max(STALL_FLOOR_S, STALL_SILENCES * self.config.process_silence_ms / 1000)
        if since is not None and time.monotonic() - since > limit:
            return "stalled"
        return "running"

    def _pipe_heartbeat(self) -> None:
        """Heartbeats to the supervisor every second, from a thread that never touches the
        journal: a journal beat that waits for the write lock (up to the busy timeout) or
        fails must not silence the pipe, which is what tells self-healing (through
        run/status.json) and the supervisor that this process is alive."""
        while not self.stop_event.wait(HEARTBEAT_INTERVAL_S):
            if self.name == UNJUDGED_SERVICE and self.loop_state() == "stalled":
                # No one else judges a wedged self-healing loop (it judges the others):
                # going quiet on the pipe has the supervisor kill and restart it.
                continue
            self.send(("heartbeat",))

    def _heartbeat(self) -> None:
        """Heartbeats to the journal every few seconds (for status, doctor and
        self-healing), from this thread's own connection. The first journal beat is at
        once, so the row names this process (not its predecessor) from the start."""
        journal: Journal | None = None
        beats = 0
        while True:
            if beats % journal_heartbeat_every(self.config.process_silence_ms) == 0:
                try:
                    # Never more than a moment behind the write lock: the pipe heartbeats in
                    # this same thread must keep coming while another service holds it (a
                    # lock that busy is not this service's failure: not reported).
                    journal = journal or Journal(
                        self.home.journal,
                        synchronous=self.config.journal_synchronous,
                        busy_timeout_ms=HEARTBEAT_BUSY_TIMEOUT_MS,
                        report_write_failures=False,
                    )
                    journal.heartbeats.beat(
                        ProcessHeartbeat(
                            self.name,
                            os.getpid(),
                            self.instance,
                            self.loop_state(),
                            self.restarts,
                            self.clock.now_ms(),
                        )
                    )
                except Exception:  # a busy journal must never kill the heartbeat thread
                    log.warning("could not journal heartbeat", exc_info=True)
            if self.stop_event.wait(HEARTBEAT_INTERVAL_S):
                return
            beats += 1

    def _journal_write_failed(self, exc: BaseException) -> None:
        """A journal write of this process failed: tell the supervisor (at most once a
        second), which keeps the last failure per service in run/status.json for the
        self-healing ``journal`` incident and doctor. Never raises, never blocks long."""
        now = time.monotonic()
        if now - self._journal_error_sent < JOURNAL_ERROR_REPORT_S:
            return
        self._journal_error_sent = now
        detail = f"{type(exc).__name__}: {exc}"[:300]
        self.send(("journal_error", {"at_ms": self.clock.now_ms(), "error": detail}))

    def start_threads(self) -> None:
        on_write_failure(self._journal_write_failed)
        threading.Thread(target=self._reader, name="pipe-reader", daemon=True).start()
        threading.Thread(target=self._heartbeat, name="heartbeat", daemon=True).start()
        threading.Thread(target=self._pipe_heartbeat, name="pipe-heartbeat", daemon=True).start()
        self.listen_fifo()


def service_main(name: str, home_root: str, conn: Connection, instance: str, restarts: int) -> None:
    """Spawned-process entry: set up logging and signals, then run the named service loop."""
    home = Home.at(home_root)
    setup_logging(home.daemon_log, name)
    # Ctrl-C in a foreground palyrad reaches the whole process group; the supervisor turns
    # it into an orderly stop, so children ignore SIGINT and treat a direct SIGTERM as stop.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    ctx = ServiceContext(name, home, conn, instance, restarts)

    def on_term(signum: int, _frame: object) -> None:
        ctx.stop_event.set()
        ctx.wake()

    signal.signal(signal.SIGTERM, on_term)
    ctx.start_threads()
    started = time.monotonic()
    try:
        service(name).load()(ctx)
    except Exception:
        log.exception("service crashed", extra={"service": name})
        raise
    finally:
        log.info(
            "service exiting",
            extra={"service": name, "pid": os.getpid(), "uptime_s": time.monotonic() - started},
        )
