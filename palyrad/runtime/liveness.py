"""Whether palyrad is running: decided by the pid-file lock, never by a file's contents.

The supervisor holds an ``flock`` on ``run/palyrad.pid`` exactly as long as it lives
(``palyrad.supervisor.PidLock``), so a crash leaves nothing that reads as running.

Apart from palyrad.runtime.status (the status report and its dataclasses, ~4 ms to import without
cached bytecode) because every trigger and edit from the CLI asks this question, and only it.
"""

from __future__ import annotations

import fcntl
import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from palyrad.runtime.home import Home


def daemon_alive(home: Home) -> bool:
    """True while some process holds the pid-file lock (i.e. a supervisor is alive)."""
    try:
        fd = os.open(home.pid_file, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)
