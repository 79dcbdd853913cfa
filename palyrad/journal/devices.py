"""Paired devices (``devices``) and their open ``watch`` streams (``device_watches``).

The node_rpc process keeps the registry in memory and checks every RPC's certificate
fingerprint against it; every change here bumps ``STATE_DEVICES_CHANGED`` in the same
transaction, so it notices a change (a ``palyra node revoke`` from the CLI, say) with one
read of ``version()``. ``touch`` (last seen) is not a change of the registry and does not
bump it.

A device is inserted when its certificate is issued (``Pairing.mark_issued``, one
transaction with the request's ``approved`` → ``issued``); ``add`` is the same insert on its
own.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence

from palyrad.journal.connection import Domain
from palyrad.journal.records import Device, DeviceWatch
from palyrad.journal.state import STATE_DEVICES_CHANGED, bump_counter, read_counter

# last_seen_ms is written only when it moved by at least this much (touch is per RPC).
TOUCH_RESOLUTION_MS = 1_000

_COLUMNS = (
    "device_id, name, state, public_key_sha256, cert_sha256, cert_expires_ms, paired_ms,"
    " delivery_floor, prev_cert_sha256, prev_valid_until_ms, last_seen_ms, revoked_ms,"
    " revoke_reason, cert_used_ms"
)
_SELECT = f"SELECT {_COLUMNS} FROM devices"
_INSERT = f"INSERT INTO devices ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
_RENEW = (
    "UPDATE devices SET prev_cert_sha256 = cert_sha256,"
    " prev_valid_until_ms = MIN(?, cert_expires_ms), cert_sha256 = ?, cert_expires_ms = ?,"
    " cert_used_ms = NULL"
    " WHERE device_id = ? AND state = 'active' AND cert_sha256 = ?"
)
# A renewal whose reply was lost, retried with the previous certificate: the unused current
# certificate is replaced, the previous one (the caller's) keeps its grace.
_REISSUE = (
    "UPDATE devices SET cert_sha256 = ?, cert_expires_ms = ?"
    " WHERE device_id = ? AND state = 'active' AND cert_sha256 = ? AND cert_used_ms IS NULL"
    " AND prev_cert_sha256 = ? AND prev_valid_until_ms > ?"
)


def _device(r: sqlite3.Row) -> Device:
    return Device(*r)


def insert_device(db: sqlite3.Connection, device: Device) -> None:
    """Insert ``device`` and bump the registry version, inside the caller's write (shared
    with ``Pairing.mark_issued``). A duplicate device id or certificate fingerprint raises
    ``sqlite3.IntegrityError``."""
    d = device
    db.execute(
        _INSERT,
        (
            d.device_id,
            d.name,
            d.state,
            d.public_key_sha256,
            d.cert_sha256,
            d.cert_expires_ms,
            d.paired_ms,
            d.delivery_floor,
            d.prev_cert_sha256,
            d.prev_valid_until_ms,
            d.last_seen_ms,
            d.revoked_ms,
            d.revoke_reason,
            d.cert_used_ms,
        ),
    )
    bump_counter(db, STATE_DEVICES_CHANGED, d.paired_ms)


class Devices(Domain):
    """The device registry: add, read, revoke, remove, renew, touch; and open watches."""

    __slots__ = ()

    # --- the registry ----------------------------------------------------------------------

    def add(self, device: Device) -> None:
        """Insert a device (bumps the version). A duplicate device id or certificate
        fingerprint raises ``sqlite3.IntegrityError``."""
        with self._write() as db:
            insert_device(db, device)

    def get(self, device_id: str) -> Device | None:
        """The device, or None when it is unknown (or was removed)."""
        row = self._db.execute(_SELECT + " WHERE device_id = ?", (device_id,)).fetchone()
        return None if row is None else _device(row)

    def all(self) -> list[Device]:
        """Every device, active and revoked, in pairing order."""
        rows = self._db.execute(_SELECT + " ORDER BY paired_ms, device_id")
        return [_device(r) for r in rows]

    def version(self) -> int:
        """The registry's change counter: any add, revoke, remove or renewal moves it."""
        return read_counter(self._db, STATE_DEVICES_CHANGED)

    def revoke(self, device_id: str, now_ms: int, reason: str = "operator") -> bool:
        """Revoke the device: False when it is unknown. Idempotent: revoking a revoked
        device keeps its first ``revoked_ms`` and reason (and moves no version)."""
        with self._write() as db:
            cur = db.execute(
                "UPDATE devices SET state = 'revoked', revoked_ms = ?, revoke_reason = ?"
                " WHERE device_id = ? AND state = 'active'",
                (now_ms, reason, device_id),
            )
            if cur.rowcount:
                bump_counter(db, STATE_DEVICES_CHANGED, now_ms)
                return True
            row = db.execute("SELECT 1 FROM devices WHERE device_id = ?", (device_id,))
            return row.fetchone() is not None

    def remove(self, device_id: str) -> bool:
        """Delete the device with its delivery acknowledgements and watch rows; False when
        it was unknown. (``palyra node remove`` revokes first, so open streams close.)"""
        with self._write() as db:
            cur = db.execute("DELETE FROM devices WHERE device_id = ?", (device_id,))
            db.execute("DELETE FROM delivery_acks WHERE device_id = ?", (device_id,))
            db.execute("DELETE FROM device_watches WHERE device_id = ?", (device_id,))
            if not cur.rowcount:
                return False
            bump_counter(db, STATE_DEVICES_CHANGED, 0)  # no clock here: updated_ms stays
            return True

    def renew(
        self,
        device_id: str,
        *,
        expected_cert_sha256: str,
        new_cert_sha256: str,
        new_expires_ms: int,
        now_ms: int,
        grace_ms: int = 3_600_000,
    ) -> bool:
        """Compare-and-swap the device's certificate: only an active device whose current
        certificate is ``expected_cert_sha256``. The old one becomes the previous one and
        keeps working until ``min(now_ms + grace_ms, its expiry)``. False (and nothing
        changed) otherwise: the caller decides whether that is a superseded certificate
        (and revokes) or a lost race."""
        with self._write() as db:
            cur = db.execute(
                _RENEW,
                (
                    now_ms + grace_ms,
                    new_cert_sha256,
                    new_expires_ms,
                    device_id,
                    expected_cert_sha256,
                ),
            )
            if not cur.rowcount:
                return False
            bump_counter(db, STATE_DEVICES_CHANGED, now_ms)
            return True

    def touch(self, device_id: str, now_ms: int) -> None:
        """Record that the device was seen at ``now_ms``. Writes (and takes the write lock)
        only when ``last_seen_ms`` moves by at least a second; moves no version."""
        row = self._db.execute(
            "SELECT last_seen_ms FROM devices WHERE device_id = ?", (device_id,)
        ).fetchone()
        if row is None or (row[0] is not None and row[0] >= now_ms - TOUCH_RESOLUTION_MS):
            return
        with self._write() as db:
            db.execute(
                "UPDATE devices SET last_seen_ms = ? WHERE device_id = ?"
                " AND (last_seen_ms IS NULL OR last_seen_ms < ?)",
                (now_ms, device_id, now_ms - TOUCH_RESOLUTION_MS),
            )

    def mark_cert_used(self, device_id: str, cert_sha256: str, now_ms: int) -> bool:
        """Record the first call made with the device's current certificate; True when this
        was that first call. From then on a renewal from the previous certificate is a copy
        of it, not a retry (``reissue``)."""
        with self._write() as db:
            cur = db.execute(
                "UPDATE devices SET cert_used_ms = ? WHERE device_id = ? AND cert_sha256 = ?"
                " AND cert_used_ms IS NULL",
                (now_ms, device_id, cert_sha256),
            )
            return bool(cur.rowcount)

    def reissue(
        self,
        device_id: str,
        *,
        caller_cert_sha256: str,
        expected_cert_sha256: str,
        new_cert_sha256: str,
        new_expires_ms: int,
        now_ms: int,
    ) -> bool:
        """Replace a current certificate that was never used, for a caller presenting the
        previous one within its grace: the retry of a renewal whose reply was lost. The
        previous certificate keeps its grace. False (nothing changed) unless all of that
        holds — then the caller's renewal is one from a superseded certificate."""
        with self._write() as db:
            cur = db.execute(
                _REISSUE,
                (
                    new_cert_sha256,
                    new_expires_ms,
                    device_id,
                    expected_cert_sha256,
                    caller_cert_sha256,
                    now_ms,
                ),
            )
            if not cur.rowcount:
                return False
            bump_counter(db, STATE_DEVICES_CHANGED, now_ms)
            return True

    # --- open watch streams ----------------------------------------------------------------
    #
    # node_rpc writes a row per open ``Watch`` stream and removes it when the stream ends
    # (and every row when it starts). While the stream runs it journals its progress
    # (``watch_heartbeat``, a few times per stale bound, on the stream's own connection);
    # self-healing reads ``stale_watches`` and asks for a close (``request_close``), which
    # node_rpc's main loop carries out (``close_requested``).

    def open_watch(
        self, stream_id: str, device_id: str, channels: Sequence[str], now_ms: int
    ) -> None:
        """Record an open ``watch`` stream (``["*"]`` for every channel), replacing a row of
        the same stream id; its opening is its first heartbeat."""
        with self._write() as db:
            db.execute(
                "INSERT OR REPLACE INTO device_watches"
                " (stream_id, device_id, channels, opened_ms, heartbeat_ms)"
                " VALUES (?, ?, ?, ?, ?)",
                (stream_id, device_id, json.dumps(list(channels)), now_ms, now_ms),
            )

    def watch_heartbeat(
        self, stream_id: str, now_ms: int, unacked_since_ms: int | None = None
    ) -> bool:
        """Record the stream's progress at ``now_ms`` and when it sent the oldest delivery
        still unacknowledged (None: none). False when the stream has no row (closed)."""
        with self._write() as db:
            cur = db.execute(
                "UPDATE device_watches SET heartbeat_ms = ?, unacked_since_ms = ?"
                " WHERE stream_id = ?",
                (now_ms, unacked_since_ms, stream_id),
            )
            return bool(cur.rowcount)

    def close_watch(self, stream_id: str) -> None:
        """Forget a stream that ended."""
        with self._write() as db:
            db.execute("DELETE FROM device_watches WHERE stream_id = ?", (stream_id,))

    def clear_watches(self) -> None:
        """Forget every stream (node_rpc start: a dead process's streams are gone)."""
        with self._write() as db:
            db.execute("DELETE FROM device_watches")

    def watches(self) -> list[DeviceWatch]:
        """Every open stream, oldest first."""
        return self._watches("", ())

    def watch(self, stream_id: str) -> DeviceWatch | None:
        """One open stream, or None when it is closed (or never was)."""
        found = self._watches(" WHERE stream_id = ?", (stream_id,))
        return found[0] if found else None

    def stale_watches(self, older_than_ms: int) -> list[DeviceWatch]:
        """The open streams that stopped making progress, oldest first: no heartbeat since
        before ``older_than_ms`` (the serving thread is blocked in a send or its loop is
        wedged), or a delivery sent on the stream before ``older_than_ms`` that the device
        has still not acknowledged (the node keeps its connection but does not read or
        ack: its kernel buffers what is sent, so the stream itself stays busy)."""
        return self._watches(
            " WHERE heartbeat_ms < ? OR unacked_since_ms < ?", (older_than_ms, older_than_ms)
        )

    def request_close(self, stream_id: str, now_ms: int) -> bool:
        """Ask node_rpc to close the stream (it cancels the call; the stream's end removes
        the row). A repeated request keeps the first one's time. False when there is no
        such open stream."""
        with self._write() as db:
            cur = db.execute(
                "UPDATE device_watches SET close_requested_ms = COALESCE(close_requested_ms, ?)"
                " WHERE stream_id = ?",
                (now_ms, stream_id),
            )
            return bool(cur.rowcount)

    def close_requested(self) -> list[str]:
        """The stream ids whose close was requested and that are still open."""
        rows = self._db.execute(
            "SELECT stream_id FROM device_watches WHERE close_requested_ms IS NOT NULL"
            " ORDER BY close_requested_ms, stream_id"
        )
        return [r[0] for r in rows]

    def _watches(self, where: str, args: tuple[object, ...]) -> list[DeviceWatch]:
        rows = self._db.execute(
            "SELECT stream_id, device_id, channels, opened_ms, heartbeat_ms, unacked_since_ms,"
            f" close_requested_ms FROM device_watches{where} ORDER BY opened_ms, stream_id",
            args,
        )
        return [
            DeviceWatch(r[0], r[1], tuple(json.loads(r[2])), r[3], r[4], r[5], r[6]) for r in rows
        ]
