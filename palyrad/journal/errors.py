"""Why the journal could not be opened, in words (``JournalError``): the one translation of
SQLite's and the operating system's errors on ``journal.sqlite3`` into a message naming the
file and a hint chosen by the kind of failure (a read-only home, a full disk, a file that is
not a database).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from routines.errors import PalyraError, storage_error

JOURNAL_HINT = "run: palyra doctor --only journal"

# SQLite primary result codes (https://sqlite.org/rescode.html).
_SQLITE_PERM = 3
_SQLITE_READONLY = 8
_SQLITE_IOERR = 10
_SQLITE_CORRUPT = 11
_SQLITE_FULL = 13
_SQLITE_CANTOPEN = 14
_SQLITE_NOTADB = 26


# What a journal read or write raises when SQLite cannot do it (locked past the busy
# timeout, disk full, I/O error): for the few callers that must go on without the journal
# (the self-healing process) and so must not need ``import sqlite3`` themselves.
JournalUnavailable = sqlite3.OperationalError


class JournalError(PalyraError, RuntimeError):
    """The journal cannot be opened, migrated or used; the message names the file, the hint
    the fix (exit 1)."""


def _sqlite_code(exc: BaseException) -> int | None:
    for e in (exc, exc.__cause__):
        code = getattr(e, "sqlite_errorcode", None)
        if isinstance(e, sqlite3.Error) and isinstance(code, int):
            return code & 0xFF  # extended codes carry the primary one in the low byte
    return None


def journal_unavailable(path: Path, exc: Exception) -> PalyraError:
    """``exc`` (raised while opening the journal at ``path``) as one line for people."""
    if isinstance(exc, OSError):
        return storage_error(exc, "cannot open the journal")
    text = str(exc)
    what = text if str(path) in text else f"{path}: {text}"
    code = _sqlite_code(exc)
    if code in (_SQLITE_READONLY, _SQLITE_PERM, _SQLITE_CANTOPEN):
        hint = (
            f"check that you can write to {path.name} and to {path.parent} (owner and mode):"
            " SQLite creates its -wal and -shm files beside it"
        )
    elif code == _SQLITE_FULL:
        hint = "the disk (or your quota) is full: free some space and try again"
    elif code in (_SQLITE_NOTADB, _SQLITE_CORRUPT):
        hint = "move it aside and a new journal is created, or run: palyra doctor --only journal"
    elif code == _SQLITE_IOERR:
        hint = "the disk reported an I/O error: check it (dmesg) before trying again"
    else:
        hint = JOURNAL_HINT
    return JournalError(what, hint)
