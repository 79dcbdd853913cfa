"""Events (``events``): system, operator and hook events waiting for the scheduler, which
turns them into trigger records and marks them consumed.

Consuming is atomic with the records it creates, a write spanning two domains::

    with journal.transaction():
        journal.runs.insert_many(runs)
        journal.events.consume(event_ids, now)
"""

from __future__ import annotations

from collections.abc import Sequence

from palyrad.journal.connection import Domain
from palyrad.journal.records import Event


class Events(Domain):
    """Emit, read unconsumed, consume, prune."""

    __slots__ = ()

    def emit(self, name: str, payload: str | None, now_ms: int) -> int:
        """Journal an event (``payload`` is JSON text); returns its id."""
        with self._write() as db:
            cur = db.execute(
                "INSERT INTO events (name, payload, created_ms) VALUES (?, ?, ?)",
                (name, payload, now_ms),
            )
            return int(cur.lastrowid or 0)

    def unconsumed(self, limit: int) -> list[Event]:
        """The oldest events not yet consumed, in emission order."""
        rows = self._db.execute(
            "SELECT event_id, name, payload, created_ms FROM events WHERE consumed_ms IS NULL"
            " ORDER BY event_id LIMIT ?",
            (limit,),
        )
        return [Event(r[0], r[1], r[2], r[3]) for r in rows]

    def max_id(self) -> int:
        """The newest event's id (0 when there is none): where a live stream starts."""
        row = self._db.execute("SELECT COALESCE(MAX(event_id), 0) FROM events").fetchone()
        return int(row[0])

    def since(self, after_id: int, limit: int) -> list[Event]:
        """Events emitted after ``after_id``, consumed or not, in emission order (a node's
        ``watch --events``)."""
        rows = self._db.execute(
            "SELECT event_id, name, payload, created_ms FROM events WHERE event_id > ?"
            " ORDER BY event_id LIMIT ?",
            (after_id, limit),
        )
        return [Event(r[0], r[1], r[2], r[3]) for r in rows]

    def consume(self, event_ids: Sequence[int], now_ms: int) -> None:
        """Mark events consumed (in the transaction that records what they triggered)."""
        with self._write() as db:
            db.executemany(
                "UPDATE events SET consumed_ms = ? WHERE event_id = ?",
                [(now_ms, e) for e in event_ids],
            )

    def prune(self, older_than_ms: int) -> None:
        """Delete events consumed before ``older_than_ms``."""
        with self._write() as db:
            db.execute(
                "DELETE FROM events WHERE consumed_ms IS NOT NULL AND consumed_ms < ?",
                (older_than_ms,),
            )
