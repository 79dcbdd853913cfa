"""One started run as the executor holds it: its process, its log, its output tail, and why
(if at all) the executor is stopping it."""

from __future__ import annotations

import subprocess
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from palyrad.domain.learning import MARKER
from palyrad.domain.runs import OUTPUT_TAIL_BYTES, Run
from palyrad.runtime.process_groups import signal_run
from routines.kinds import ErrorKind


@dataclass
class ActiveRun:
    """A run whose process was spawned and is not finalized yet."""

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
    reason: ErrorKind | None = None  # timeout | cancelled | daemon_stopped | daemon_crashed
    # A ``::palyra-learn`` marker went by (also across two reads): only then does the run
    # get a ``post_run_reflection`` task, so runs that teach nothing cost the queue nothing.
    learn_marker_seen: bool = False
    learn_carry: bytes = b""  # the last len(MARKER) - 1 bytes seen, however they were read

    def signal(self, sig: int) -> None:
        """Signal everything the run started: its process group and the processes that
        left it (``setsid``) but still carry its ``PALYRA_RUN_ID``. Used whenever the
        executor *stops* a run (timeout, cancel, replace, stop, crash of the daemon); the
        /proc scan costs a few ms, so a run that ended by itself only has its group
        cleaned up (``Finalizer.finalize``)."""
        signal_run(self.proc.pid, self.run.run_id, sig)

    def add_tail(self, chunk: bytes) -> None:
        """Keep at least the last ``OUTPUT_TAIL_BYTES`` of output, in whole chunks (and
        watch for the learning marker)."""
        if not self.learn_marker_seen:
            seen = self.learn_carry + chunk
            self.learn_marker_seen = MARKER in seen
            self.learn_carry = seen[-(len(MARKER) - 1) :]
        self.tail.append(chunk)
        self.tail_len += len(chunk)
        while self.tail_len - len(self.tail[0]) >= OUTPUT_TAIL_BYTES:
            self.tail_len -= len(self.tail.popleft())

    def tail_text(self) -> str:
        """The run's ``output_tail``: the last ``OUTPUT_TAIL_BYTES``, decoded leniently."""
        data = b"".join(self.tail)[-OUTPUT_TAIL_BYTES:]
        return data.decode("utf-8", errors="replace")
