"""The journal: the one module that owns the SQLite schema and every query.

WAL mode so readers never block the writer; ``busy_timeout`` so concurrent processes wait
instead of failing; every write in ``BEGIN IMMEDIATE`` so a transaction never has to upgrade
its lock half-way (the classic SQLITE_BUSY deadlock). Uniqueness the product promises lives
in the schema: one run per ``(routine_id, scheduled_for, attempt)``.

Migrations are numbered and forward-only; ``schema_migrations`` records which ran.
"""

from __future__ import annotations

import contextlib
import sqlite3
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from palyrad.domain.runs import RUN_COLUMNS, Run, RunStatus, ulid_floor
from routines.errors import PalyraError

BUSY_TIMEOUT_MS = 10_000

# daemon_state keys: what the daemon publishes for the CLI, doctor and its own services.
STATE_DEFINITIONS_APPLIED = "definitions_applied"  # {at_ms, file_hash, count}
STATE_DEFINITIONS_ERROR = "definitions_error"  # {at_ms, file_hash, errors}
STATE_APPROVALS_CHANGED = "approvals_changed"  # bumped by every grant
STATE_LISTENED_EVENTS = "listened_events"  # event names some routine listens to
# ... and one the CLI keeps for itself (palyrad.ops.definitions_hash):
STATE_DEFINITIONS_HASH_MEMO = "definitions_hash_memo"  # {signature, file_hash}
PRUNE_BATCH = 500

MIGRATIONS: tuple[str, ...] = (
    # 1: the first schema
    """
    CREATE TABLE routine_state (
        routine_id TEXT PRIMARY KEY,
        definition_hash TEXT NOT NULL,
        schedule_key TEXT,
        enabled INTEGER NOT NULL,
        first_seen_ms INTEGER NOT NULL,
        next_nominal_ms INTEGER,
        next_fire_ms INTEGER,
        last_nominal_ms INTEGER,
        updated_ms INTEGER NOT NULL
    );
    CREATE INDEX routine_state_due ON routine_state(next_fire_ms)
        WHERE enabled = 1 AND next_fire_ms IS NOT NULL;

    CREATE TABLE runs (
        run_id TEXT PRIMARY KEY,
        chain_id TEXT NOT NULL,
        routine_id TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        trigger_kind TEXT NOT NULL,
        status TEXT NOT NULL,
        queued_at_ms INTEGER NOT NULL,
        trigger_payload TEXT,
        scheduled_for_ms INTEGER,
        fire_at_ms INTEGER,
        not_before_ms INTEGER,
        started_at_ms INTEGER,
        finished_at_ms INTEGER,
        exit_code INTEGER,
        error_kind TEXT,
        error_message TEXT,
        output_tail TEXT,
        log_path TEXT,
        definition_hash TEXT,
        missed_count INTEGER,
        first_missed_ms INTEGER,
        last_missed_ms INTEGER,
        pid INTEGER,
        lease_owner TEXT,
        heartbeat_ms INTEGER,
        cancel_requested INTEGER NOT NULL DEFAULT 0,
        decided INTEGER NOT NULL DEFAULT 1,
        spec TEXT
    );
    CREATE UNIQUE INDEX runs_one_per_tick ON runs(routine_id, scheduled_for_ms, attempt);
    CREATE INDEX runs_by_routine ON runs(routine_id, run_id);
    CREATE INDEX runs_active ON runs(status, not_before_ms)
        WHERE status IN ('pending', 'running');

    CREATE TABLE process_heartbeats (
        name TEXT PRIMARY KEY,
        pid INTEGER NOT NULL,
        instance TEXT NOT NULL,
        state TEXT NOT NULL,
        restarts INTEGER NOT NULL DEFAULT 0,
        heartbeat_ms INTEGER NOT NULL
    );

    CREATE TABLE daemon_state (
        key TEXT PRIMARY KEY,
        value TEXT NOT NULL,
        updated_ms INTEGER NOT NULL
    );

    CREATE TABLE approvals (
        routine_id TEXT NOT NULL,
        definition_hash TEXT NOT NULL,
        mode TEXT NOT NULL,
        requested_at_ms INTEGER NOT NULL,
        granted_at_ms INTEGER,
        PRIMARY KEY (routine_id, definition_hash)
    );

    CREATE TABLE events (
        event_id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL,
        payload TEXT,
        created_ms INTEGER NOT NULL,
        consumed_ms INTEGER
    );
    CREATE INDEX events_unconsumed ON events(event_id) WHERE consumed_ms IS NULL;

    CREATE TABLE tasks (
        task_id TEXT PRIMARY KEY,
        task_kind TEXT NOT NULL,
        payload TEXT,
        priority INTEGER NOT NULL DEFAULT 0,
        status TEXT NOT NULL,
        not_before_ms INTEGER NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        max_attempts INTEGER NOT NULL DEFAULT 3,
        lease_owner TEXT,
        heartbeat_ms INTEGER,
        last_error TEXT,
        created_ms INTEGER NOT NULL,
        finished_ms INTEGER
    );
    CREATE INDEX tasks_ready ON tasks(status, priority, not_before_ms);
    """,
)

