"""Process heartbeats (``process_heartbeats``): each daemon service's last sign of life,
for status, doctor and self-healing."""

from __future__ import annotations

from palyrad.journal.connection import Domain
from palyrad.journal.records import ProcessHeartbeat


class Heartbeats(Domain):
    """One row per service name, replaced by every beat."""

    __slots__ = ()

    def beat(self, hb: ProcessHeartbeat) -> None:
        """Record a service's heartbeat (replacing its previous one)."""
        with self._write() as db:
            db.execute(
                "INSERT INTO process_heartbeats VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(name)"
                " DO UPDATE SET pid = excluded.pid, instance = excluded.instance,"
                " state = excluded.state, restarts = excluded.restarts,"
                " heartbeat_ms = excluded.heartbeat_ms",
                (hb.name, hb.pid, hb.instance, hb.state, hb.restarts, hb.heartbeat_ms),
            )

    def all(self) -> dict[str, ProcessHeartbeat]:
        """Every service's last heartbeat, by name."""
        rows = self._db.execute("SELECT * FROM process_heartbeats")
        return {
            r["name"]: ProcessHeartbeat(
                r["name"], r["pid"], r["instance"], r["state"], r["restarts"], r["heartbeat_ms"]
            )
            for r in rows
        }
