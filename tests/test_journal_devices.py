"""The journal side of node pairing and channel delivery (SPEC §4.4, §5, §7 "Channel
delivery"): devices, pairing windows and requests, per-device outbox delivery."""

from __future__ import annotations

import hashlib
import sqlite3
import threading
from dataclasses import replace
from pathlib import Path

import pytest

from palyrad.journal import (
    SCHEMA_VERSION,
    STATE_DEVICES_CHANGED,
    Delivery,
    Device,
    DeviceWatch,
    Journal,
    PairingRequest,
    PairingWindow,
    connection,
)
from palyrad.journal.migrations import MIGRATIONS

HOUR = 3_600_000
DAY = 24 * HOUR


@pytest.fixture
def journal(tmp_path: Path) -> Journal:
    return Journal(tmp_path / "j.sqlite3")


def _device(device_id: str = "dev1", **kw: object) -> Device:
    base = Device(
        device_id=device_id,
        name=f"{device_id}-name",
        state="active",
        public_key_sha256=f"pk-{device_id}",
        cert_sha256=f"cert-{device_id}-1",
        cert_expires_ms=30 * DAY,
        paired_ms=1_000,
        delivery_floor=0,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _window(window_id: str = "w1", method: str = "pin", **kw: object) -> PairingWindow:
    base = PairingWindow(
        window_id=window_id,
        method=method,
        token_sha256=_sha(f"token-{window_id}") if method == "qr" else None,
        auto_approve=False,
        host="example.lan",
        opened_ms=1_000,
        expires_ms=1_000 + 600_000,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


def _request(request_id: str = "req1", window_id: str = "w1", **kw: object) -> PairingRequest:
    base = PairingRequest(
        request_id=request_id,
        window_id=window_id,
        device_id=f"dev-{request_id}",
        device_name="phone",
        method="pin",
        peer="10.0.0.5:50000",
        public_key_sha256=f"pk-{request_id}",
        public_key_der=b"\x30\x59\x00der",
        await_secret_sha256=_sha("secret"),
        requested_ms=2_000,
        expires_ms=601_000,
    )
    return replace(base, **kw)  # type: ignore[arg-type]


# --- migration -------------------------------------------------------------------------------


def test_migration_applies_on_a_fresh_journal(journal: Journal) -> None:
    assert SCHEMA_VERSION == len(MIGRATIONS) >= 4
    assert journal.schema_version() == SCHEMA_VERSION
    tables = {
        r[0] for r in journal.db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
    }
    assert {
        "devices",
        "pairing_windows",
        "pairing_requests",
        "delivery_acks",
        "device_watches",
    } <= tables


def test_migration_applies_on_a_journal_at_the_previous_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "old.sqlite3"
    with monkeypatch.context() as m:  # a journal written by the Palyra before migration 4
        m.setattr(connection, "MIGRATIONS", MIGRATIONS[:3])
        m.setattr(connection, "SCHEMA_VERSION", 3)
        old = Journal(path)
        assert old.schema_version() == 3
        old.outbox.add("phone", "r", "run0", "{}", 5)
        old.close()
    j = Journal(path)
    assert j.schema_version() == SCHEMA_VERSION
    # the old entries survive and are deliverable with the new per-device acks
    (entry,) = j.outbox.for_device("d", None, after_id=0, floor=0)
    assert (entry.outbox_id, entry.run_id, entry.created_ms) == (1, "run0", 5)
    assert j.outbox.ack("d", [1], 6) == 1
    assert j.outbox.max_id() == 1 and j.outbox.add("phone", "r", "run1", "{}", 7) == 2


# --- devices ---------------------------------------------------------------------------------


def test_device_add_get_all_and_records(journal: Journal) -> None:
    assert journal.devices.get("dev1") is None and journal.devices.all() == []
    b, a = _device("b", paired_ms=2_000), _device("a", paired_ms=3_000)
    journal.devices.add(a)
    journal.devices.add(b)
    assert journal.devices.get("b") == b
    assert [d.device_id for d in journal.devices.all()] == ["b", "a"]  # by paired_ms
    with pytest.raises(sqlite3.IntegrityError):  # the same certificate twice
        journal.devices.add(_device("c", cert_sha256=a.cert_sha256))
    with pytest.raises(sqlite3.IntegrityError):
        journal.devices.add(_device("a"))
    with pytest.raises(sqlite3.IntegrityError):  # the schema knows the states
        journal.devices.add(_device("z", state="lost", cert_sha256="zz"))


def test_revoke_is_idempotent_and_unknown_is_false(journal: Journal) -> None:
    journal.devices.add(_device())
    assert not journal.devices.revoke("nope", 5_000)
    assert journal.devices.revoke("dev1", 5_000, reason="superseded_cert")
    v = journal.devices.version()
    assert journal.devices.revoke("dev1", 9_000)  # again: True, the first stamp stays
    got = journal.devices.get("dev1")
    assert got is not None
    assert (got.state, got.revoked_ms, got.revoke_reason) == ("revoked", 5_000, "superseded_cert")
    assert journal.devices.version() == v


def test_remove_deletes_the_device_its_acks_and_its_watches(journal: Journal) -> None:
    journal.devices.add(_device("dev1"))
    journal.devices.add(_device("dev2"))
    ids = [journal.outbox.add("c", "r", f"run{i}", "{}", i) for i in range(3)]
    assert journal.outbox.ack("dev1", ids, 10) == 3
    assert journal.outbox.ack("dev2", ids[:1], 10) == 1
    journal.devices.open_watch("s1", "dev1", ["c"], 10)
    journal.devices.open_watch("s2", "dev2", ["*"], 11)
    assert journal.devices.remove("dev1")
    assert journal.devices.get("dev1") is None
    assert [w.stream_id for w in journal.devices.watches()] == ["s2"]
    # dev1's acks are gone (a device paired again under that id would start fresh)
    assert [d.outbox_id for d in journal.outbox.for_device("dev1", None, 0, 0)] == ids
    assert [d.outbox_id for d in journal.outbox.for_device("dev2", None, 0, 0)] == ids[1:]
    assert not journal.devices.remove("dev1")


def test_renew_is_a_compare_and_swap(journal: Journal) -> None:
    dev = _device(cert_sha256="c1", cert_expires_ms=10 * DAY)
    journal.devices.add(dev)
    v = journal.devices.version()
    # the wrong expected certificate: nothing changes
    assert not journal.devices.renew(
        "dev1",
        expected_cert_sha256="cX",
        new_cert_sha256="c2",
        new_expires_ms=40 * DAY,
        now_ms=DAY,
    )
    assert journal.devices.get("dev1") == dev and journal.devices.version() == v
    # the right one: the old certificate works one more hour
    assert journal.devices.renew(
        "dev1",
        expected_cert_sha256="c1",
        new_cert_sha256="c2",
        new_expires_ms=40 * DAY,
        now_ms=DAY,
    )
    got = journal.devices.get("dev1")
    assert got is not None
    assert (got.cert_sha256, got.cert_expires_ms) == ("c2", 40 * DAY)
    assert (got.prev_cert_sha256, got.prev_valid_until_ms) == ("c1", DAY + HOUR)
    assert journal.devices.version() == v + 1
    # renewing with the superseded certificate fails (the caller revokes)
    assert not journal.devices.renew(
        "dev1",
        expected_cert_sha256="c1",
        new_cert_sha256="c3",
        new_expires_ms=50 * DAY,
        now_ms=DAY + 1,
    )
    # ... or at the old certificate's expiry, when that is sooner than the hour
    assert journal.devices.renew(
        "dev1",
        expected_cert_sha256="c2",
        new_cert_sha256="c3",
        new_expires_ms=50 * DAY,
        now_ms=40 * DAY - 60_000,
    )
    got = journal.devices.get("dev1")
    assert got is not None and (got.prev_cert_sha256, got.prev_valid_until_ms) == ("c2", 40 * DAY)
    # a revoked device renews nothing
    journal.devices.revoke("dev1", 41 * DAY)
    assert not journal.devices.renew(
        "dev1",
        expected_cert_sha256="c3",
        new_cert_sha256="c4",
        new_expires_ms=60 * DAY,
        now_ms=41 * DAY,
    )
    assert not journal.devices.renew(
        "nope",
        expected_cert_sha256="c3",
        new_cert_sha256="c4",
        new_expires_ms=60 * DAY,
        now_ms=41 * DAY,
    )


def test_version_moves_on_changes_but_not_on_touch(journal: Journal) -> None:
    assert journal.devices.version() == 0
    journal.devices.add(_device())
    assert journal.devices.version() == 1
    journal.devices.touch("dev1", 5_000)
    journal.devices.touch("dev1", 9_000)
    assert journal.devices.version() == 1
    journal.devices.renew(
        "dev1",
        expected_cert_sha256="cert-dev1-1",
        new_cert_sha256="n",
        new_expires_ms=1,
        now_ms=10_000,
    )
    assert journal.devices.version() == 2
    journal.devices.revoke("dev1", 11_000)
    assert journal.devices.version() == 3
    journal.devices.remove("dev1")
    assert journal.devices.version() == 4
    assert journal.state.get(STATE_DEVICES_CHANGED) == "4"
    # another connection (the node_rpc process) sees the same counter
    assert Journal(journal.path).devices.version() == 4


def test_touch_writes_only_when_last_seen_moved_a_second(journal: Journal) -> None:
    journal.devices.add(_device())
    journal.devices.touch("nope", 1)  # unknown: nothing
    journal.devices.touch("dev1", 10_000)
    before = journal.db.total_changes
    journal.devices.touch("dev1", 10_500)  # within the second: no write
    journal.devices.touch("dev1", 11_000)  # exactly a second: still no write
    assert journal.db.total_changes == before
    got = journal.devices.get("dev1")
    assert got is not None and got.last_seen_ms == 10_000
    journal.devices.touch("dev1", 11_001)
    got = journal.devices.get("dev1")
    assert got is not None and got.last_seen_ms == 11_001


def test_watches(journal: Journal) -> None:
    journal.devices.open_watch("s2", "dev1", ["*"], 20)
    journal.devices.open_watch("s1", "dev1", ["a", "b"], 10)
    assert journal.devices.watches() == [
        DeviceWatch("s1", "dev1", ("a", "b"), 10, 10),
        DeviceWatch("s2", "dev1", ("*",), 20, 20),
    ]
    journal.devices.close_watch("s1")
    journal.devices.close_watch("unknown")
    assert [w.stream_id for w in journal.devices.watches()] == ["s2"]
    journal.devices.open_watch("s3", "dev2", [], 30)
    journal.devices.clear_watches()
    assert journal.devices.watches() == []


# --- pairing windows -------------------------------------------------------------------------


def test_open_window_supersedes_the_previous(journal: Journal) -> None:
    assert journal.pairing.open_window_now(0) is None
    journal.pairing.open_window(_window("w1", "qr"), 1_000)
    journal.pairing.open_window(_window("w2", "pin", opened_ms=2_000), 2_000)
    first, second = journal.pairing.get_window("w1"), journal.pairing.get_window("w2")
    assert first is not None and (first.closed_ms, first.close_reason) == (2_000, "superseded")
    assert second is not None and second.closed_ms is None and second.token_sha256 is None
    assert journal.pairing.open_window_now(3_000) == second
    assert journal.pairing.open_window_now(second.expires_ms) is None  # expired
    assert [w.window_id for w in journal.pairing.windows()] == ["w2", "w1"]
    assert [w.window_id for w in journal.pairing.windows(limit=1)] == ["w2"]
    with pytest.raises(sqlite3.IntegrityError):  # a QR window needs its token hash
        journal.pairing.open_window(_window("w3", "qr", token_sha256=None), 3_000)
    # the failed open rolled back: w2 was not superseded
    assert journal.pairing.open_window_now(3_000) == second


def test_close_expire_and_close_all(journal: Journal) -> None:
    journal.pairing.open_window(_window("w1", expires_ms=5_000), 1_000)
    assert journal.pairing.expire_windows(4_999) == 0
    assert journal.pairing.expire_windows(5_000) == 1
    w1 = journal.pairing.get_window("w1")
    assert w1 is not None and (w1.closed_ms, w1.close_reason) == (5_000, "expired")
    assert not journal.pairing.close_window("w1", "used", 6_000)  # no longer open
    journal.pairing.open_window(_window("w2"), 6_000)
    assert journal.pairing.close_window("w2", "daemon_restart", 7_000)
    journal.pairing.open_window(_window("w3"), 8_000)
    assert journal.pairing.close_all_open("daemon_restart", 9_000) == 1
    w3 = journal.pairing.get_window("w3")
    assert w3 is not None and w3.close_reason == "daemon_restart"
    with pytest.raises(ValueError, match="close reason"):
        journal.pairing.close_window("w3", "bored", 9_000)


def test_consume_token_is_first_use_only(journal: Journal) -> None:
    token = _sha("token-w1")
    journal.pairing.open_window(_window("w1", "qr", expires_ms=10_000), 1_000)
    assert journal.pairing.consume_token(_sha("wrong"), 2_000) is None
    used = journal.pairing.consume_token(token, 2_000)
    assert used is not None and used.window_id == "w1"
    assert (used.closed_ms, used.close_reason) == (2_000, "used")
    assert journal.pairing.get_window("w1") == used
    assert journal.pairing.consume_token(token, 2_001) is None  # the second presentation


def test_consume_token_refuses_expired_and_closed_windows(journal: Journal) -> None:
    journal.pairing.open_window(_window("w1", "qr", expires_ms=10_000), 1_000)
    assert journal.pairing.consume_token(_sha("token-w1"), 10_000) is None  # expired
    journal.pairing.open_window(_window("w2", "qr"), 11_000)  # and w1 is now superseded
    journal.pairing.close_window("w2", "daemon_restart", 12_000)
    assert journal.pairing.consume_token(_sha("token-w2"), 12_001) is None  # closed
    w2 = journal.pairing.get_window("w2")
    assert w2 is not None and w2.close_reason == "daemon_restart"


def _race_for_token(path: Path, token: str, contenders: int) -> list[PairingWindow | None]:
    """``contenders`` threads, each with its own connection (as separate processes would
    have), present the same token at the same moment."""
    barrier = threading.Barrier(contenders)
    results: list[PairingWindow | None] = []
    lock = threading.Lock()

    def present() -> None:
        j = Journal(path)
        try:
            barrier.wait()
            got = j.pairing.consume_token(token, 2_000)
            with lock:
                results.append(got)
        finally:
            j.close()

    threads = [threading.Thread(target=present) for _ in range(contenders)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


def test_two_connections_racing_for_a_token_one_wins(tmp_path: Path) -> None:
    path = tmp_path / "j.sqlite3"
    opener = Journal(path)
    for round_ in range(10):
        opener.pairing.open_window(_window(f"w{round_}", "qr"), 1_000)
        results = _race_for_token(path, _sha(f"token-w{round_}"), 4)
        winners = [r for r in results if r is not None]
        assert len(results) == 4 and len(winners) == 1
        assert winners[0].window_id == f"w{round_}"


def test_use_window_closes_a_pin_window_once(journal: Journal) -> None:
    journal.pairing.open_window(_window("w1", "pin", expires_ms=10_000), 1_000)
    assert journal.pairing.use_window("w1", 2_000)
    assert not journal.pairing.use_window("w1", 2_001)
    w1 = journal.pairing.get_window("w1")
    assert w1 is not None and (w1.closed_ms, w1.close_reason) == (2_000, "used")
    journal.pairing.open_window(_window("w2", "pin", expires_ms=10_000), 3_000)
    assert not journal.pairing.use_window("w2", 10_000)  # expired
    journal.pairing.open_window(_window("w3", "qr"), 11_000)
    assert not journal.pairing.use_window("w3", 11_001)  # a QR window goes by its token
    assert not journal.pairing.use_window("unknown", 11_001)


def test_record_failure_closes_at_the_limit_and_caps_peers(journal: Journal) -> None:
    journal.pairing.open_window(_window("w1"), 1_000)
    assert journal.pairing.record_failure("unknown", "1.2.3.4", 1_500) == 0
    for i in range(19):
        peer = "10.0.0.1" if i % 2 else f"10.0.1.{i}"
        assert journal.pairing.record_failure("w1", peer, 2_000 + i) == i + 1
    w = journal.pairing.get_window("w1")
    assert w is not None and w.closed_ms is None and w.failures == 19
    assert w.failure_peers[:3] == ("10.0.1.0", "10.0.0.1", "10.0.1.2")
    assert len(w.failure_peers) == len(set(w.failure_peers)) == 11  # distinct
    assert journal.pairing.record_failure("w1", "10.0.9.9", 3_000) == 20
    w = journal.pairing.get_window("w1")
    assert w is not None and (w.closed_ms, w.close_reason, w.failures) == (3_000, "failures", 20)
    # a late failure still counts, the window stays closed as it was
    for i in range(30):
        journal.pairing.record_failure("w1", f"192.168.0.{i}", 4_000 + i)
    w = journal.pairing.get_window("w1")
    assert w is not None and (w.closed_ms, w.close_reason, w.failures) == (3_000, "failures", 50)
    assert len(w.failure_peers) == 20 and "10.0.9.9" in w.failure_peers  # capped at 20
    # a lower limit closes earlier
    journal.pairing.open_window(_window("w2"), 5_000)
    assert journal.pairing.record_failure("w2", "p", 5_001, max_failures=1) == 1
    w2 = journal.pairing.get_window("w2")
    assert w2 is not None and w2.close_reason == "failures"


# --- pairing requests ------------------------------------------------------------------------


def test_a_window_admits_one_request(journal: Journal) -> None:
    journal.pairing.open_window(_window("w1"), 1_000)
    req = _request("req1")
    journal.pairing.add_request(req)
    assert journal.pairing.get_request("req1") == req
    with pytest.raises(sqlite3.IntegrityError, match="window_id"):
        journal.pairing.add_request(_request("req2"))
    assert journal.pairing.get_request("req2") is None
    journal.pairing.add_request(_request("req3", window_id="w2"))


def test_pending_requests_oldest_first_and_unexpired(journal: Journal) -> None:
    journal.pairing.add_request(_request("b", "w1", requested_ms=3_000))
    journal.pairing.add_request(_request("a", "w2", requested_ms=2_000))
    journal.pairing.add_request(_request("c", "w3", requested_ms=1_000, expires_ms=5_000))
    assert [r.request_id for r in journal.pairing.pending_requests(4_000)] == ["c", "a", "b"]
    assert [r.request_id for r in journal.pairing.pending_requests(5_000)] == ["a", "b"]
    journal.pairing.decide_request("a", True, 5_000)
    assert [r.request_id for r in journal.pairing.pending_requests(5_000)] == ["b"]


def test_decide_request_only_from_pending_before_expiry(journal: Journal) -> None:
    journal.pairing.add_request(_request("req1", "w1", expires_ms=10_000))
    journal.pairing.add_request(_request("req2", "w2", expires_ms=10_000))
    journal.pairing.add_request(_request("req3", "w3", expires_ms=10_000))
    v = journal.pairing.version()
    assert not journal.pairing.decide_request("unknown", True, 5_000)
    assert journal.pairing.decide_request("req1", True, 5_000)
    assert journal.pairing.version() == v + 1
    assert not journal.pairing.decide_request("req1", False, 5_001)  # decided already
    assert journal.pairing.decide_request("req2", False, 6_000)
    assert not journal.pairing.decide_request("req2", True, 6_001)
    assert not journal.pairing.decide_request("req3", True, 10_000)  # expired
    states = {
        r: (q.state, q.decided_ms)
        for r in ("req1", "req2", "req3")
        if (q := journal.pairing.get_request(r)) is not None
    }
    assert states == {
        "req1": ("approved", 5_000),
        "req2": ("rejected", 6_000),
        "req3": ("pending", None),
    }


def test_mark_issued_is_a_compare_and_swap_with_the_device_insert(journal: Journal) -> None:
    journal.pairing.add_request(_request("req1", "w1"))
    dev = _device("dev-req1", public_key_sha256="pk-req1")
    assert not journal.pairing.mark_issued("req1", dev, 5_000)  # still pending
    assert journal.devices.get("dev-req1") is None
    journal.pairing.decide_request("req1", True, 5_000)
    v = journal.devices.version()
    # a device that is not the request's: nothing
    assert not journal.pairing.mark_issued("req1", replace(dev, public_key_sha256="other"), 6_000)
    assert not journal.pairing.mark_issued("req1", replace(dev, device_id="other"), 6_000)
    assert journal.devices.all() == [] and journal.devices.version() == v
    assert journal.pairing.mark_issued("req1", dev, 6_000)
    got = journal.pairing.get_request("req1")
    assert got is not None and got.state == "issued"
    assert journal.devices.get("dev-req1") == dev and journal.devices.version() == v + 1
    assert not journal.pairing.mark_issued("req1", dev, 6_001)  # once
    # a rejected request issues nothing
    journal.pairing.add_request(_request("req2", "w2"))
    journal.pairing.decide_request("req2", False, 7_000)
    assert not journal.pairing.mark_issued(
        "req2", _device("dev-req2", public_key_sha256="pk-req2"), 7_001
    )
    assert journal.devices.get("dev-req2") is None


def test_mark_issued_rolls_back_when_the_device_insert_fails(journal: Journal) -> None:
    journal.devices.add(_device("taken", cert_sha256="c"))
    journal.pairing.add_request(_request("req1", "w1"))
    journal.pairing.decide_request("req1", True, 5_000)
    clash = _device("dev-req1", public_key_sha256="pk-req1", cert_sha256="c")
    with pytest.raises(sqlite3.IntegrityError):
        journal.pairing.mark_issued("req1", clash, 6_000)
    got = journal.pairing.get_request("req1")
    assert got is not None and got.state == "approved"  # still collectable


def test_pairing_prune(journal: Journal) -> None:
    journal.pairing.open_window(_window("old", expires_ms=2_000), 1_000)
    journal.pairing.close_window("old", "used", 1_500)
    journal.pairing.open_window(_window("new", opened_ms=50_000, expires_ms=900_000), 50_000)
    journal.pairing.add_request(_request("decided", "old", expires_ms=2_000))
    journal.pairing.decide_request("decided", False, 1_600)
    journal.pairing.add_request(_request("expired", "x", expires_ms=3_000))
    journal.pairing.add_request(_request("waiting", "new", expires_ms=900_000))
    assert journal.pairing.prune(10_000) == 3
    assert journal.pairing.get_window("old") is None
    assert journal.pairing.get_window("new") is not None
    assert journal.pairing.get_request("decided") is None
    assert journal.pairing.get_request("expired") is None
    assert journal.pairing.get_request("waiting") is not None


def test_pairing_records_round_trip(journal: Journal) -> None:
    win = _window("w1", "qr", auto_approve=True, host=None)
    journal.pairing.open_window(win, 1_000)
    assert journal.pairing.get_window("w1") == win
    req = _request(public_key_der=bytes(range(256)))
    journal.pairing.add_request(req)
    got = journal.pairing.get_request(req.request_id)
    assert got == req and isinstance(got.public_key_der, bytes)


# --- outbox: per-device delivery -------------------------------------------------------------


def _fill(journal: Journal) -> list[int]:
    """Six entries, alternating channels a, b, c, a, b, c."""
    return [
        journal.outbox.add("abc"[i % 3], f"r{i}", f"run{i}", f'{{"n": {i}}}', 100 + i)
        for i in range(6)
    ]


def test_add_returns_the_id_and_max_id(journal: Journal) -> None:
    assert journal.outbox.max_id() == 0
    ids = _fill(journal)
    assert ids == [1, 2, 3, 4, 5, 6] and journal.outbox.max_id() == 6


def test_for_device_orders_filters_and_skips_acks(journal: Journal) -> None:
    ids = _fill(journal)
    everything = journal.outbox.for_device("d", None, after_id=0, floor=0)
    assert [e.outbox_id for e in everything] == ids
    assert everything[0] == Delivery(1, "a", "r0", "run0", '{"n": 0}', 100)
    # channel filter (one, several, duplicates, none)
    assert [e.outbox_id for e in journal.outbox.for_device("d", ["a"], 0, 0)] == [1, 4]
    assert [e.outbox_id for e in journal.outbox.for_device("d", ["c", "a"], 0, 0)] == [
        1,
        3,
        4,
        6,
    ]
    assert [e.outbox_id for e in journal.outbox.for_device("d", ["a", "a"], 0, 0)] == [1, 4]
    assert journal.outbox.for_device("d", [], 0, 0) == []
    assert journal.outbox.for_device("d", ["*"], 0, 0) == []  # names are literal
    # the floor (entries before pairing) and after_id: whichever is higher
    assert [e.outbox_id for e in journal.outbox.for_device("d", None, 0, floor=4)] == [5, 6]
    assert [e.outbox_id for e in journal.outbox.for_device("d", None, 5, floor=2)] == [6]
    assert [e.outbox_id for e in journal.outbox.for_device("d", ["a", "b"], 2, 0)] == [4, 5]
    # limit
    assert [e.outbox_id for e in journal.outbox.for_device("d", None, 0, 0, limit=2)] == [1, 2]
    assert [e.outbox_id for e in journal.outbox.for_device("d", ["b", "a"], 0, 0, limit=3)] == [
        1,
        2,
        4,
    ]
    # acknowledged entries are not sent again, to this device only
    assert journal.outbox.ack("d", [1, 3, 4], 200) == 3
    assert [e.outbox_id for e in journal.outbox.for_device("d", None, 0, 0)] == [2, 5, 6]
    assert [e.outbox_id for e in journal.outbox.for_device("d", ["a", "c"], 0, 0)] == [6]
    assert [e.outbox_id for e in journal.outbox.for_device("other", ["a"], 0, 0)] == [1, 4]


def test_for_device_with_many_channels(journal: Journal) -> None:
    ids = _fill(journal)
    many = [f"x{i}" for i in range(100)] + ["c", "a"]  # more than the merge handles
    assert [e.outbox_id for e in journal.outbox.for_device("d", many, 0, 0)] == [1, 3, 4, 6]
    journal.outbox.ack("d", ids[:1], 1)
    assert [e.outbox_id for e in journal.outbox.for_device("d", many, 0, 0, limit=2)] == [3, 4]


def test_for_device_uses_indexes(journal: Journal) -> None:
    """The query plans: an index range in id order for each shape, the acks by key."""
    from palyrad.journal import outbox

    def plan(sql: str, args: list[object]) -> str:
        return " | ".join(r[3] for r in journal.db.execute("EXPLAIN QUERY PLAN " + sql, args))

    every = plan(outbox._ALL_CHANNELS, [0, "d", 10])
    assert "SEARCH o USING INTEGER PRIMARY KEY (rowid>?)" in every
    assert "SEARCH a USING PRIMARY KEY (device_id=? AND outbox_id=?)" in every
    assert "TEMP B-TREE" not in every
    one = plan(outbox._ONE_CHANNEL, ["a", 0, "d", 10])
    assert "SEARCH o USING INDEX outbox_by_channel (channel=? AND outbox_id>?)" in one
    assert "SEARCH a USING PRIMARY KEY (device_id=? AND outbox_id=?)" in one
    assert "TEMP B-TREE" not in one and "SCAN" not in one
    # several channels: each one's index range (at most `limit` rows each), merged
    two = plan(outbox._merged(2), ["a", 0, "d", 10, "b", 0, "d", 10, 10])
    assert "MERGE (UNION ALL)" in two
    assert two.count("SEARCH o USING INDEX outbox_by_channel (channel=? AND outbox_id>?)") == 2
    assert two.count("SEARCH a USING PRIMARY KEY (device_id=? AND outbox_id=?)") == 2


def test_ack_ignores_unknown_ids_and_repeats(journal: Journal) -> None:
    ids = _fill(journal)
    assert journal.outbox.ack("d", [], 1) == 0
    assert journal.outbox.ack("d", [ids[0], 999, ids[1], ids[1]], 10) == 2
    assert journal.outbox.ack("d", [ids[0], ids[2]], 11) == 1
    assert [e.outbox_id for e in journal.outbox.for_device("d", None, 0, 0)] == ids[3:]
    # an acknowledged entry is no longer pending (no device has it left to acknowledge)
    assert [i.outbox_id for i in journal.outbox.pending()] == ids[3:]
    with journal.write() as db:
        assert db.execute("SELECT COUNT(*) FROM delivery_acks").fetchone()[0] == 3


def test_outbox_prune_drops_old_entries_and_their_acks(journal: Journal) -> None:
    ids = _fill(journal)  # created 100..105
    journal.outbox.ack("d", ids, 200)
    journal.outbox.ack("e", ids[4:], 200)
    assert journal.outbox.prune(103) == 3
    assert [i.outbox_id for i in journal.outbox.pending()] == []
    assert [e.outbox_id for e in journal.outbox.for_device("x", None, 0, 0)] == ids[3:]
    with journal.write() as db:
        acks = db.execute("SELECT device_id, outbox_id FROM delivery_acks ORDER BY 1, 2")
        assert [tuple(r) for r in acks] == [
            ("d", 4),
            ("d", 5),
            ("d", 6),
            ("e", 5),
            ("e", 6),
        ]
    assert journal.outbox.prune(103) == 0
    # ids are never reused after a prune: a new entry is still above every old floor
    journal.outbox.prune(10_000)
    assert journal.outbox.max_id() == 0
    assert journal.outbox.add("a", "r", "run", "{}", 10_001) == 7


@pytest.mark.parametrize(
    "record",
    [
        Delivery(1, "c", "r", "run", "{}", 1),
        Device("d", "n", "active", "pk", "c", 1, 1, 0),
        DeviceWatch("s", "d", ("*",), 1, 1),
        PairingWindow("w", "pin", None, False, None, 1, 2),
        PairingRequest("q", "w", "d", "n", "pin", "p", "pk", b"", "s", 1, 2),
    ],
)
def test_new_records_are_frozen_and_slotted(record: object) -> None:
    assert not hasattr(record, "__dict__")
    field = next(iter(record.__dataclass_fields__))  # type: ignore[attr-defined]
    with pytest.raises(AttributeError):
        setattr(record, field, None)
