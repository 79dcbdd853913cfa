"""Webhook ingress state (``webhook_replays``, and webhook runs read for the rate limit).

The listener in node_rpc accepts a request in one transaction: is its MAC a replay, then the
run record and the MAC remembered together. So a crash between the two writes cannot leave a
run whose MAC can be sent again, nor a remembered MAC without its run (SPEC §3, §4.5).
"""

from __future__ import annotations

from collections.abc import Sequence

from palyrad.journal.connection import Domain
from routines.kinds import TriggerKind


class Webhooks(Domain):
    """The replay cache, keyed by routine and the MAC's bytes (not the header's spelling)."""

    __slots__ = ()

    def seen(self, routine_id: str, mac: bytes, now_ms: int) -> bool:
        """Whether ``mac`` was accepted for this routine and its window has not ended."""
        row = self._db.execute(
            "SELECT 1 FROM webhook_replays WHERE routine_id = ? AND mac = ? AND expires_ms > ?",
            (routine_id, mac, now_ms),
        ).fetchone()
        return row is not None

    def seen_many(self, keys: Sequence[tuple[str, bytes]], now_ms: int) -> set[tuple[str, bytes]]:
        """Which ``(routine_id, mac)`` pairs were accepted and are still in their window: a
        batch's replay check in one statement."""
        found: set[tuple[str, bytes]] = set()
        for start in range(0, len(keys), 400):  # SQLite's variable limit, with room
            chunk = keys[start : start + 400]
            rows = self._db.execute(
                "SELECT routine_id, mac FROM webhook_replays WHERE expires_ms > ? AND"
                " (routine_id, mac) IN (VALUES " + ", ".join("(?, ?)" for _ in chunk) + ")",
                (now_ms, *(v for key in chunk for v in key)),
            )
            found.update((str(r[0]), bytes(r[1])) for r in rows)
        return found

    def remember(self, routine_id: str, mac: bytes, expires_ms: int) -> None:
        """Record an accepted MAC until ``expires_ms`` (inside the accepting transaction)."""
        self.remember_many([(routine_id, mac, expires_ms)])

    def remember_many(self, entries: Sequence[tuple[str, bytes, int]]) -> None:
        """``remember`` for a batch: ``(routine_id, mac, expires_ms)`` each."""
        if not entries:
            return
        with self._write() as db:
            db.executemany(
                "INSERT INTO webhook_replays (routine_id, mac, expires_ms) VALUES (?, ?, ?)"
                " ON CONFLICT(routine_id, mac) DO UPDATE SET"
                " expires_ms = MAX(expires_ms, excluded.expires_ms)",
                entries,
            )

    def prune(self, now_ms: int) -> int:
        """Forget MACs whose window has ended (their timestamp is refused as stale anyway)."""
        with self._write() as db:
            cur = db.execute("DELETE FROM webhook_replays WHERE expires_ms <= ?", (now_ms,))
            return cur.rowcount

    def accepted_since(self, routine_id: str, since_run_id: str) -> list[int]:
        """When each webhook run of the routine with an id ≥ ``since_run_id`` (a ULID made for
        the start of the window) was queued: the rate limit's memory across a restart."""
        rows = self._db.execute(
            "SELECT queued_at_ms FROM runs WHERE routine_id = ? AND run_id >= ?"
            " AND trigger_kind = ? ORDER BY run_id",
            (routine_id, since_run_id, TriggerKind.WEBHOOK.value),
        )
        return [int(r[0]) for r in rows]
