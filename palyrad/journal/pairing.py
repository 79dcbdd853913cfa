"""Pairing windows (``pairing_windows``) and pairing requests (``pairing_requests``), SPEC §5.

A window is open while ``closed_ms`` is NULL and ``expires_ms`` is ahead; at most one is
open (``open_window`` supersedes the others in the same transaction). Every step that must
happen once is a single conditional write, so two processes (or two handshakes) racing for
it cannot both win:

- a QR token is consumed by one ``UPDATE … RETURNING`` (``consume_token``);
- a PIN window closes as ``used`` once (``use_window``);
- a window admits one request (a UNIQUE index on ``window_id``: ``add_request`` raises
  ``sqlite3.IntegrityError`` for a second one, as every schema-enforced uniqueness in the
  journal does);
- a request is decided once, from ``pending`` and before it expires (``decide_request``),
  and issued once, from ``approved``, in the transaction that inserts the device
  (``mark_issued``).

Secrets are never stored: a PIN lives only in node_rpc's memory, a QR token and the
secret a node presents to collect its certificate only as SHA-256 hex digests.
"""

from __future__ import annotations

import json
import sqlite3

from palyrad.journal.connection import Domain
from palyrad.journal.devices import insert_device
from palyrad.journal.records import Device, PairingRequest, PairingWindow
from palyrad.journal.state import STATE_PAIRING_CHANGED, bump_counter, read_counter

MAX_FAILURE_PEERS = 20  # distinct source addresses kept per window (for doctor)

CLOSE_REASONS = frozenset({"superseded", "used", "failures", "expired", "daemon_restart"})

_WINDOW_COLUMNS = (
    "window_id, method, token_sha256, auto_approve, host, opened_ms, expires_ms, closed_ms,"
    " close_reason, failures, failure_peers"
)
_SELECT_WINDOW = f"SELECT {_WINDOW_COLUMNS} FROM pairing_windows"
_OPEN = "closed_ms IS NULL AND expires_ms > ?"
_CONSUME_TOKEN = (
    "UPDATE pairing_windows SET closed_ms = ?, close_reason = 'used'"
    f" WHERE token_sha256 = ? AND method = 'qr' AND {_OPEN} RETURNING {_WINDOW_COLUMNS}"
)

