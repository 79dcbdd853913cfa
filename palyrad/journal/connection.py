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
from typing import Any, Generic, Self, TypeVar, cast

from palyrad.journal.migrations import MIGRATIONS, SCHEMA_VERSION
from routines.errors import PalyraError

BUSY_TIMEOUT_MS = 10_000

T = TypeVar("T")


class JournalError(PalyraError, RuntimeError):
    """The journal cannot be opened or migrated (names the file and the fix)."""


class JournalConnection:
    """One SQLite connection (one per thread) and the transactions on it."""

    def __init__(
        self, path: Path, *, synchronous: str = "NORMAL", autocheckpoint_pages: int | None = None
    ) -> None:
        self.path = path
        self._write_depth = 0  # open write() / transaction() blocks on this connection
        try:
            self.db = sqlite3.connect(
                str(path), timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None
            )
        except sqlite3.Error as exc:
            raise JournalError(f"{path}: cannot open the journal: {exc}") from exc
        self.db.row_factory = sqlite3.Row
        self.db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        self.db.execute("PRAGMA journal_mode = WAL")
        self.db.execute(f"PRAGMA synchronous = {synchronous}")
        if autocheckpoint_pages is not None:
            # In WAL mode with synchronous=NORMAL a commit never fsyncs; a checkpoint does.
            # Hot loops leave checkpoints to a background process (see checkpoint()) and keep
            # only a high safety limit, so a slow disk never stalls a tick.
            self.db.execute(f"PRAGMA wal_autocheckpoint = {int(autocheckpoint_pages)}")
        self.db.execute("PRAGMA foreign_keys = ON")
        with contextlib.suppress(OSError):
            path.chmod(0o600)
        self._write_scope = WriteScope(self, self.db)
        self._transaction_scope: WriteScope[Self] = WriteScope(self, cast(Self, self))
        self.migrate()

    def close(self) -> None:
        """Close the connection (an open transaction is rolled back by SQLite)."""
        self.db.close()

    # --- transactions --------------------------------------------------------------------

    def write(self) -> WriteScope[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction; commits on success, rolls back on error.

        Re-entrant: inside an open write a nested ``write()`` joins it (no savepoint, so an
        error the inner block raises rolls back the whole transaction once it reaches the
        outer one). ``with journal.write() as db:`` gives the sqlite3 connection."""
        return self._write_scope

    def transaction(self) -> WriteScope[Self]:
        """A write transaction for writes that span domains: every domain write made inside
        it joins it, so they commit together or not at all.

            with journal.transaction():
                journal.runs.insert_new(runs)
                journal.routines.advance(advances)
        """
        return self._transaction_scope

    def _begin_immediate(self) -> None:
        """Take the write lock, waiting for another writer in steps of 0.1-2 ms.

        SQLite's own busy handler sleeps 1, 2, 5, 10, 15 ms ... between attempts, so meeting
        a writer that holds the lock for 100 µs cost the executor 1-8 ms — at 176 runs/s,
        with the scheduler, executor and heartbeats all writing, that was most of the
        tick-lateness tail. The connection's busy timeout stays for reads (which in WAL
        mode practically never wait) and as the overall limit."""
        db = self.db
        db.execute("PRAGMA busy_timeout = 0")
        try:
            delay = 0.0001
            deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1000
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


class WriteScope(Generic[T]):
    """What ``write()`` and ``transaction()`` return: one reusable object per connection,
    which begins the transaction when the outermost block enters and commits (or, on an
    exception, rolls back) when it exits; inner blocks only count depth.

    A class rather than a ``@contextmanager`` generator: entering and leaving costs a
    fraction of a generator's, so the hot loops' writes — and a cross-domain transaction
    with its nested domain writes — cost no more than the single generator they replaced."""

    __slots__ = ("_conn", "_value")

    def __init__(self, conn: JournalConnection, value: T) -> None:
        self._conn = conn
        self._value = value

    def __enter__(self) -> T:
        conn = self._conn
        if not conn._write_depth:
            conn._begin_immediate()
        conn._write_depth += 1
        return self._value

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        conn = self._conn
        conn._write_depth -= 1
        if not conn._write_depth:
            conn.db.execute("COMMIT" if exc_type is None else "ROLLBACK")


class Domain:
    """Base of the per-domain classes: the shared connection for reads and its re-entrant
    ``write()``, bound once so a domain call costs no more than a method of one big class."""

    __slots__ = ("_db", "_write")

    def __init__(self, conn: JournalConnection) -> None:
        self._db: sqlite3.Connection = conn.db
        self._write: Callable[[], WriteScope[sqlite3.Connection]] = conn.write
