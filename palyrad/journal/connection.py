"""The journal's one connection and transaction owner.

WAL mode so readers never block the writer; ``busy_timeout`` so concurrent processes wait
instead of failing; every write in ``BEGIN IMMEDIATE`` so a transaction never has to upgrade
its lock half-way (the classic SQLITE_BUSY deadlock).

Every domain module writes through ``write()``, which is re-entrant: inside an open write (or
a caller's ``transaction()``) a nested ``write()`` joins it instead of beginning another, so
writes that span domains share one ``BEGIN IMMEDIATE`` and commit or roll back together.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

from palyrad.journal.errors import JournalError, journal_unavailable
from palyrad.journal.migrations import MIGRATIONS, SCHEMA_VERSION

BUSY_TIMEOUT_MS = 10_000

# Who hears about a failed write (disk full, I/O error, a lock held past the busy timeout):
# the daemon's services register one so the self-healing process can open a ``journal``
# incident (SPEC §6). Called with the exception; a hook must not raise or block.
_write_failure_hooks: list[Callable[[BaseException], None]] = []


def on_write_failure(hook: Callable[[BaseException], None]) -> None:
    """Call ``hook(exc)`` whenever a write transaction on any connection of this process
    fails inside SQLite (begin, a statement, or commit)."""
    _write_failure_hooks.append(hook)


def _report_write_failure(exc: BaseException) -> None:
    for hook in _write_failure_hooks:
        with contextlib.suppress(Exception):
            hook(exc)


J = TypeVar("J")


class JournalConnection:
    """One SQLite connection (one per thread) and the transactions on it."""

    def __init__(
        self,
        path: Path,
        *,
        synchronous: str = "NORMAL",
        autocheckpoint_pages: int | None = None,
        readonly: bool = False,
        busy_timeout_ms: int | None = None,
        report_write_failures: bool = True,
    ) -> None:
        self.path = path
        self.readonly = readonly
        # How long a write waits for another writer's lock before it fails (the default
        # for everyone but the self-healing process, which must not wait behind the very
        # service it is about to kill).
        self.busy_timeout_ms = BUSY_TIMEOUT_MS if busy_timeout_ms is None else busy_timeout_ms
        try:
            if readonly:
                # ``palyra doctor`` without --repair changes nothing: no journal is created,
                # no migration runs, no mode changes (a missing file raises here).
                self.db = sqlite3.connect(
                    path.resolve().as_uri() + "?mode=ro",
                    uri=True,
                    timeout=BUSY_TIMEOUT_MS / 1000,
                    isolation_level=None,
                )
                self.db.row_factory = sqlite3.Row
                self.db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
                self.write = Write(self.db, self.busy_timeout_ms, report_write_failures)
                return
            self.db = sqlite3.connect(
                str(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None
            )
            self._configure(synchronous, autocheckpoint_pages)
            # ``with journal.write() as db:``, re-entrant (see Write); the domains share it.
            self.write = Write(self.db, self.busy_timeout_ms, report_write_failures)
            self.migrate()
        except JournalError:
            raise
        except (sqlite3.Error, OSError) as exc:  # not a database, read-only, disk full …
            raise journal_unavailable(path, exc) from exc

    def _configure(self, synchronous: str, autocheckpoint_pages: int | None) -> None:
        self.db.row_factory = sqlite3.Row
        self.db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        # Takes effect on a new, empty file only (an older journal keeps NONE: SQLite then
        # reuses free pages, and only a full VACUUM would convert it): memory maintenance and
        # journal_vacuum give pages back in bounded incremental_vacuum steps.
        self.db.execute("PRAGMA auto_vacuum = INCREMENTAL")
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute(f"PRAGMA synchronous = {synchronous}")
        if autocheckpoint_pages is not None:
            # In WAL mode with synchronous=NORMAL a commit never fsyncs; a checkpoint does.
            # Hot loops leave checkpoints to a background process (see checkpoint()) and keep
            # only a high safety limit, so a slow disk never stalls a tick.
            self.db.execute(f"PRAGMA wal_autocheckpoint = {int(autocheckpoint_pages)}")
        self.db.execute("PRAGMA foreign_keys = ON")
        with contextlib.suppress(OSError):
            self.path.chmod(0o600)

    def close(self) -> None:
        """Close the connection (an open transaction is rolled back by SQLite)."""
        self.db.close()

    # --- transactions --------------------------------------------------------------------

    def transaction(self) -> Transaction[Self]:
        """A write transaction for writes that span domains: every domain write made inside
        it joins it, so they commit together or not at all.

            with journal.transaction():
                journal.runs.insert_new(runs)
                journal.routines.advance(advances)
        """
        return Transaction(self.write, self)

    # --- schema and maintenance ----------------------------------------------------------

    def migrate(self) -> None:
        """Apply missing migrations. A journal that is already current is recognised with a
        plain read: every CLI command opens the journal, and taking the write lock just to
        find nothing to do made it queue behind a busy daemon's transactions."""
        with contextlib.suppress(sqlite3.OperationalError):  # no table yet: a new journal
            row = self.db.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
            if row[0] == SCHEMA_VERSION:
                return
        with self.write() as db:
            db.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                "version INTEGER PRIMARY KEY, applied_at_ms INTEGER NOT NULL)"
            )
            done = {r[0] for r in db.execute("SELECT version FROM schema_migrations")}
            if done and max(done) > SCHEMA_VERSION:
                raise JournalError(
                    f"{self.path}: schema version {max(done)} is newer than this Palyra "
                    f"({SCHEMA_VERSION}); upgrade Palyra"
                )
            for version, script in enumerate(MIGRATIONS, start=1):
                if version in done:
                    continue
                for statement in script.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(
                    "INSERT INTO schema_migrations VALUES (?, CAST(strftime('%s','now') AS "
                    "INTEGER) * 1000)",
                    (version,),
                )

    def checkpoint(self) -> tuple[int, int]:
        """A PASSIVE WAL checkpoint (never blocks writers): (WAL frames, frames copied)."""
        row = self.db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return int(row[1]), int(row[2])

    def schema_version(self) -> int:
        """The highest migration this journal has run."""
        row = self.db.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
        return int(row[0] or 0)

    def pragma(self, name: str) -> Any:
        """The value of ``PRAGMA name`` (for doctor and tests)."""
        return self.db.execute(f"PRAGMA {name}").fetchone()[0]

    def integrity_check(self) -> str:
        """``PRAGMA quick_check``: ``"ok"`` or the first problems found."""
        return str(self.db.execute("PRAGMA quick_check").fetchone()[0])


