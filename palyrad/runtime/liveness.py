"""Whether palyrad is running: decided by the pid-file lock, never by a file's contents.

The supervisor holds an ``flock`` on ``run/palyrad.pid`` exactly as long as it lives
(``palyrad.supervisor.PidLock``), so a crash leaves nothing that reads as running.

Apart from palyrad.runtime.status (the status report and its dataclasses, ~4 ms to import without
cached bytecode) because every trigger and edit from the CLI asks this question, and only it.
"""

from __future__ import annotations

import fcntl
import os
import stat
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from palyrad.runtime.home import Home


# O_NONBLOCK: a FIFO (or a device) at the pid file's path must not hang the open — every
# CLI command and ``palyra doctor`` ask ``daemon_alive``. No supervisor locks such a file.
_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC


def _open_pid_file(home: Home) -> int | None:
    """The pid file opened for its lock; None when there is none (or no run/ folder) or it
    is not a regular file (never a supervisor's)."""
    try:
        fd = os.open(home.pid_file, _OPEN_FLAGS)
    except (FileNotFoundError, NotADirectoryError):
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        return None
    return fd


def daemon_alive(home: Home) -> bool:
    """True while some process holds the pid-file lock (i.e. a supervisor is alive)."""
    fd = _open_pid_file(home)
    if fd is None:
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


def remove_stale_pid_file(home: Home) -> bool:
    """Delete ``run/palyrad.pid`` when no daemon holds its lock (a crash left it); True when
    it was removed. The lock is held while the file is unlinked, and only the file that was
    locked is removed, so a daemon starting meanwhile keeps its own."""
    fd = _open_pid_file(home)
    if fd is None:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a daemon holds it: not stale
        try:
            same = os.stat(home.pid_file).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False
        if same:
            os.unlink(home.pid_file)
        return same
    finally:
        os.close(fd)  # closing releases the lock