MIGRATIONS += (
    # 2: delivery outbox for channel results (acknowledged by paired nodes)
    """
    CREATE TABLE outbox (
        outbox_id INTEGER PRIMARY KEY AUTOINCREMENT,
        channel TEXT NOT NULL,
        routine_id TEXT NOT NULL,
        run_id TEXT NOT NULL,
        payload TEXT NOT NULL,
        created_ms INTEGER NOT NULL,
        acked_ms INTEGER
    );
    CREATE INDEX outbox_unacked ON outbox(channel, outbox_id) WHERE acked_ms IS NULL;
    """,
)

MIGRATIONS += (
    # 3: indexes the hot loops can actually use. SQLite only uses a partial index when the
    # query's WHERE implies the index's, and `status = 'running'` does not imply
    # `status IN ('pending', 'running')`, so runs_active was never used: every executor
    # loop scanned the whole runs table.
    """
    DROP INDEX runs_active;
    CREATE INDEX runs_status ON runs(status, routine_id);
    CREATE INDEX runs_undecided ON runs(run_id) WHERE decided = 0;
    CREATE INDEX runs_cancel_requested ON runs(lease_owner) WHERE cancel_requested = 1;
    """,
)

SCHEMA_VERSION = len(MIGRATIONS)


@dataclass(frozen=True, slots=True)
class RoutineState:
    """Runtime state the journal keeps per routine id (definitions say *what*, this *when*)."""

    routine_id: str
    definition_hash: str
    schedule_key: str | None
    enabled: bool
    first_seen_ms: int
    next_nominal_ms: int | None
    next_fire_ms: int | None
    last_nominal_ms: int | None


@dataclass(frozen=True, slots=True)
class ProcessHeartbeat:
    name: str
    pid: int
    instance: str
    state: str
    restarts: int
    heartbeat_ms: int


class JournalError(PalyraError, RuntimeError):
    """The journal cannot be opened or migrated (names the file and the fix)."""


def _state_row(row: sqlite3.Row) -> RoutineState:
    return RoutineState(
        routine_id=row["routine_id"],
        definition_hash=row["definition_hash"],
        schedule_key=row["schedule_key"],
        enabled=bool(row["enabled"]),
        first_seen_ms=row["first_seen_ms"],
        next_nominal_ms=row["next_nominal_ms"],
        next_fire_ms=row["next_fire_ms"],
        last_nominal_ms=row["last_nominal_ms"],
    )


def _run_row(row: sqlite3.Row) -> Run:
    values = {c: row[c] for c in RUN_COLUMNS}
    values["cancel_requested"] = bool(values["cancel_requested"])
    values["decided"] = bool(values["decided"])
    return Run(**values)


_RUN_SELECT = "SELECT " + ", ".join(RUN_COLUMNS) + " FROM runs"
_RUN_INSERT = (
    "INSERT INTO runs ("
    + ", ".join(RUN_COLUMNS)
    + ") VALUES ("
    + ", ".join("?" for _ in RUN_COLUMNS)
    + ")"
)


