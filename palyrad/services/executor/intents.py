"""The spawn-intent log: ``run/spawn-intents``, one run id per line, appended just before the
run's process is spawned.

Between the spawn and the journal's ``started`` (``mark_started``) there is a window in
which the run's process exists but the journal still says "pending, leased". If the daemon
dies there, the journal alone cannot tell this run from one that was claimed and never
spawned — and giving it back to the queue ran its tick twice. The intent closes the window:
an attempt whose id is in the log *may* have been spawned (it is finalized
``daemon_crashed`` at recovery and retried only by its retry policy); one whose id is not
was provably never spawned and goes back to the queue.

Why a file and not a journal write: the intent is on the start's critical path, and a
``BEGIN IMMEDIATE`` transaction there (it can wait behind the scheduler's write lock) would
move start lateness, whereas an ``O_APPEND`` ``write(2)`` of ~27 bytes costs microseconds
and, like a WAL commit under ``synchronous=NORMAL``, survives ``kill -9`` of the process
(it is in the page cache; neither survives the loss of the machine's power, and then the
run's process is gone too). docs/daemon.md, "Crash recovery", has the alternatives weighed.

The log only has to hold intents whose outcome is not yet in the journal. ``launch`` is
synchronous (intent, spawn, ``mark_started``), so between launches every line is settled,
and the log is truncated there once it passes ``COMPACT_BYTES``: it never grows without
bound and costs one ``ftruncate`` every few thousand starts.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

COMPACT_BYTES = 64 * 1024


class SpawnIntents:
    """This executor's handle on the intent log (one executor runs per home at a time)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        flags = os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC
        self._fd = os.open(path, flags, 0o600)
        self._size = os.fstat(self._fd).st_size

    def recorded(self) -> set[str]:
        """Run ids a previous executor may have spawned (read at recovery, before this
        executor spawns anything)."""
        try:
            data = self.path.read_bytes()
        except OSError:
            return set()
        return {line.decode("ascii", "replace") for line in data.split(b"\n") if line}

    def record(self, run_id: str) -> None:
        """Say, durably against a crash of this process, that ``run_id`` may be spawned
        from now on. Raises OSError (e.g. a full disk): then the run must not be spawned."""
        line = run_id.encode("ascii") + b"\n"
        n = os.write(self._fd, line)
        self._size += n
        if n != len(line):  # a short write on a full disk: not an intent we can trust
            raise OSError(28, "short write to the spawn-intent log")

    def settled(self) -> None:
        """Every recorded intent's outcome is in the journal now (no launch in progress):
        forget them, once the log is big enough to be worth a syscall."""
        if self._size >= COMPACT_BYTES:
            self.clear()

    def clear(self) -> None:
        """Forget every intent (recovery finalized them, or all are settled)."""
        with contextlib.suppress(OSError):
            os.ftruncate(self._fd, 0)
            self._size = 0

    def close(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self._fd)
