"""Crash-safe file writes for keys and certificates.

Two ways to put a file in place, both through a temporary file in the same directory that
is fsynced before it gets the real name, so a crash leaves the old state or the whole new
file (a leftover ``.<name>.tmp-<pid>-<random>`` is harmless and never read):

- ``create_new``: ``os.link`` the temporary to the name. ``link`` fails if the name exists,
  so a key is never replaced, and two processes racing to create the same file cannot both
  win: the loser gets ``FileExistsError`` and reads what the winner wrote.
- ``replace``: ``os.replace``, for certificates, which are derived and may be reissued.

Directories that these functions create are 0700; existing ones are never chmodded (that is
the operator's or ``doctor --repair``'s decision, not a side effect of writing a file).
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
from pathlib import Path


def ensure_dir(path: Path) -> None:
    """Create ``path`` and its missing parents, each 0700 (the umask does not apply)."""
    missing: list[Path] = []
    p = path
    while not p.exists():
        missing.append(p)
        if p.parent == p:
            break
        p = p.parent
    for d in reversed(missing):
        try:
            os.mkdir(d, 0o700)
        except FileExistsError:
            continue  # another process made it: it is theirs, leave its mode alone
        os.chmod(d, 0o700)  # mkdir's mode is filtered by the umask


def fsync_dir(path: Path) -> None:
    """Make a rename or link in ``path`` durable (ignored where the file system cannot)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.ENOTSUP, errno.EBADF):
            raise
    finally:
        os.close(fd)


def _write_temp(path: Path, data: bytes, mode: int) -> Path:
    """A fully written, fsynced temporary next to ``path`` with exactly ``mode``."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{secrets.token_hex(6)}")
    fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY | getattr(os, "O_NOFOLLOW", 0), mode)
    try:
        os.fchmod(fd, mode)  # the umask filtered os.open's mode
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    os.close(fd)
    return tmp


def create_new(path: Path, data: bytes, mode: int) -> None:
    """Put ``data`` at ``path`` only if nothing is there: ``FileExistsError`` otherwise."""
    ensure_dir(path.parent)
    tmp = _write_temp(path, data, mode)
    try:
        os.link(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink()
    fsync_dir(path.parent)


def replace(path: Path, data: bytes, mode: int) -> None:
    """Put ``data`` at ``path``, replacing what is there in one step."""
    ensure_dir(path.parent)
    tmp = _write_temp(path, data, mode)
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)