class Journal:
    """A connection to the journal plus every query Palyra makes."""

    def __init__(
        self, path: Path, *, synchronous: str = "NORMAL", autocheckpoint_pages: int | None = None
    ) -> None:
        self.path = path
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
        self.migrate()

    # --- plumbing ------------------------------------------------------------------------

    def close(self) -> None:
        self.db.close()

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` transaction; commits on success, rolls back on error."""
        self._begin_immediate()
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

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
        row = self.db.execute("SELECT MAX(version) FROM schema_migrations").fetchone()
        return int(row[0] or 0)

    def pragma(self, name: str) -> Any:
        return self.db.execute(f"PRAGMA {name}").fetchone()[0]

    def integrity_check(self) -> str:
        return str(self.db.execute("PRAGMA quick_check").fetchone()[0])

    # --- daemon state (key/value) --------------------------------------------------------

    def set_state(self, key: str, value: str, now_ms: int) -> None:
        with self.write() as db:
            db.execute(
                "INSERT INTO daemon_state VALUES (?, ?, ?) ON CONFLICT(key) DO UPDATE "
                "SET value = excluded.value, updated_ms = excluded.updated_ms",
                (key, value, now_ms),
            )

    def delete_state(self, key: str) -> None:
        with self.write() as db:
            db.execute("DELETE FROM daemon_state WHERE key = ?", (key,))

    def get_state(self, key: str) -> str | None:
        row = self.db.execute("SELECT value FROM daemon_state WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    # --- routine runtime state -----------------------------------------------------------

    def routine_states(self) -> dict[str, RoutineState]:
        rows = self.db.execute("SELECT * FROM routine_state")
        return {r["routine_id"]: _state_row(r) for r in rows}

    def routine_state(self, routine_id: str) -> RoutineState | None:
        row = self.db.execute(
            "SELECT * FROM routine_state WHERE routine_id = ?", (routine_id,)
        ).fetchone()
        return None if row is None else _state_row(row)

    def sync_routine_states(
        self, upserts: Sequence[RoutineState], deletes: Iterable[str], now_ms: int
    ) -> None:
        """Apply a definitions reload: only the rows that changed are written."""
        with self.write() as db:
            db.executemany(
                "INSERT INTO routine_state (routine_id, definition_hash, schedule_key, enabled,"
                " first_seen_ms, next_nominal_ms, next_fire_ms, last_nominal_ms, updated_ms)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(routine_id) DO UPDATE SET"
                " definition_hash = excluded.definition_hash,"
                " schedule_key = excluded.schedule_key, enabled = excluded.enabled,"
                " first_seen_ms = excluded.first_seen_ms,"
                " next_nominal_ms = excluded.next_nominal_ms,"
                " next_fire_ms = excluded.next_fire_ms,"
                " last_nominal_ms = excluded.last_nominal_ms, updated_ms = excluded.updated_ms",
                [
                    (
                        s.routine_id,
                        s.definition_hash,
                        s.schedule_key,
                        int(s.enabled),
                        s.first_seen_ms,
                        s.next_nominal_ms,
                        s.next_fire_ms,
                        s.last_nominal_ms,
                        now_ms,
                    )
                    for s in upserts
                ],
            )
            db.executemany(
                "DELETE FROM routine_state WHERE routine_id = ?", [(d,) for d in deletes]
            )

    def due_routines(self, now_ms: int, limit: int) -> list[RoutineState]:
        rows = self.db.execute(
            "SELECT * FROM routine_state WHERE enabled = 1 AND next_fire_ms IS NOT NULL"
            " AND next_fire_ms <= ? ORDER BY next_fire_ms LIMIT ?",
            (now_ms, limit),
        )
        return [_state_row(r) for r in rows]

    def earliest_fire_ms(self, after: int | None = None) -> int | None:
        """The earliest next fire of an enabled routine (later than ``after``, if given)."""
        row = self.db.execute(
            "SELECT MIN(next_fire_ms) FROM routine_state WHERE enabled = 1"
            " AND next_fire_ms IS NOT NULL AND next_fire_ms > ?",
            (-(2**62) if after is None else after,),
        ).fetchone()
        return None if row[0] is None else int(row[0])

    def record_ticks(
        self,
        runs: Sequence[Run],
        advances: Sequence[tuple[str, int | None, int | None, int | None]],
    ) -> int:
        """Insert the runs for due ticks and move each routine's next fire, atomically.

        ``advances`` holds ``(routine_id, last_nominal_ms, next_nominal_ms, next_fire_ms)``.
        A run whose ``(routine_id, scheduled_for, attempt)`` already exists is ignored (the
        schema's uniqueness makes a retried claim harmless). Returns the rows inserted.
        """
        with self.write() as db:
            before = db.total_changes
            db.executemany(
                _RUN_INSERT.replace("INSERT", "INSERT OR IGNORE", 1),
                [tuple(getattr(r, c) for c in RUN_COLUMNS) for r in runs],
            )
            inserted = db.total_changes - before
            db.executemany(
                "UPDATE routine_state SET last_nominal_ms = ?, next_nominal_ms = ?,"
                " next_fire_ms = ? WHERE routine_id = ?",
                [(last, nxt, fire, rid) for rid, last, nxt, fire in advances],
            )
        return inserted

    # --- runs ----------------------------------------------------------------------------

    def active_counts(self) -> dict[str, int]:
        """Active (running or decided pending) runs per routine, for concurrency policy."""
        rows = self.db.execute(
            "SELECT routine_id, COUNT(*) FROM runs WHERE status IN ('pending', 'running')"
            " AND decided = 1 GROUP BY routine_id"
        )
        return {r[0]: int(r[1]) for r in rows}

    def undecided_runs(self, limit: int) -> list[Run]:
        rows = self.db.execute(
            _RUN_SELECT + " WHERE decided = 0 AND status = 'pending' ORDER BY run_id LIMIT ?",
            (limit,),
        )
        return [_run_row(r) for r in rows]

    def decide_runs(
        self,
        decisions: Sequence[tuple[str, str, str | None, str | None, str | None, str | None]],
        now_ms: int,
    ) -> None:
        """Apply policy decisions to triggers: ``(run_id, status, error_kind, error_message,
        spec, definition_hash)``; a final status also stamps ``finished_at``."""
        with self.write() as db:
            db.executemany(
                "UPDATE runs SET decided = 1, status = ?, error_kind = ?, error_message = ?,"
                " spec = ?, definition_hash = ?, finished_at_ms = CASE WHEN ? IN"
                " ('pending', 'running') THEN NULL ELSE ? END WHERE run_id = ? AND decided = 0",
                [
                    (status, kind, msg, spec, dhash, status, now_ms, run_id)
                    for run_id, status, kind, msg, spec, dhash in decisions
                ],
            )

    def insert_run(self, run: Run) -> None:
        with self.write() as db:
            db.execute(_RUN_INSERT, tuple(getattr(run, c) for c in RUN_COLUMNS))

    def get_run(self, run_id: str) -> Run | None:
        row = self.db.execute(_RUN_SELECT + " WHERE run_id = ?", (run_id,)).fetchone()
        return None if row is None else _run_row(row)

    def runs_for_routine(
        self,
        routine_id: str,
        *,
        limit: int = 50,
        before_run_id: str | None = None,
        status: str | None = None,
    ) -> list[Run]:
        sql = _RUN_SELECT + " WHERE routine_id = ?"
        args: list[Any] = [routine_id]
        if before_run_id is not None:
            sql += " AND run_id < ?"
            args.append(before_run_id)
        if status is not None:
            sql += " AND status = ?"
            args.append(status)
        sql += " ORDER BY run_id DESC LIMIT ?"
        args.append(limit)
        return [_run_row(r) for r in self.db.execute(sql, args)]

    def last_runs(self) -> dict[str, Run]:
        """The newest run of every routine (one indexed query, not one per routine)."""
        rows = self.db.execute(
            _RUN_SELECT + " WHERE run_id IN (SELECT MAX(run_id) FROM runs GROUP BY routine_id)"
        )
        return {r["routine_id"]: _run_row(r) for r in rows}

    def active_runs(self, routine_id: str | None = None) -> list[Run]:
        sql = _RUN_SELECT + " WHERE status IN ('pending', 'running')"
        args: tuple[Any, ...] = ()
        if routine_id is not None:
            sql += " AND routine_id = ?"
            args = (routine_id,)
        return [_run_row(r) for r in self.db.execute(sql + " ORDER BY run_id", args)]

    def count_running(self) -> int:
        return int(
            self.db.execute("SELECT COUNT(*) FROM runs WHERE status = 'running'").fetchone()[0]
        )

    def runnable_pending(self, now_ms: int, limit: int) -> list[Run]:
        """Decided, unleased pending runs whose wait is over: manual triggers first (someone
        is waiting at a prompt), then oldest first (FIFO)."""
        rows = self.db.execute(
            _RUN_SELECT + " WHERE status = 'pending' AND decided = 1 AND lease_owner IS NULL"
            " AND cancel_requested = 0 AND (not_before_ms IS NULL OR not_before_ms <= ?)"
            " ORDER BY trigger_kind != 'manual', run_id LIMIT ?",
            (now_ms, limit),
        )
        return [_run_row(r) for r in rows]

    def running_routine_ids(self) -> set[str]:
        rows = self.db.execute("SELECT DISTINCT routine_id FROM runs WHERE status = 'running'")
        return {r[0] for r in rows}

    def lease(self, run_ids: Sequence[str], owner: str, now_ms: int) -> list[str]:
        """Lease pending runs to ``owner``; returns the ids actually leased (fencing)."""
        leased: list[str] = []
        with self.write() as db:
            for run_id in run_ids:
                cur = db.execute(
                    "UPDATE runs SET lease_owner = ?, heartbeat_ms = ? WHERE run_id = ?"
                    " AND status = 'pending' AND lease_owner IS NULL AND cancel_requested = 0",
                    (owner, now_ms, run_id),
                )
                if cur.rowcount == 1:
                    leased.append(run_id)
        return leased

    def release_foreign_leases(self, owner: str, now_ms: int) -> int:
        """Give back pending runs leased by a dead executor instance (never started); the
        ones cancelled while leased are finalized ``cancelled`` instead — released, they
        could never be leased again (``lease`` refuses them) and would block their routine."""
        with self.write() as db:
            n = self._cancel_leased(
                db, "lease_owner IS NOT NULL AND lease_owner != ?", owner, now_ms
            )
            return (
                n
                + db.execute(
                    "UPDATE runs SET lease_owner = NULL WHERE status = 'pending'"
                    " AND lease_owner IS NOT NULL AND lease_owner != ?",
                    (owner,),
                ).rowcount
            )

    @staticmethod
    def _cancel_leased(db: sqlite3.Connection, where: str, arg: str, now_ms: int) -> int:
        return db.execute(
            "UPDATE runs SET status = 'cancelled', error_kind = 'cancelled',"
            " error_message = 'cancelled before it started', finished_at_ms = ?"
            " WHERE status = 'pending' AND cancel_requested = 1 AND " + where,
            (now_ms, arg),
        ).rowcount

    def next_pending_ms(self) -> int | None:
        """The earliest instant an unleased pending run becomes runnable (retry waits)."""
        row = self.db.execute(
            "SELECT MIN(COALESCE(not_before_ms, 0)) FROM runs WHERE status = 'pending'"
            " AND lease_owner IS NULL AND decided = 1 AND cancel_requested = 0"
        ).fetchone()
        return None if row[0] is None else int(row[0])

    def mark_started(
        self, run_id: str, owner: str, pid: int, started_ms: int, log_path: str
    ) -> bool:
        """pending → running, only while ``owner`` still holds the lease (fencing)."""
        with self.write() as db:
            cur = db.execute(
                "UPDATE runs SET status = 'running', pid = ?, started_at_ms = ?,"
                " heartbeat_ms = ?, log_path = ? WHERE run_id = ? AND lease_owner = ?"
                " AND status = 'pending' AND cancel_requested = 0",
                (pid, started_ms, started_ms, log_path, run_id, owner),
            )
            return cur.rowcount == 1

    def heartbeat_runs(self, owner: str, now_ms: int) -> None:
        with self.write() as db:
            db.execute(
                "UPDATE runs SET heartbeat_ms = ? WHERE lease_owner = ? AND status = 'running'",
                (now_ms, owner),
            )

    def finish_run(
        self,
        run_id: str,
        *,
        status: RunStatus,
        finished_ms: int,
        exit_code: int | None = None,
        error_kind: str | None = None,
        error_message: str | None = None,
        output_tail: str | None = None,
        owner: str | None = None,
        log_path: str | None = None,
        follow_up: Run | None = None,
    ) -> bool:
        """Finalize an active run; with ``owner`` only while that owner holds the lease.

        ``follow_up`` (the next retry attempt) is inserted in the same transaction, so a
        crash can never lose a retry nor create one for a run that was not finalized.
        """
        sql = (
            "UPDATE runs SET status = ?, finished_at_ms = ?, exit_code = ?, error_kind = ?,"
            " error_message = ?, output_tail = COALESCE(?, output_tail),"
            " log_path = COALESCE(?, log_path) WHERE run_id = ?"
            " AND status IN ('pending', 'running')"
        )
        args: list[Any] = [
            status.value,
            finished_ms,
            exit_code,
            error_kind,
            error_message,
            output_tail,
            log_path,
            run_id,
        ]
        if owner is not None:
            sql += " AND lease_owner = ?"
            args.append(owner)
        with self.write() as db:
            done = db.execute(sql, args).rowcount == 1
            if done and follow_up is not None:
                db.execute(
                    _RUN_INSERT.replace("INSERT", "INSERT OR IGNORE", 1),
                    tuple(getattr(follow_up, c) for c in RUN_COLUMNS),
                )
            return done

    def release_lease(self, run_id: str, owner: str, now_ms: int) -> None:
        """Give a claimed-but-unstarted run back to the queue (e.g. on graceful stop); one
        cancelled meanwhile is finalized ``cancelled`` instead."""
        with self.write() as db:
            if self._cancel_leased(db, "run_id = ?", run_id, now_ms):
                return
            db.execute(
                "UPDATE runs SET lease_owner = NULL WHERE run_id = ? AND lease_owner = ?"
                " AND status = 'pending'",
                (run_id, owner),
            )

    def request_cancel(self, run_id: str) -> Run | None:
        """Mark an active run for cancellation; a pending one is cancelled at once."""
        with self.write() as db:
            row = db.execute(_RUN_SELECT + " WHERE run_id = ?", (run_id,)).fetchone()
            if row is None or row["status"] not in ("pending", "running"):
                return None if row is None else _run_row(row)
            db.execute("UPDATE runs SET cancel_requested = 1 WHERE run_id = ?", (run_id,))
            if row["status"] == "pending" and row["lease_owner"] is None:
                db.execute(
                    "UPDATE runs SET status = 'cancelled', error_kind = 'cancelled',"
                    " error_message = 'cancelled before it started',"
                    " finished_at_ms = CAST((julianday('now') - 2440587.5) * 86400000 AS INTEGER)"
                    " WHERE run_id = ?",
                    (run_id,),
                )
            row = db.execute(_RUN_SELECT + " WHERE run_id = ?", (run_id,)).fetchone()
        return _run_row(row)

    def cancel_requested_ids(self, owner: str) -> list[str]:
        rows = self.db.execute(
            "SELECT run_id FROM runs WHERE cancel_requested = 1 AND lease_owner = ?"
            " AND status IN ('pending', 'running')",
            (owner,),
        )
        return [r[0] for r in rows]

    def running_not_owned_by(self, owner: str) -> list[Run]:
        """Runs left ``running`` by another executor instance: crash orphans."""
        rows = self.db.execute(
            _RUN_SELECT + " WHERE status = 'running' AND (lease_owner IS NULL OR lease_owner != ?)",
            (owner,),
        )
        return [_run_row(r) for r in rows]

    def stale_running(self, older_than_ms: int) -> list[Run]:
        rows = self.db.execute(
            _RUN_SELECT + " WHERE status = 'running' AND heartbeat_ms < ?", (older_than_ms,)
        )
        return [_run_row(r) for r in rows]

    def prune_runs(
        self, max_per_routine: int, older_than_ms: int, *, batch: int = PRUNE_BATCH
    ) -> list[str]:
        """Delete finished runs beyond the per-routine cap or older than the age limit.

        Works in small write transactions (``batch`` rows each) found through indexes, so
        pruning a million-row history never holds the write lock long enough to delay a tick.
        Age is judged by the run id (a ULID carries the instant the run was queued).
        Returns the deleted runs' log paths so the caller can remove the files.
        """
        logs: list[str] = []
        floor = ulid_floor(older_than_ms)
        while True:
            rows = self.db.execute(
                "SELECT run_id, log_path FROM runs WHERE run_id < ? AND status NOT IN"
                " ('pending', 'running') LIMIT ?",
                (floor, batch),
            ).fetchall()
            if not rows:
                break
            logs += self._delete_runs(rows)
        over = self.db.execute(
            "SELECT routine_id FROM runs GROUP BY routine_id HAVING COUNT(*) > ?",
            (max_per_routine,),
        ).fetchall()
        for (routine_id,) in over:
            cutoff = self.db.execute(
                "SELECT run_id FROM runs WHERE routine_id = ? ORDER BY run_id DESC"
                " LIMIT 1 OFFSET ?",
                (routine_id, max_per_routine - 1),
            ).fetchone()
            if cutoff is None:
                continue
            while True:
                rows = self.db.execute(
                    "SELECT run_id, log_path FROM runs WHERE routine_id = ? AND run_id < ?"
                    " AND status NOT IN ('pending', 'running') LIMIT ?",
                    (routine_id, cutoff[0], batch),
                ).fetchall()
                if not rows:
                    break
                logs += self._delete_runs(rows)
        return logs

    def _delete_runs(self, rows: Sequence[sqlite3.Row]) -> list[str]:
        with self.write() as db:
            db.executemany(
                "DELETE FROM runs WHERE run_id = ? AND status NOT IN ('pending', 'running')",
                [(r[0],) for r in rows],
            )
        return [r[1] for r in rows if r[1]]

    def active_heads(self) -> dict[str, str]:
        """Per routine, the oldest chain among its active runs: for one-at-a-time routines
        only that chain may run next (a retry wait keeps its place ahead of queued runs)."""
        rows = self.db.execute(
            "SELECT routine_id, MIN(chain_id) FROM runs WHERE status IN ('pending', 'running')"
            " AND decided = 1 GROUP BY routine_id"
        )
        return {r[0]: r[1] for r in rows}

    def last_start_ms(self, routine_id: str) -> int | None:
        """When the routine's last run started — or will start, for decided pending runs
        (cooldown must not let two queued runs start back to back)."""
        row = self.db.execute(
            "SELECT MAX(CASE WHEN status IN ('pending', 'running') THEN"
            " COALESCE(started_at_ms, queued_at_ms) ELSE started_at_ms END) FROM runs"
            " WHERE routine_id = ? AND decided = 1 AND status != 'skipped'",
            (routine_id,),
        ).fetchone()
        return None if row[0] is None else int(row[0])

    def cancel_active_runs(self, routine_id: str, now_ms: int) -> int:
        """Cancel every active run of a routine (``replace``): unstarted ones at once, running
        ones by flagging them for the executor. Returns how many were affected."""
        with self.write() as db:
            n = db.execute(
                "UPDATE runs SET status = 'cancelled', error_kind = 'cancelled',"
                " error_message = 'replaced by a newer trigger', finished_at_ms = ?,"
                " cancel_requested = 1 WHERE routine_id = ? AND status = 'pending'"
                " AND decided = 1 AND lease_owner IS NULL",
                (now_ms, routine_id),
            ).rowcount
            n += db.execute(
                "UPDATE runs SET cancel_requested = 1 WHERE routine_id = ? AND decided = 1"
                " AND (status = 'running' OR (status = 'pending' AND lease_owner IS NOT NULL))",
                (routine_id,),
            ).rowcount
        return n

    # --- approvals -----------------------------------------------------------------------

    def is_approved(self, routine_id: str, definition_hash: str) -> bool:
        row = self.db.execute(
            "SELECT granted_at_ms FROM approvals WHERE routine_id = ? AND definition_hash = ?",
            (routine_id, definition_hash),
        ).fetchone()
        return row is not None and row[0] is not None

    def approved_set(self) -> set[tuple[str, str]]:
        rows = self.db.execute(
            "SELECT routine_id, definition_hash FROM approvals WHERE granted_at_ms IS NOT NULL"
        )
        return {(r[0], r[1]) for r in rows}

    def request_approvals(self, requests: Sequence[tuple[str, str, str]], now_ms: int) -> None:
        """Record pending approvals ``(routine_id, definition_hash, mode)``: one per hash."""
        if not requests:
            return
        with self.write() as db:
            db.executemany(
                "INSERT OR IGNORE INTO approvals (routine_id, definition_hash, mode,"
                " requested_at_ms) VALUES (?, ?, ?, ?)",
                [(rid, h, mode, now_ms) for rid, h, mode in requests],
            )

    def grant_approval(self, routine_id: str, definition_hash: str, mode: str, now_ms: int) -> None:
        with self.write() as db:
            db.execute(
                "INSERT INTO approvals (routine_id, definition_hash, mode, requested_at_ms,"
                " granted_at_ms) VALUES (?, ?, ?, ?, ?) ON CONFLICT(routine_id, definition_hash)"
                " DO UPDATE SET granted_at_ms = excluded.granted_at_ms",
                (routine_id, definition_hash, mode, now_ms, now_ms),
            )
            db.execute(
                "INSERT INTO daemon_state VALUES (?, ?, ?) ON CONFLICT(key)"
                " DO UPDATE SET value = excluded.value, updated_ms = excluded.updated_ms",
                (STATE_APPROVALS_CHANGED, str(now_ms), now_ms),
            )

    def pending_approvals(self) -> list[tuple[str, str, str, int]]:
        """``(routine_id, mode, definition_hash, requested_at_ms)`` not yet granted."""
        rows = self.db.execute(
            "SELECT routine_id, mode, definition_hash, requested_at_ms FROM approvals"
            " WHERE granted_at_ms IS NULL ORDER BY requested_at_ms, routine_id"
        )
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    def drop_stale_approval_requests(self, current: dict[str, str]) -> None:
        """Forget ungranted requests for hashes that are no longer the definition's."""
        with self.write() as db:
            rows = db.execute(
                "SELECT routine_id, definition_hash FROM approvals WHERE granted_at_ms IS NULL"
            ).fetchall()
            stale = [(r[0], r[1]) for r in rows if current.get(r[0]) != r[1]]
            db.executemany(
                "DELETE FROM approvals WHERE routine_id = ? AND definition_hash = ?", stale
            )

    # --- events and outbox ---------------------------------------------------------------

    def emit_event(self, name: str, payload: str | None, now_ms: int) -> int:
        with self.write() as db:
            cur = db.execute(
                "INSERT INTO events (name, payload, created_ms) VALUES (?, ?, ?)",
                (name, payload, now_ms),
            )
            return int(cur.lastrowid or 0)

    def unconsumed_events(self, limit: int) -> list[tuple[int, str, str | None, int]]:
        rows = self.db.execute(
            "SELECT event_id, name, payload, created_ms FROM events WHERE consumed_ms IS NULL"
            " ORDER BY event_id LIMIT ?",
            (limit,),
        )
        return [(r[0], r[1], r[2], r[3]) for r in rows]

    def insert_runs_consuming_events(
        self, runs: Sequence[Run], event_ids: Sequence[int], now_ms: int
    ) -> None:
        """Trigger records for events and the events' consumption, atomically."""
        with self.write() as db:
            db.executemany(_RUN_INSERT, [tuple(getattr(r, c) for c in RUN_COLUMNS) for r in runs])
            db.executemany(
                "UPDATE events SET consumed_ms = ? WHERE event_id = ?",
                [(now_ms, e) for e in event_ids],
            )

    def prune_events(self, older_than_ms: int) -> None:
        with self.write() as db:
            db.execute(
                "DELETE FROM events WHERE consumed_ms IS NOT NULL AND consumed_ms < ?",
                (older_than_ms,),
            )

    def add_outbox(
        self, channel: str, routine_id: str, run_id: str, payload: str, now_ms: int
    ) -> None:
        with self.write() as db:
            db.execute(
                "INSERT INTO outbox (channel, routine_id, run_id, payload, created_ms)"
                " VALUES (?, ?, ?, ?, ?)",
                (channel, routine_id, run_id, payload, now_ms),
            )

    def outbox_pending(
        self, channel: str | None = None, limit: int = 100
    ) -> list[tuple[int, str, str]]:
        sql = "SELECT outbox_id, channel, payload FROM outbox WHERE acked_ms IS NULL"
        args: list[Any] = []
        if channel is not None:
            sql += " AND channel = ?"
            args.append(channel)
        rows = self.db.execute(sql + " ORDER BY outbox_id LIMIT ?", [*args, limit])
        return [(r[0], r[1], r[2]) for r in rows]

    # --- process heartbeats --------------------------------------------------------------

    def process_heartbeat(
        self, name: str, pid: int, instance: str, state: str, restarts: int, now_ms: int
    ) -> None:
        with self.write() as db:
            db.execute(
                "INSERT INTO process_heartbeats VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(name)"
                " DO UPDATE SET pid = excluded.pid, instance = excluded.instance,"
                " state = excluded.state, restarts = excluded.restarts,"
                " heartbeat_ms = excluded.heartbeat_ms",
                (name, pid, instance, state, restarts, now_ms),
            )

    def process_heartbeats(self) -> dict[str, ProcessHeartbeat]:
        rows = self.db.execute("SELECT * FROM process_heartbeats")
        return {
            r["name"]: ProcessHeartbeat(
                r["name"], r["pid"], r["instance"], r["state"], r["restarts"], r["heartbeat_ms"]
            )
            for r in rows
        }


def open_journal(path: Path) -> Journal:
    """The one journal connection factory."""
    return Journal(path)
