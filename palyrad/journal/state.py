"""Daemon state: small key/value documents the daemon publishes for the CLI, doctor and its
own services (``daemon_state``)."""

from __future__ import annotations

import sqlite3

from palyrad.journal.connection import Domain

# daemon_state keys: what the daemon publishes for the CLI, doctor and its own services.
STATE_DEFINITIONS_APPLIED = "definitions_applied"  # {at_ms, file_hash, count}
STATE_DEFINITIONS_ERROR = "definitions_error"  # {at_ms, file_hash, errors}
STATE_APPROVALS_CHANGED = "approvals_changed"  # bumped by every grant
STATE_LISTENED_EVENTS = "listened_events"  # event names some routine listens to
STATE_DEVICES_CHANGED = "devices_changed"  # a counter: +1 by every device change
STATE_PAIRING_CHANGED = "pairing_changed"  # a counter: +1 by every pairing decision
STATE_INCIDENTS_CHANGED = "incidents_changed"  # a counter: +1 by every incident change
STATE_TASKS_CHANGED = "tasks_changed"  # a counter: +1 by every background-queue change
STATE_SKILLS_CHANGED = "skills_changed"  # a counter: +1 by every skill audit or quarantine
STATE_SKILLS_ERROR = "skills_error"  # {at_ms, file, file_hash, errors}: a skills file refused
STATE_MEMORY_CHANGED = "memory_changed"  # a counter: +1 by every deletion of memory items
STATE_MAINTENANCE = "maintenance"  # {kind: next_due_ms}: the maintenance ticks' schedule
STATE_WEBHOOKS = "webhooks"  # {routine_id: webhook trigger + definition hash}: node_rpc's view
STATE_LISTENER_PORTS = "listener_ports"  # {"pairing": port, "node": port}: ports chosen for 0
# ... and one the CLI keeps for itself (palyrad.ops.definitions_hash):
STATE_DEFINITIONS_HASH_MEMO = "definitions_hash_memo"  # {signature, file_hash}

_UPSERT = (
    "INSERT INTO daemon_state VALUES (?, ?, ?) ON CONFLICT(key) DO UPDATE "
    "SET value = excluded.value, updated_ms = excluded.updated_ms"
)

# A counter key: +1 per change, so a process that keeps a copy of a table notices a change
# with one primary-key read. ``updated_ms`` never moves back (a caller without a clock
# passes 0).
_BUMP = (
    "INSERT INTO daemon_state VALUES (?, '1', ?) ON CONFLICT(key) DO UPDATE"
    " SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT),"
    " updated_ms = MAX(updated_ms, excluded.updated_ms)"
)


def bump_counter(db: sqlite3.Connection, key: str, now_ms: int) -> None:
    """Add one to the counter ``key`` (inside the caller's write)."""
    db.execute(_BUMP, (key, now_ms))


def read_counter(db: sqlite3.Connection, key: str) -> int:
    """The counter ``key`` (0 when it was never bumped)."""
    row = db.execute("SELECT value FROM daemon_state WHERE key = ?", (key,)).fetchone()
    return 0 if row is None else int(row[0])


class DaemonState(Domain):
    """``daemon_state``: one text value per key (the ``STATE_*`` keys above)."""

    __slots__ = ()

    def get(self, key: str) -> str | None:
        """The key's value, or None when it was never set (or was deleted)."""
        row = self._db.execute("SELECT value FROM daemon_state WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def set(self, key: str, value: str, now_ms: int) -> None:
        """Set (or replace) the key's value."""
        with self._write() as db:
            db.execute(_UPSERT, (key, value, now_ms))

    def delete(self, key: str) -> None:
        """Forget the key."""
        with self._write() as db:
            db.execute("DELETE FROM daemon_state WHERE key = ?", (key,))
