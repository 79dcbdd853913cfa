"""The delivery outbox (``outbox``, ``delivery_acks``): channel results kept for the paired
nodes that watch the channel (SPEC §7 "Channel delivery").

A device receives every entry created after it was paired (``outbox_id`` above its
``delivery_floor``) on the channels it watches, in ``outbox_id`` order, until it
acknowledges it; the acknowledgements are per device (``delivery_acks``). Entries older than
``[delivery] retention_days`` are pruned with their acknowledgements.
``outbox.acked_ms`` records the first acknowledgement by any device, so ``pending()`` lists
what no device has acknowledged yet.

Ids come from ``AUTOINCREMENT`` and writes are serialized, so entries become visible in id
order: a reader that saw id *n* never later finds a new entry below *n*. A watch stream
can therefore poll ``for_device(after_id=<last id it sent>)``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from palyrad.journal.connection import Domain
from palyrad.journal.records import Delivery, OutboxItem

# Up to this many channels, for_device reads each channel's index range on its own (at
# most ``limit`` rows each) and merges them in one statement; beyond it, one IN filter.
_MERGE_CHANNELS = 64

_DELIVERY_COLUMNS = "o.outbox_id, o.channel, o.routine_id, o.run_id, o.payload, o.created_ms"
_NOT_ACKED = (
    "NOT EXISTS (SELECT 1 FROM delivery_acks AS a"
    " WHERE a.device_id = ? AND a.outbox_id = o.outbox_id)"
)
# One channel: the outbox_by_channel range (channel = ? AND outbox_id > ?), in id order.
_ONE_CHANNEL = (
    f"SELECT {_DELIVERY_COLUMNS} FROM outbox AS o WHERE o.channel = ? AND o.outbox_id > ?"
    f" AND {_NOT_ACKED} ORDER BY o.outbox_id LIMIT ?"
)
# Every channel: the rowid range (outbox_id > ?), in id order.
_ALL_CHANNELS = (
    f"SELECT {_DELIVERY_COLUMNS} FROM outbox AS o WHERE o.outbox_id > ?"
    f" AND {_NOT_ACKED} ORDER BY o.outbox_id LIMIT ?"
)


def _merged(channels: int) -> str:
    """``_ONE_CHANNEL`` for each of ``channels`` channels, merged in id order."""
    arm = f"SELECT * FROM ({_ONE_CHANNEL})"
    return " UNION ALL ".join([arm] * channels) + " ORDER BY 1 LIMIT ?"


class Outbox(Domain):
    """Queue a channel delivery; read a device's deliveries; acknowledge; prune."""

    __slots__ = ()

    def add(self, channel: str, routine_id: str, run_id: str, payload: str, now_ms: int) -> int:
        """Queue one delivery (``payload`` is JSON text) for ``channel``; returns its id."""
        with self._write() as db:
            cur = db.execute(
                "INSERT INTO outbox (channel, routine_id, run_id, payload, created_ms)"
                " VALUES (?, ?, ?, ?, ?)",
                (channel, routine_id, run_id, payload, now_ms),
            )
            return int(cur.lastrowid or 0)

    def add_once(
        self, channel: str, routine_id: str, run_id: str, payload: str, now_ms: int
    ) -> tuple[int, bool]:
        """``add``, unless ``run_id`` already has an entry for ``channel`` (a delivery task
        run again: after a crash before its success was recorded, a lease taken over): that
        entry's id and False, so a device never receives a run's result twice."""
        with self._write() as db:
            row = db.execute(
                "SELECT outbox_id FROM outbox WHERE run_id = ? AND channel = ?"
                " ORDER BY outbox_id LIMIT 1",
                (run_id, channel),
            ).fetchone()
            if row is not None:
                return int(row[0]), False
            return self.add(channel, routine_id, run_id, payload, now_ms), True

    def pending(self, channel: str | None = None, limit: int = 100) -> list[OutboxItem]:
        """Deliveries no device has acknowledged yet (of one channel, if given), oldest
        first."""
        sql = "SELECT outbox_id, channel, payload FROM outbox WHERE acked_ms IS NULL"
        args: list[Any] = []
        if channel is not None:
            sql += " AND channel = ?"
            args.append(channel)
        rows = self._db.execute(sql + " ORDER BY outbox_id LIMIT ?", [*args, limit])
        return [OutboxItem(r[0], r[1], r[2]) for r in rows]

    def max_id(self) -> int:
        """The highest outbox id present (0 when empty): a new device's delivery floor."""
        row = self._db.execute("SELECT MAX(outbox_id) FROM outbox").fetchone()
        return int(row[0] or 0)

    def for_device(
        self,
        device_id: str,
        channels: Sequence[str] | None,
        after_id: int,
        floor: int,
        limit: int = 100,
    ) -> list[Delivery]:
        """The device's next deliveries, oldest first: entries above ``max(after_id,
        floor)`` on ``channels`` (None: every channel; the names are taken literally, so a
        watch of every channel passes None, not ``["*"]``) that the device has not
        acknowledged. One statement, so one consistent snapshot; every branch walks an
        index in id order and stops after ``limit`` unacknowledged rows per channel."""
        start = max(after_id, floor)
        if channels is None:
            rows = self._db.execute(_ALL_CHANNELS, (start, device_id, limit))
            return [Delivery(*r) for r in rows]
        wanted = list(dict.fromkeys(channels))  # distinct, in the given order
        if not wanted:
            return []
        if len(wanted) == 1:
            rows = self._db.execute(_ONE_CHANNEL, (wanted[0], start, device_id, limit))
        elif len(wanted) <= _MERGE_CHANNELS:
            # Each channel's own index range, limited, then merged (MERGE (UNION ALL)):
            # an IN filter would read every matching row above ``start`` and sort them all.
            args: list[Any] = []
            for channel in wanted:
                args += [channel, start, device_id, limit]
            rows = self._db.execute(_merged(len(wanted)), [*args, limit])
        else:
            marks = ", ".join("?" * len(wanted))
            rows = self._db.execute(
                f"SELECT {_DELIVERY_COLUMNS} FROM outbox AS o WHERE o.outbox_id > ?"
                f" AND o.channel IN ({marks}) AND {_NOT_ACKED} ORDER BY o.outbox_id LIMIT ?",
                [start, *wanted, device_id, limit],
            )
        return [Delivery(*r) for r in rows]

    def ack(self, device_id: str, outbox_ids: Sequence[int], now_ms: int) -> int:
        """Record the device's acknowledgements of ``outbox_ids`` (ids not in the outbox,
        say pruned ones, are ignored, and so are repeats); returns how many were new."""
        if not outbox_ids:
            return 0
        with self._write() as db:
            new = 0
            for outbox_id in dict.fromkeys(outbox_ids):
                cur = db.execute(
                    "INSERT OR IGNORE INTO delivery_acks (device_id, outbox_id, acked_ms)"
                    " SELECT ?, outbox_id, ? FROM outbox WHERE outbox_id = ?",
                    (device_id, now_ms, outbox_id),
                )
                if cur.rowcount > 0:
                    new += 1
                    db.execute(
                        "UPDATE outbox SET acked_ms = ? WHERE outbox_id = ? AND acked_ms IS NULL",
                        (now_ms, outbox_id),
                    )
            return new

    def unacknowledged(self, device_id: str, outbox_ids: Sequence[int]) -> set[int]:
        """Which of ``outbox_ids`` the device still owes an acknowledgement for: entries
        still in the outbox (a pruned one is owed nothing) that it has not acknowledged.
        A watch stream asks this about what it sent, to journal its ack lag."""
        if not outbox_ids:
            return set()
        marks = ", ".join("?" * len(outbox_ids))
        rows = self._db.execute(
            f"SELECT o.outbox_id FROM outbox AS o WHERE o.outbox_id IN ({marks}) AND {_NOT_ACKED}",
            [*outbox_ids, device_id],
        )
        return {int(r[0]) for r in rows}

    def prune(self, older_than_ms: int) -> int:
        """Delete the entries created before ``older_than_ms`` and their acknowledgements;
        returns how many entries went."""
        with self._write() as db:
            db.execute(
                "DELETE FROM delivery_acks WHERE outbox_id IN"
                " (SELECT outbox_id FROM outbox WHERE created_ms < ?)",
                (older_than_ms,),
            )
            cur = db.execute("DELETE FROM outbox WHERE created_ms < ?", (older_than_ms,))
            return cur.rowcount
