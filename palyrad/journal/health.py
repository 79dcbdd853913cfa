"""The journal's own health, as ``palyra doctor`` reads it: schema version, journal mode,
integrity, the SQLite library's version, and the one repair doctor may make (a WAL
checkpoint that truncates the file).

Functions over a connection rather than a domain: they look at the database itself, not at
a table, and work on a read-only connection (``Journal(path, readonly=True)``) as well. Every
SQLite error is returned as a ``JournalError`` naming the file, so callers outside this
package never see ``sqlite3`` (tests/test_layering.py).
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from palyrad.journal.connection import JournalConnection
from palyrad.journal.errors import JournalError, journal_unavailable

# The library Python was linked with (what the daemon uses too).
SQLITE_VERSION: str = sqlite3.sqlite_version
SQLITE_VERSION_INFO: tuple[int, int, int] = sqlite3.sqlite_version_info
# ``RETURNING`` and ``ON CONFLICT … DO UPDATE`` (upserts) need 3.35.
MIN_SQLITE_VERSION: tuple[int, int, int] = (3, 35, 0)


@dataclass(frozen=True, slots=True)
class JournalFacts:
    """What the journal file says about itself."""

    schema_version: int  # 0: no migration has run (an empty file)
    journal_mode: str  # "wal" once any daemon or CLI command opened it
    page_size: int
    page_count: int


def journal_facts(journal: JournalConnection) -> JournalFacts:
    """Schema version, journal mode and size; ``JournalError`` when the file is not a
    usable database (the first read is where SQLite finds out)."""
    try:
        db = journal.db
        has_table = db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_migrations'"
        ).fetchone()
        version = 0
        if has_table is not None:
            row = db.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
            version = int(row[0] or 0)
        return JournalFacts(
            schema_version=version,
            journal_mode=str(db.execute("PRAGMA journal_mode").fetchone()[0]).lower(),
            page_size=int(db.execute("PRAGMA page_size").fetchone()[0]),
            page_count=int(db.execute("PRAGMA page_count").fetchone()[0]),
        )
    except sqlite3.Error as exc:
        raise journal_unavailable(journal.path, exc) from exc


def quick_check(journal: JournalConnection, max_problems: int) -> list[str]:
    """``PRAGMA quick_check(N)``: ``["ok"]``, or up to ``max_problems`` problems found.
    It reads every page (~O(size)); the caller chooses when that is affordable."""
    try:
        rows = journal.db.execute(f"PRAGMA quick_check({int(max_problems)})").fetchall()
    except sqlite3.Error as exc:
        raise journal_unavailable(journal.path, exc) from exc
    return [str(r[0]) for r in rows]


def checkpoint_truncate(journal: JournalConnection) -> tuple[bool, int]:
    """``PRAGMA wal_checkpoint(TRUNCATE)``: copy the WAL into the database and truncate it
    to zero bytes. Returns (completed, WAL frames it held); not completed when a reader or
    writer kept it from finishing (safe: nothing is lost, the WAL only stays large).
    Needs a writable connection."""
    if journal.readonly:
        raise JournalError(f"{journal.path}: a checkpoint needs a writable connection")
    try:
        busy, frames, _copied = journal.db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    except sqlite3.Error as exc:
        raise journal_unavailable(journal.path, exc) from exc
    return not busy, int(frames)


def maintain(journal: JournalConnection, pages: int = 2_000) -> str:
    """The ``journal_vacuum`` maintenance: give back free pages without blocking writers for
    long, and refresh the query planner's statistics.

    A full ``VACUUM`` rewrites the whole file under an exclusive lock (seconds on a large
    journal, every run start waiting behind it). With ``auto_vacuum = INCREMENTAL`` a
    bounded ``incremental_vacuum`` step frees pages instead; a journal created before that
    mode (NONE) keeps its free pages for reuse, which SQLite does anyway. Then ``PRAGMA
    optimize`` (cheap: only what changed) and a checkpoint that truncates the WAL."""
    mode = int(journal.db.execute("PRAGMA auto_vacuum").fetchone()[0])
    free = int(journal.db.execute("PRAGMA freelist_count").fetchone()[0])
    done = []
    if mode == 2 and free:  # INCREMENTAL
        journal.db.execute(f"PRAGMA incremental_vacuum({int(pages)})").fetchall()
        done.append(f"freed up to {min(free, pages)} of {free} free pages")
    elif free:
        done.append(f"{free} free pages kept for reuse (auto_vacuum is not incremental)")
    journal.db.execute("PRAGMA optimize")
    completed, frames = checkpoint_truncate(journal)
    done.append("optimized; " + ("WAL truncated" if completed else f"WAL busy ({frames} frames)"))
    return "; ".join(done)