class Write:
    """``JournalConnection.write``: ``with journal.write() as db:`` is one ``BEGIN
    IMMEDIATE`` transaction that commits on success and rolls back on an exception.

    Re-entrant: a block entered while one is open on the connection only joins it (no
    savepoint), so an exception raised inside rolls back the whole transaction once it
    reaches the outermost block. One object per connection, entered and left like a
    context-manager class (a fraction of a ``@contextmanager`` generator's cost), and it
    holds the sqlite3 connection but not the journal: no reference cycle, so a journal
    dropped without ``close()`` still closes its connection at once."""

    __slots__ = ("_db", "_depth", "_report", "_timeout_ms")

    def __init__(
        self, db: sqlite3.Connection, timeout_ms: int = BUSY_TIMEOUT_MS, report: bool = True
    ) -> None:
        self._db = db
        self._depth = 0  # open blocks
        self._timeout_ms = timeout_ms
        self._report = report  # failures go to the write-failure hooks

    def __call__(self) -> Self:
        return self

    def __enter__(self) -> sqlite3.Connection:
        if not self._depth:
            try:
                _begin_immediate(self._db, self._timeout_ms)
            except sqlite3.Error as exc:
                if self._report:
                    _report_write_failure(exc)
                raise
        self._depth += 1
        return self._db

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._depth -= 1
        if self._depth:
            return
        if isinstance(exc, sqlite3.Error) and not _is_constraint(exc) and self._report:
            _report_write_failure(exc)
        try:
            self._db.execute("COMMIT" if exc_type is None else "ROLLBACK")
        except sqlite3.Error as ended:
            if self._report:
                _report_write_failure(ended)
            if exc_type is None:
                raise
            # A failed ROLLBACK (SQLite may have rolled back on its own, e.g. on a full disk)
            # must not hide the error that caused it: that one propagates.


def _is_constraint(exc: sqlite3.Error) -> bool:
    """A uniqueness or CHECK violation is the schema doing its job (e.g. the one-run-per-tick
    rule refusing a duplicate), not a journal that cannot be written."""
    return isinstance(exc, sqlite3.IntegrityError)


class Transaction(Generic[J]):
    """``JournalConnection.transaction()``: a ``write()`` block that hands out the journal,
    for call sites that write to several domains at once."""

    __slots__ = ("_journal", "_write")

    def __init__(self, write: Write, journal: J) -> None:
        self._write = write
        self._journal = journal

    def __enter__(self) -> J:
        self._write.__enter__()
        return self._journal

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._write.__exit__(exc_type, exc, tb)


def _begin_immediate(db: sqlite3.Connection, timeout_ms: int) -> None:
    """Take the write lock, waiting for another writer in steps of 0.1-2 ms.

    SQLite's own busy handler sleeps 1, 2, 5, 10, 15 ms ... between attempts, so meeting
    a writer that holds the lock for 100 µs cost the executor 1-8 ms — at 176 runs/s,
    with the scheduler, executor and heartbeats all writing, that was most of the
    tick-lateness tail. The connection's busy timeout stays for reads (which in WAL
    mode practically never wait) and as the overall limit."""
    db.execute("PRAGMA busy_timeout = 0")
    try:
        delay = 0.0001
        deadline = time.monotonic() + timeout_ms / 1000
        while True:
            try:
                db.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, 0.002)
    finally:
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")


class Domain:
    """Base of the per-domain classes: the connection for reads (``self._db``) and its
    re-entrant ``Write`` (``with self._write() as db:``). They hold neither the journal nor
    each other, so a domain call costs what a method of the one big class did."""

    __slots__ = ("_db", "_write")

    def __init__(self, conn: JournalConnection) -> None:
        self._db: sqlite3.Connection = conn.db
        self._write: Write = conn.write
