"""The delivery outbox (``outbox``): channel results kept until a paired node acknowledges
them."""

from __future__ import annotations

from typing import Any

from palyrad.journal.connection import Domain
from palyrad.journal.records import OutboxItem


class Outbox(Domain):
    """Queue a channel delivery; list the unacknowledged ones."""

    __slots__ = ()

    def add(self, channel: str, routine_id: str, run_id: str, payload: str, now_ms: int) -> None:
        """Queue one delivery (``payload`` is JSON text) for ``channel``."""
        with self._write() as db:
            db.execute(
                "INSERT INTO outbox (channel, routine_id, run_id, payload, created_ms)"
                " VALUES (?, ?, ?, ?, ?)",
                (channel, routine_id, run_id, payload, now_ms),
            )

    def pending(self, channel: str | None = None, limit: int = 100) -> list[OutboxItem]:
        """Unacknowledged deliveries (of one channel, if given), oldest first."""
        sql = "SELECT outbox_id, channel, payload FROM outbox WHERE acked_ms IS NULL"
        args: list[Any] = []
        if channel is not None:
            sql += " AND channel = ?"
            args.append(channel)
        rows = self._db.execute(sql + " ORDER BY outbox_id LIMIT ?", [*args, limit])
        return [OutboxItem(r[0], r[1], r[2]) for r in rows]
