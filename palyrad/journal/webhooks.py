"""Webhook ingress state (``webhook_replays``, and webhook runs read for the rate limit).

The listener in node_rpc accepts a request in one transaction: is its MAC a replay, then the
run record and the MAC remembered together. So a crash between the two writes cannot leave a
run whose MAC can be sent again, nor a remembered MAC without its run (SPEC §3, §4.5).
"""

from __future__ import annotations

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

    def remember(self, routine_id: str, mac: bytes, expires_ms: int) -> None:
        """Record an accepted MAC until ``expires_ms`` (inside the accepting transaction)."""
        with self._write() as db:
            db.execute(
                "INSERT INTO webhook_replays (routine_id, mac, expires_ms) VALUES (?, ?, ?)"
                " ON CONFLICT(routine_id, mac) DO UPDATE SET"
                " expires_ms = MAX(expires_ms, excluded.expires_ms)",
                (routine_id, mac, expires_ms),
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
