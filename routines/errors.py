"""The one exception root of Palyra, with the hint an operator needs.

Every error that reaches a person (the CLI, a node, a log line, doctor) derives from
``PalyraError``: ``str(exc)`` says what is wrong and names the file, field or routine;
``hint`` says what to do; ``exit_code`` is what the CLI exits with (2 for invalid input, 1 for
everything else, as SPEC §4 asks). It lives in the pure ``routines`` library because every
other package (the daemon, the CLI, the node client) may import ``routines`` and none of them
may import each other freely.

Operating-system errors (permissions, a full disk, a read-only file system, a file where a
directory belongs) are not raised as ``PalyraError`` everywhere they can happen;
``storage_error`` turns any ``OSError`` into one (``StorageError``) naming the path, with a
hint chosen by its errno, where it reaches a person (the CLI maps them all in one place).
"""

from __future__ import annotations


class PalyraError(Exception):
    """An error with a message for people, an optional hint and the CLI's exit code."""

    exit_code: int = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class InvalidInput(PalyraError):
    """Something a person typed or wrote (a file, an argument) cannot be used: exit 2."""

    exit_code = 2


class StorageError(PalyraError):
    """A file or directory could not be read, created or written (permissions, a full disk,
    a read-only file system, a file where a directory belongs): exit 1, naming the path."""


def _reason(exc: OSError) -> str:
    text = exc.strerror or str(exc) or type(exc).__name__
    return text[:1].lower() + text[1:]


def os_error_hint(exc: OSError) -> str:
    """What to check after ``exc``, by its errno: one sentence, naming the path if known."""
    import errno

    path = str(exc.filename) if exc.filename is not None else None
    where = f"of {path} and its directory" if path else "of the files involved"
    code = exc.errno
    if code in (errno.EACCES, errno.EPERM):
        return f"check the owner and permissions {where}, or run as the user who owns it"
    if code == errno.EROFS:
        return "the file system is read-only: remount it read-write or use another home"
    if code in (errno.ENOSPC, errno.EDQUOT):
        return "the disk (or your quota) is full: free some space and try again"
    if code == errno.ENOTDIR:
        return "a part of the path is a file, not a directory: move it aside or use another home"
    if code == errno.EEXIST:
        return "a file is where a directory belongs: move it aside or use another home"
    if code == errno.EISDIR:
        return "a directory is where a file belongs: move it aside"
    if code == errno.ENOENT:
        return "it does not exist: check the path"
    if code in (errno.EMFILE, errno.ENFILE):
        return "too many open files: raise the limit (ulimit -n) or close some programs"
    if code == errno.EIO:
        return "the disk reported an I/O error: check it (dmesg) before trying again"
    return "check the path, its permissions and the free space"


def storage_error(exc: OSError, doing: str | None = None, hint: str | None = None) -> StorageError:
    """``exc`` as one line for people: ``[doing: ]path[ → path2]: reason`` with a hint by errno
    (or ``hint`` when the caller knows better)."""
    parts = [doing] if doing else []
    if exc.filename is not None:
        target = str(exc.filename)
        if exc.filename2 is not None:
            target += f" -> {exc.filename2}"
        parts.append(target)
    parts.append(_reason(exc))
    return StorageError(": ".join(parts), hint or os_error_hint(exc))