_REQUEST_COLUMNS = (
    "request_id, window_id, device_id, device_name, method, peer, public_key_sha256,"
    " public_key_der, await_secret_sha256, requested_ms, expires_ms, state, decided_ms"
)
_SELECT_REQUEST = f"SELECT {_REQUEST_COLUMNS} FROM pairing_requests"
_INSERT_REQUEST = (
    f"INSERT INTO pairing_requests ({_REQUEST_COLUMNS})"
    " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def _window(r: sqlite3.Row) -> PairingWindow:
    return PairingWindow(
        r[0], r[1], r[2], bool(r[3]), r[4], r[5], r[6], r[7], r[8], r[9], tuple(json.loads(r[10]))
    )


def _request(r: sqlite3.Row) -> PairingRequest:
    return PairingRequest(
        r[0], r[1], r[2], r[3], r[4], r[5], r[6], bytes(r[7]), r[8], r[9], r[10], r[11], r[12]
    )


def _check_reason(reason: str) -> None:
    if reason not in CLOSE_REASONS:
        raise ValueError(f"unknown close reason {reason!r}")


class Pairing(Domain):
    """Windows (open, supersede, close, expire, failed attempts, one-time use) and requests
    (add, list, decide, issue)."""

    __slots__ = ()

    # --- windows ---------------------------------------------------------------------------

    def open_window(self, window: PairingWindow, now_ms: int) -> None:
        """Open ``window``: in one transaction every other open window closes as
        ``superseded`` and this one is inserted (its ``closed_*`` and failure fields are
        stored as given: a new window has none)."""
        w = window
        with self._write() as db:
            db.execute(
                "UPDATE pairing_windows SET closed_ms = ?, close_reason = 'superseded'"
                " WHERE closed_ms IS NULL",
                (now_ms,),
            )
            db.execute(
                f"INSERT INTO pairing_windows ({_WINDOW_COLUMNS})"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    w.window_id,
                    w.method,
                    w.token_sha256,
                    int(w.auto_approve),
                    w.host,
                    w.opened_ms,
                    w.expires_ms,
                    w.closed_ms,
                    w.close_reason,
                    w.failures,
                    json.dumps(list(w.failure_peers[:MAX_FAILURE_PEERS])),
                ),
            )

    def open_window_now(self, now_ms: int) -> PairingWindow | None:
        """The open, unexpired window, if any."""
        row = self._db.execute(
            _SELECT_WINDOW + f" WHERE {_OPEN} ORDER BY opened_ms DESC LIMIT 1", (now_ms,)
        ).fetchone()
        return None if row is None else _window(row)

    def get_window(self, window_id: str) -> PairingWindow | None:
        """The window, open or closed, or None when unknown (or pruned)."""
        row = self._db.execute(_SELECT_WINDOW + " WHERE window_id = ?", (window_id,)).fetchone()
        return None if row is None else _window(row)

    def windows(self, limit: int = 20) -> list[PairingWindow]:
        """The newest windows first (for doctor: how each one closed, and from where the
        failed attempts came)."""
        rows = self._db.execute(
            _SELECT_WINDOW + " ORDER BY opened_ms DESC, window_id DESC LIMIT ?", (limit,)
        )
        return [_window(r) for r in rows]

    def close_window(self, window_id: str, reason: str, now_ms: int) -> bool:
        """Close the window if it is still open (expired or not); False otherwise."""
        _check_reason(reason)
        with self._write() as db:
            cur = db.execute(
                "UPDATE pairing_windows SET closed_ms = ?, close_reason = ?"
                " WHERE window_id = ? AND closed_ms IS NULL",
                (now_ms, reason, window_id),
            )
            return cur.rowcount > 0

    def close_all_open(self, reason: str, now_ms: int) -> int:
        """Close every window not yet closed (node_rpc start: ``daemon_restart``, since a
        PIN lived only in the dead process); returns how many."""
        _check_reason(reason)
        with self._write() as db:
            cur = db.execute(
                "UPDATE pairing_windows SET closed_ms = ?, close_reason = ?"
                " WHERE closed_ms IS NULL",
                (now_ms, reason),
            )
            return cur.rowcount

    def expire_windows(self, now_ms: int) -> int:
        """Close the open windows whose time ran out (as ``expired``, at their expiry);
        returns how many."""
        with self._write() as db:
            cur = db.execute(
                "UPDATE pairing_windows SET closed_ms = expires_ms, close_reason = 'expired'"
                " WHERE closed_ms IS NULL AND expires_ms <= ?",
                (now_ms,),
            )
            return cur.rowcount

    def record_failure(self, window_id: str, peer: str, now_ms: int, max_failures: int = 20) -> int:
        """Count a failed attempt from ``peer`` (one atomic write): the window's failures
        go up by one, ``peer`` joins its distinct source addresses (the first
        ``MAX_FAILURE_PEERS`` are kept), and an open window closes as ``failures`` once the
        count reaches ``max_failures``. Returns the new count (0 for an unknown window).
        A handshake that fails after its window closed still counts."""
        with self._write() as db:
            row = db.execute(
                "SELECT failures, failure_peers, closed_ms FROM pairing_windows"
                " WHERE window_id = ?",
                (window_id,),
            ).fetchone()
            if row is None:
                return 0
            failures = int(row[0]) + 1
            peers: list[str] = json.loads(row[1])
            if peer not in peers and len(peers) < MAX_FAILURE_PEERS:
                peers.append(peer)
            closing = row[2] is None and failures >= max_failures
            db.execute(
                "UPDATE pairing_windows SET failures = ?, failure_peers = ?,"
                " closed_ms = CASE WHEN ? THEN ? ELSE closed_ms END,"
                " close_reason = CASE WHEN ? THEN 'failures' ELSE close_reason END"
                " WHERE window_id = ?",
                (failures, json.dumps(peers), closing, now_ms, closing, window_id),
            )
            return failures

    def consume_token(self, token_sha256: str, now_ms: int) -> PairingWindow | None:
        """Use a QR token, once: the open, unexpired QR window with this token hash closes
        as ``used`` in one ``UPDATE … RETURNING`` and is returned (as closed). A second
        presentation, an expired or closed window, or an unknown token: None."""
        with self._write() as db:
            rows = db.execute(_CONSUME_TOKEN, (now_ms, token_sha256, now_ms)).fetchall()
        return _window(rows[0]) if rows else None

    def use_window(self, window_id: str, now_ms: int) -> bool:
        """Close an open, unexpired PIN window as ``used`` (a node's key confirmation
        succeeded); False when it was no longer open (or is a QR window: those are used
        through ``consume_token``)."""
        with self._write() as db:
            cur = db.execute(
                "UPDATE pairing_windows SET closed_ms = ?, close_reason = 'used'"
                f" WHERE window_id = ? AND method = 'pin' AND {_OPEN}",
                (now_ms, window_id, now_ms),
            )
            return cur.rowcount > 0

    # --- requests --------------------------------------------------------------------------

    def add_request(self, req: PairingRequest) -> None:
        """Record a pairing request. A second request for the same window (or a repeated
        request id) raises ``sqlite3.IntegrityError``: the schema admits one per window.
        The window itself is not checked here: the caller has just used it."""
        q = req
        with self._write() as db:
            db.execute(
                _INSERT_REQUEST,
                (
                    q.request_id,
                    q.window_id,
                    q.device_id,
                    q.device_name,
                    q.method,
                    q.peer,
                    q.public_key_sha256,
                    q.public_key_der,
                    q.await_secret_sha256,
                    q.requested_ms,
                    q.expires_ms,
                    q.state,
                    q.decided_ms,
                ),
            )

    def get_request(self, request_id: str) -> PairingRequest | None:
        """The request in any state, or None when unknown (or pruned)."""
        row = self._db.execute(_SELECT_REQUEST + " WHERE request_id = ?", (request_id,)).fetchone()
        return None if row is None else _request(row)

    def pending_requests(self, now_ms: int) -> list[PairingRequest]:
        """Requests waiting for the operator (pending, not expired), oldest first."""
        rows = self._db.execute(
            _SELECT_REQUEST + " WHERE state = 'pending' AND expires_ms > ?"
            " ORDER BY requested_ms, request_id",
            (now_ms,),
        )
        return [_request(r) for r in rows]

    def version(self) -> int:
        """A counter every decision moves (what a handshake waiting for the operator
        polls instead of its request)."""
        return read_counter(self._db, STATE_PAIRING_CHANGED)

    def decide_request(self, request_id: str, approve: bool, now_ms: int) -> bool:
        """Approve or reject a pending, unexpired request; False when it is unknown,
        expired or already decided."""
        with self._write() as db:
            cur = db.execute(
                "UPDATE pairing_requests SET state = ?, decided_ms = ?"
                " WHERE request_id = ? AND state = 'pending' AND expires_ms > ?",
                ("approved" if approve else "rejected", now_ms, request_id, now_ms),
            )
            if not cur.rowcount:
                return False
            bump_counter(db, STATE_PAIRING_CHANGED, now_ms)
            return True

    def mark_issued(self, request_id: str, device: Device, now_ms: int) -> bool:
        """In one transaction: the approved request becomes ``issued`` and ``device`` is
        inserted (bumping the device registry's version). The request must be
        ``approved`` and name the same device id and public key as ``device``; False (and
        nothing written) otherwise. The caller fills ``device.delivery_floor`` from
        ``Outbox.max_id()``. A device id or certificate fingerprint already in the
        registry raises ``sqlite3.IntegrityError`` and rolls the issue back."""
        with self._write() as db:
            cur = db.execute(
                "UPDATE pairing_requests SET state = 'issued' WHERE request_id = ?"
                " AND state = 'approved' AND device_id = ? AND public_key_sha256 = ?",
                (request_id, device.device_id, device.public_key_sha256),
            )
            if not cur.rowcount:
                return False
            insert_device(db, device)
            bump_counter(db, STATE_PAIRING_CHANGED, now_ms)
            return True

    # --- retention -------------------------------------------------------------------------

    def prune(self, older_than_ms: int) -> int:
        """Delete windows closed (or expired) before ``older_than_ms`` and requests decided
        (or expired) before it; returns how many rows went."""
        with self._write() as db:
            windows = db.execute(
                "DELETE FROM pairing_windows WHERE (closed_ms IS NOT NULL AND closed_ms < ?)"
                " OR expires_ms < ?",
                (older_than_ms, older_than_ms),
            ).rowcount
            requests = db.execute(
                "DELETE FROM pairing_requests WHERE (decided_ms IS NOT NULL AND decided_ms < ?)"
                " OR expires_ms < ?",
                (older_than_ms, older_than_ms),
            ).rowcount
            return windows + requests
