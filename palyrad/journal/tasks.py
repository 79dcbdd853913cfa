"""The background queue (``tasks``, SPEC §6 "Background queue", §4.6).

A task is claimed with a lease: ``claim`` makes it ``running`` under a new fencing token
(``lease_token``) until ``lease_until_ms``. Only that token may heartbeat (which extends the
lease), finish or fail it, so a worker whose lease was taken over — it stalled past its
lease, or was presumed dead — can change nothing. A claim also takes over running tasks
whose lease has expired (their worker died: ``kill -9`` of the executor), as a new attempt.

Order: higher ``priority`` first, FIFO (``seq``) within a priority, and never before
``not_before_ms``. A failed attempt goes back to ``pending`` after
``min(2 s · 2^(k−1), 10 min)`` (k = the attempt that failed) while attempts remain, else the
task stays ``failed`` with its error. ``unique_key`` keeps at most one pending or running task
per key (the schema's partial UNIQUE index): maintenance never queues twice.

Every state change bumps ``STATE_TASKS_CHANGED`` in the same transaction, so a process that
watches the queue notices with one primary-key read.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

from palyrad.journal.connection import Domain
from palyrad.journal.records import Task
from palyrad.journal.state import STATE_TASKS_CHANGED, bump_counter, read_counter

TASK_STATUSES = ("pending", "running", "succeeded", "failed", "cancelled")
BACKOFF_START_MS = 2_000
BACKOFF_MAX_MS = 10 * 60_000
MAX_ERROR_CHARS = 4_000

_COLUMNS = (
    "task_id, kind, payload, priority, status, attempt, max_attempts, not_before_ms,"
    " created_ms, started_ms, finished_ms, heartbeat_ms, lease_owner, lease_token,"
    " lease_until_ms, error, unique_key"
)
_SELECT = f"SELECT {_COLUMNS} FROM tasks"

# The next claimable task: a ready pending one (priority, then FIFO), or a running one whose
# lease expired. Two indexed probes, the better of them taken.
_READY = (
    "SELECT seq FROM tasks WHERE status = 'pending' AND not_before_ms <= ?"
    " ORDER BY priority DESC, seq LIMIT ?"
)
_EXPIRED = (
    "SELECT seq FROM tasks WHERE status = 'running' AND lease_until_ms < ?"
    " ORDER BY lease_until_ms LIMIT ?"
)
_CLAIM = (
    "UPDATE tasks SET status = 'running', attempt = attempt + 1, lease_owner = ?,"
    " lease_token = ?, lease_until_ms = ?, heartbeat_ms = ?, started_ms = ?, finished_ms = NULL"
    f" WHERE seq = ? RETURNING {_COLUMNS}"
)
# A running task whose lease expired on its last attempt is not run again: it failed.
_EXPIRE_LAST = (
    "UPDATE tasks SET status = 'failed', finished_ms = ?, lease_owner = NULL,"
    " lease_token = NULL, lease_until_ms = NULL,"
    " error = 'its worker was lost (the lease expired) on the last attempt'"
    " WHERE status = 'running' AND lease_until_ms < ? AND attempt >= max_attempts"
)


def task_backoff_ms(attempt: int) -> int:
    """The wait after failed attempt ``attempt`` (1-based): min(2 s · 2^(k−1), 10 min)."""
    return min(BACKOFF_START_MS << max(0, min(attempt - 1, 20)), BACKOFF_MAX_MS)


def _task(r: Sequence[object]) -> Task:
    return Task(*r)  # type: ignore[arg-type]  # the row is _COLUMNS, Task's field order


class Tasks(Domain):
    """Enqueue, claim, heartbeat, finish, fail, release, expire, retry, cancel, list, prune."""

    __slots__ = ()

    # --- producers ---------------------------------------------------------------------------

    def enqueue(
        self,
        task_id: str,
        kind: str,
        payload: str,
        now_ms: int,
        *,
        priority: int = 0,
        not_before_ms: int | None = None,
        max_attempts: int = 3,
        unique_key: str | None = None,
    ) -> tuple[Task, bool]:
        """Add a pending task; returns it and True. With ``unique_key``, when a pending or
        running task of that key exists, nothing is added: that task and False."""
        with self._write() as db:
            try:
                row = db.execute(
                    f"INSERT INTO tasks ({_COLUMNS}) VALUES (?, ?, ?, ?, 'pending', 0, ?, ?, ?,"
                    f" NULL, NULL, NULL, NULL, NULL, NULL, NULL, ?) RETURNING {_COLUMNS}",
                    (
                        task_id,
                        kind,
                        payload,
                        priority,
                        max_attempts,
                        now_ms if not_before_ms is None else not_before_ms,
                        now_ms,
                        unique_key,
                    ),
                ).fetchone()
            except sqlite3.IntegrityError:
                if unique_key is None:
                    raise
                existing = db.execute(
                    _SELECT + " WHERE unique_key = ? AND status IN ('pending', 'running')",
                    (unique_key,),
                ).fetchone()
                if existing is None:
                    raise
                return _task(existing), False
            bump_counter(db, STATE_TASKS_CHANGED, now_ms)
            return _task(row), True

    # --- workers -----------------------------------------------------------------------------

    def claim(
        self,
        owner: str,
        tokens: Sequence[str],
        now_ms: int,
        lease_ms: int,
        *,
        kinds: Sequence[str] | None = None,
    ) -> list[Task]:
        """Claim up to ``len(tokens)`` tasks, one fencing token each, in one transaction:
        ready pending tasks by priority then FIFO, and running tasks whose lease expired
        (taken over as a new attempt; on their last attempt they fail instead).
        ``kinds``: only these kinds (None: any)."""
        limit = len(tokens)
        if limit == 0:
            return []
        where_kind = ""
        args: tuple[object, ...] = ()
        if kinds is not None:
            where_kind = f" AND kind IN ({', '.join('?' * len(kinds))})"
            args = tuple(kinds)
        claimed: list[Task] = []
        with self._write() as db:
            lost = db.execute(_EXPIRE_LAST, (now_ms, now_ms)).rowcount
            expired = db.execute(
                _EXPIRED.replace(" ORDER BY", where_kind + " ORDER BY"), (now_ms, *args, limit)
            ).fetchall()
            ready = db.execute(
                _READY.replace(" ORDER BY", where_kind + " ORDER BY"), (now_ms, *args, limit)
            ).fetchall()
            for (seq,), token in zip([*expired, *ready], tokens, strict=False):
                row = db.execute(
                    _CLAIM, (owner, token, now_ms + lease_ms, now_ms, now_ms, seq)
                ).fetchone()
                claimed.append(_task(row))
            if claimed or lost:
                bump_counter(db, STATE_TASKS_CHANGED, now_ms)
        return claimed

    def heartbeat(self, task_id: str, token: str, now_ms: int, lease_ms: int) -> bool:
        """Extend the lease of the running task ``token`` holds; False when it lost it."""
        with self._write() as db:
            cur = db.execute(
                "UPDATE tasks SET heartbeat_ms = ?, lease_until_ms = ? WHERE task_id = ?"
                " AND lease_token = ? AND status = 'running'",
                (now_ms, now_ms + lease_ms, task_id, token),
            )
            return cur.rowcount == 1

    def succeed(self, task_id: str, token: str, now_ms: int, report: str | None = None) -> bool:
        """Finish the task ``token`` holds as succeeded, keeping the handler's ``report``
        (if any) as its ``error``; False when the lease was lost."""
        with self._write() as db:
            cur = db.execute(
                "UPDATE tasks SET status = 'succeeded', finished_ms = ?, heartbeat_ms = ?,"
                " lease_token = NULL, lease_until_ms = NULL, error = ?"
                " WHERE task_id = ? AND lease_token = ? AND status = 'running'",
                (
                    now_ms,
                    now_ms,
                    None if report is None else report[:MAX_ERROR_CHARS],
                    task_id,
                    token,
                ),
            )
            if cur.rowcount:
                bump_counter(db, STATE_TASKS_CHANGED, now_ms)
            return cur.rowcount == 1

    def fail(self, task_id: str, token: str, now_ms: int, error: str) -> Task | None:
        """The attempt ``token`` holds failed: back to ``pending`` after the backoff while
        attempts remain, else ``failed`` for good. The task as it is now, or None when the
        lease was lost (nothing changed)."""
        with self._write() as db:
            row = db.execute(
                "UPDATE tasks SET"
                " status = CASE WHEN attempt < max_attempts THEN 'pending' ELSE 'failed' END,"
                " not_before_ms = CASE WHEN attempt < max_attempts THEN ? + ? ELSE not_before_ms"
                " END,"
                " finished_ms = CASE WHEN attempt < max_attempts THEN NULL ELSE ? END,"
                " heartbeat_ms = ?, lease_owner = NULL, lease_token = NULL,"
                " lease_until_ms = NULL, error = ?"
                " WHERE task_id = ? AND lease_token = ? AND status = 'running'"
                f" RETURNING {_COLUMNS}",
                (
                    now_ms,
                    self._backoff_for(db, task_id),
                    now_ms,
                    now_ms,
                    error[:MAX_ERROR_CHARS],
                    task_id,
                    token,
                ),
            ).fetchone()
            if row is None:
                return None
            bump_counter(db, STATE_TASKS_CHANGED, now_ms)
            return _task(row)

    def release(self, task_id: str, token: str, now_ms: int) -> bool:
        """Give a claimed task back unrun (a graceful stop): ``pending`` again, its attempt
        not counted. False when the lease was lost."""
        with self._write() as db:
            cur = db.execute(
                "UPDATE tasks SET status = 'pending', attempt = MAX(0, attempt - 1),"
                " lease_owner = NULL, lease_token = NULL, lease_until_ms = NULL,"
                " started_ms = NULL WHERE task_id = ? AND lease_token = ? AND status = 'running'",
                (task_id, token),
            )
            if cur.rowcount:
                bump_counter(db, STATE_TASKS_CHANGED, now_ms)
            return cur.rowcount == 1

    def expire_lease(
        self,
        task_id: str,
        now_ms: int,
        *,
        token: str | None = None,
        stale_before_ms: int | None = None,
    ) -> bool:
        """End a running task's lease now (self-healing's ``requeue_task``; a restarted
        executor's recovery): the next claim takes it over under a new token, so its old
        worker, should it wake, can change nothing. Its token is revoked here, not at that
        claim: a worker that woke in between would otherwise heartbeat the lease back and
        undo the requeue. False when it is not running.

        ``token``: only while that token still holds it (a decision made on a read must not
        revoke the lease of a worker that took the task over since). ``stale_before_ms``:
        only while its last heartbeat is older (its worker did not wake meanwhile)."""
        where = ""
        args: list[object] = [now_ms, task_id]
        if token is not None:
            where += " AND lease_token = ?"
            args.append(token)
        if stale_before_ms is not None:
            where += " AND heartbeat_ms < ?"
            args.append(stale_before_ms)
        with self._write() as db:
            cur = db.execute(
                "UPDATE tasks SET lease_until_ms = ? - 1, lease_token = NULL"
                " WHERE task_id = ? AND status = 'running'" + where,
                args,
            )
            if cur.rowcount:
                bump_counter(db, STATE_TASKS_CHANGED, now_ms)
            return cur.rowcount == 1

    # --- operators ---------------------------------------------------------------------------

    def retry(self, task_id: str, now_ms: int) -> Task | None:
        """A ``failed`` task back to ``pending`` now, its attempts counted again from zero
        (its last error kept until it runs). None when it is unknown or not failed, or when
        another task of its ``unique_key`` is pending or running (``active_for_key`` tells
        which): two would break the one-active-per-key rule (the schema refuses it)."""
        with self._write() as db:
            row = db.execute(
                "UPDATE tasks SET status = 'pending', attempt = 0, not_before_ms = ?,"
                " finished_ms = NULL WHERE task_id = ? AND status = 'failed'"
                " AND (unique_key IS NULL OR NOT EXISTS (SELECT 1 FROM tasks AS a"
                " WHERE a.unique_key = tasks.unique_key AND a.status IN ('pending', 'running')))"
                f" RETURNING {_COLUMNS}",
                (now_ms, task_id),
            ).fetchone()
            if row is None:
                return None
            bump_counter(db, STATE_TASKS_CHANGED, now_ms)
            return _task(row)

    def cancel(self, task_id: str, now_ms: int) -> Task | None:
        """Cancel a ``pending`` task. None when it is unknown or not pending."""
        with self._write() as db:
            row = db.execute(
                "UPDATE tasks SET status = 'cancelled', finished_ms = ?"
                f" WHERE task_id = ? AND status = 'pending' RETURNING {_COLUMNS}",
                (now_ms, task_id),
            ).fetchone()
            if row is None:
                return None
            bump_counter(db, STATE_TASKS_CHANGED, now_ms)
            return _task(row)

    def prune(
        self,
        older_than_ms: int,
        statuses: Sequence[str] = ("succeeded", "failed", "cancelled"),
    ) -> int:
        """Delete finished tasks of ``statuses`` (never pending or running ones) that
        finished before ``older_than_ms``; how many went."""
        kept = [s for s in statuses if s in ("succeeded", "failed", "cancelled")]
        if not kept:
            return 0
        with self._write() as db:
            cur = db.execute(
                f"DELETE FROM tasks WHERE status IN ({', '.join('?' * len(kept))})"
                " AND finished_ms < ?",
                (*kept, older_than_ms),
            )
            return cur.rowcount

    # --- reads -------------------------------------------------------------------------------

    def get(self, task_id: str) -> Task | None:
        row = self._db.execute(_SELECT + " WHERE task_id = ?", (task_id,)).fetchone()
        return None if row is None else _task(row)

    def active_for_key(self, unique_key: str) -> Task | None:
        """The pending or running task of ``unique_key``, if any."""
        row = self._db.execute(
            _SELECT + " WHERE unique_key = ? AND status IN ('pending', 'running')", (unique_key,)
        ).fetchone()
        return None if row is None else _task(row)

    def newest(
        self, *, status: str | None = None, kind: str | None = None, limit: int = 50
    ) -> list[Task]:
        """Newest first, optionally of one status and/or kind."""
        where, args = [], []
        if status is not None:
            where.append("status = ?")
            args.append(status)
        if kind is not None:
            where.append("kind = ?")
            args.append(kind)
        sql = _SELECT + (" WHERE " + " AND ".join(where) if where else "")
        rows = self._db.execute(sql + " ORDER BY seq DESC LIMIT ?", (*args, limit))
        return [_task(r) for r in rows]

    def stale_running(self, older_than_ms: int) -> list[Task]:
        """Running tasks whose last heartbeat is older than ``older_than_ms``."""
        rows = self._db.execute(
            _SELECT + " WHERE status = 'running' AND heartbeat_ms < ?", (older_than_ms,)
        )
        return [_task(r) for r in rows]

    def next_wake_ms(self) -> int | None:
        """When the earliest pending task becomes ready or a lease expires (None: no
        pending or running task): a worker's longest useful sleep."""
        row = self._db.execute(
            "SELECT MIN(t) FROM (SELECT MIN(not_before_ms) AS t FROM tasks"
            " WHERE status = 'pending' UNION ALL SELECT MIN(lease_until_ms) + 1 FROM tasks"
            " WHERE status = 'running')"
        ).fetchone()
        return None if row[0] is None else int(row[0])

    def version(self) -> int:
        """The queue's change counter (``STATE_TASKS_CHANGED``)."""
        return read_counter(self._db, STATE_TASKS_CHANGED)

    @staticmethod
    def _backoff_for(db: sqlite3.Connection, task_id: str) -> int:
        row = db.execute("SELECT attempt FROM tasks WHERE task_id = ?", (task_id,)).fetchone()
        return task_backoff_ms(int(row[0]) if row is not None else 1)
