"""A started run's pipes and exit on the executor's one selector: output, stdin, pidfd.

Output goes through a pipe that we copy into ``runs/<run_id>.log`` (size-capped, the last
4 KiB kept as ``output_tail``), so a chatty action can never fill the disk. Every fd is
non-blocking and served by callbacks in the service's own thread: nothing here may block the
loop, because the next armed run's spawn waits behind it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import selectors
import threading

from palyrad.services.executor.active_run import ActiveRun
from palyrad.services.executor.state import ExecutorState

log = logging.getLogger("palyrad.executor")


def _pidfd(pid: int) -> int | None:
    """A pidfd for ``pid`` (Linux ≥ 5.3): readable once the process exits."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


class ChildIO:
    """Registers a started run's fds and serves them: log and tail, stdin, exit."""

    def __init__(self, state: ExecutorState) -> None:
        self.ctx = state.ctx
        self.clock = state.clock

    def watch(self, active: ActiveRun, stdin_data: bytes | None) -> None:
        """Put the child's stdout, stdin (a prompt) and exit on the service's selector."""
        proc = active.proc
        assert proc.stdout is not None
        out_fd = proc.stdout.fileno()
        os.set_blocking(out_fd, False)
        self.ctx.register(out_fd, selectors.EVENT_READ, lambda _m: self.on_output(active))
        if stdin_data is not None and proc.stdin is not None:
            active.stdin_data = memoryview(stdin_data)
            in_fd = proc.stdin.fileno()
            os.set_blocking(in_fd, False)
            self.ctx.register(in_fd, selectors.EVENT_WRITE, lambda _m: self.on_stdin(active))
        active.pidfd = _pidfd(proc.pid)
        if active.pidfd is not None:
            self.ctx.register(active.pidfd, selectors.EVENT_READ, lambda _m: self.reap(active))
        else:  # no pidfds (old kernel): a waiter thread per run, as a fallback
            threading.Thread(target=self._wait_thread, args=(active,), daemon=True).start()

    def on_output(self, active: ActiveRun) -> bool:
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
                self.close_output(active)
                return True
            self.record_output(active, chunk)

    def record_output(self, active: ActiveRun, chunk: bytes) -> None:
        """Append ``chunk`` to the tail and (up to the size cap) to the run log."""
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

    def close_output(self, active: ActiveRun) -> None:
        """EOF: stop listening to stdout, close the log, and stdin with it."""
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
        self.close_stdin(active)

    def on_stdin(self, active: ActiveRun) -> bool:
        """Feed a prompt to the agent runner without ever blocking the loop."""
        data = active.stdin_data
        stdin = active.proc.stdin
        if data is None or stdin is None:
            self.close_stdin(active)
            return False
        try:
            n = os.write(stdin.fileno(), data[:65536])
        except BlockingIOError:
            return False
        except OSError:  # the runner closed its stdin early; what it read is what it gets
            n = len(data)
        active.stdin_data = data[n:] if n < len(data) else None
        if active.stdin_data is None:
            self.close_stdin(active)
        return False

    def close_stdin(self, active: ActiveRun) -> None:
        """Stop feeding stdin (all written, or the child closed it)."""
        stdin = active.proc.stdin
        active.stdin_data = None
        if stdin is not None and not stdin.closed:
            self.ctx.unregister(stdin.fileno())
            with contextlib.suppress(OSError):
                stdin.close()

    def reap(self, active: ActiveRun) -> bool:
        """The child exited (its pidfd is readable): note when, close the pidfd. True once
        it has exited."""
        if active.proc.poll() is None:
            return False
        active.exited_ms = active.exited_ms or self.clock.now_ms()
        if active.pidfd is not None:
            self.ctx.unregister(active.pidfd)
            os.close(active.pidfd)
            active.pidfd = None
        return True

    def _wait_thread(self, active: ActiveRun) -> None:
        active.proc.wait()
        active.exited_ms = self.clock.now_ms()
        self.ctx.wake()

    def force_eof(self, active: ActiveRun) -> None:
        """Something outside the run's group still holds its output pipe: take what is
        buffered and stop listening."""
        if not active.eof:
            self.on_output(active)
            self.close_output(active)
