"""The pairing listener's rules with time as a parameter (SPEC §5): a real gRPC server on
loopback with the daemon's real TLS and a real journal, driven by a ManualClock, so the
10 s silence, the 60 s handshake, window expiry and the 20-failure cap take milliseconds.

(The whole flow through real ``palyra-node`` processes and a real daemon is in
``test_pairing_e2e.py``; this file pins the timing rules and the server's state machine.)
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from cryptography import x509

from certs import build_csr, cert_pem, generate_private_key, spki_sha256
from certs.verify import verify_device_certificate
from palyra_proto import palyra_node_pb2 as pb
from palyra_proto import palyra_node_pb2_grpc as pb_grpc
from palyra_proto.pairing import (
    ConfirmationKeys,
    NodePake,
    daemon_mac,
    macs_equal,
    new_token,
    node_mac,
    secret_sha256,
    token_sha256,
    transcript,
)
from palyrad.journal import Journal
from palyrad.journal.records import PairingWindow
from palyrad.runtime.clock import ManualClock
from palyrad.services.node_rpc.limits import RateLimiter, peer_host
from palyrad.services.node_rpc.pairing import MAX_FAILURES, PairingService, PinWindow
from palyrad.services.node_rpc.registry import DeviceRegistry
from palyrad.services.node_rpc.tls import ServerTLS

# TLS checks validity against the real clock: the rig's manual clock starts at real time.
T0 = time.time_ns() // 1_000_000
PIN = "482913"
pytestmark = pytest.mark.timeout(60)


@dataclass
class Rig:
    clock: ManualClock
    journal: Journal
    service: PairingService
    stub: pb_grpc.PairingStub
    tls: ServerTLS

    def open_pin(self, ttl_ms: int = 600_000, auto: bool = True) -> str:
        now = self.clock.now_ms()
        wid = f"w{now}-{os.urandom(4).hex()}"
        self.journal.pairing.open_window(
            PairingWindow(wid, "pin", None, auto, "127.0.0.1", now, now + ttl_ms), now
        )
        self.service.set_pin_window(PinWindow(wid, PIN, now + ttl_ms, auto))
        return wid

    def open_qr(self, auto: bool = True) -> str:
        now = self.clock.now_ms()
        token = new_token()
        self.journal.pairing.open_window(
            PairingWindow(
                f"q{now}-{os.urandom(4).hex()}",
                "qr",
                token_sha256(token),
                auto,
                "127.0.0.1",
                now,
                now + 600_000,
            ),
            now,
        )
        self.service.set_pin_window(None)
        return token

    def window(self, wid: str) -> PairingWindow:
        w = self.journal.pairing.get_window(wid)
        assert w is not None
        return w


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    clock = ManualClock(T0)
    journal = Journal(tmp_path / "journal.sqlite3")
    tls = ServerTLS(tmp_path / "certs", ["localhost", "127.0.0.1"], T0)
    registry = DeviceRegistry()
    # each gRPC worker thread gets its own connection, as in the daemon
    import threading

    local = threading.local()

    def journals() -> Journal:
        if not hasattr(local, "j"):
            local.j = Journal(tmp_path / "journal.sqlite3")
        return local.j  # type: ignore[no-any-return]

    service = PairingService(journals, clock, tls, registry, 3600, lambda: 7142)
    server = grpc.server(ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_PairingServicer_to_server(service, server)
    port = server.add_secure_port("127.0.0.1:0", tls.credentials(client_auth=False))
    server.start()
    channel = grpc.secure_channel(
        f"127.0.0.1:{port}", grpc.ssl_channel_credentials(root_certificates=tls.pki.ca_pem())
    )
    try:
        yield Rig(clock, journal, service, pb_grpc.PairingStub(channel), tls)
    finally:
        channel.close()
        server.stop(0).wait()
        journal.close()


def _code(exc: pytest.ExceptionInfo[grpc.RpcError]) -> grpc.StatusCode:
    return exc.value.code()  # type: ignore[no-any-return, attr-defined]


def _start(rig: Rig, pin: str = PIN) -> tuple[NodePake, pb.PinStartReply]:
    pake = NodePake(pin)
    return pake, rig.stub.PinStart(pb.PinStartRequest(pake_message=pake.message), timeout=10)


def _confirm(
    rig: Rig, pake: NodePake, start: pb.PinStartReply, csr: bytes
) -> tuple[pb.PinConfirmReply, ConfirmationKeys]:
    keys = pake.finish(start.pake_message)
    t = transcript(pake.message, start.pake_message, start.window_id, rig.tls.ca_spki_sha256, csr)
    reply: pb.PinConfirmReply = rig.stub.PinConfirm(
        pb.PinConfirmRequest(
            handshake_id=start.handshake_id,
            device_name="laptop",
            csr_der=csr,
            node_mac=node_mac(keys, t),
        ),
        timeout=10,
    )
    assert macs_equal(reply.daemon_mac, daemon_mac(keys, t, reply.request_id))
    return reply, keys


def test_right_pin_pairs_and_the_window_admits_nothing_more(rig: Rig) -> None:
    wid = rig.open_pin()
    key = generate_private_key()
    csr = build_csr(key, "laptop")
    pake, start = _start(rig)
    assert start.window_id == wid
    reply, keys = _confirm(rig, pake, start, csr)
    assert reply.public_key_sha256 == spki_sha256(key)
    assert rig.window(wid).close_reason == "used"
    got = rig.stub.AwaitCertificate(
        pb.AwaitRequest(request_id=reply.request_id, await_secret=keys.await_secret, wait_ms=0)
    )
    assert got.state == pb.AwaitReply.ISSUED
    cert = x509.load_der_x509_certificate(got.certificate_der)
    assert verify_device_certificate(cert, rig.tls.pki.ca.cert, key, T0) == got.device_id
    # the PIN is forgotten once proven: the same PIN opens nothing any more
    with pytest.raises(grpc.RpcError) as exc:
        _start(rig)
    assert _code(exc) == grpc.StatusCode.FAILED_PRECONDITION


def test_one_handshake_at_a_time_and_ten_seconds_of_silence_is_a_failure(rig: Rig) -> None:
    wid = rig.open_pin()
    pake, start = _start(rig)
    with pytest.raises(grpc.RpcError) as exc:
        _start(rig)  # the slot is taken
    assert _code(exc) == grpc.StatusCode.RESOURCE_EXHAUSTED
    rig.clock.advance(9_999)
    rig.service.sweep(rig.clock.now_ms())
    assert rig.window(wid).failures == 0
    rig.clock.advance(1)
    rig.service.sweep(rig.clock.now_ms())  # silent for 10 s: freed, and counted
    assert rig.window(wid).failures == 1
    assert rig.window(wid).failure_peers == ("127.0.0.1",)
    with pytest.raises(grpc.RpcError) as exc:
        _confirm(rig, pake, start, build_csr(generate_private_key(), "late"))
    assert _code(exc) == grpc.StatusCode.FAILED_PRECONDITION
    _start(rig)  # the slot is free again


def test_wrong_pins_are_counted_and_twenty_close_the_window(rig: Rig) -> None:
    wid = rig.open_pin()
    csr = build_csr(generate_private_key(), "guesser")
    for i in range(MAX_FAILURES):
        pake, start = _start(rig, pin=f"{100000 + i * 7:06d}")
        with pytest.raises(grpc.RpcError) as exc:
            _confirm(rig, pake, start, csr)
        assert _code(exc) == grpc.StatusCode.FAILED_PRECONDITION
        assert "wrong PIN or code expired" in str(exc.value.details())  # type: ignore[attr-defined]
        rig.clock.advance(100)
    w = rig.window(wid)
    assert (w.failures, w.close_reason) == (MAX_FAILURES, "failures")
    with pytest.raises(grpc.RpcError) as exc:
        _start(rig)  # even the right PIN: the window is closed
    assert _code(exc) == grpc.StatusCode.FAILED_PRECONDITION
    assert rig.journal.pairing.pending_requests(rig.clock.now_ms()) == []


def test_a_handshake_longer_than_sixty_seconds_fails_even_if_not_silent(rig: Rig) -> None:
    wid = rig.open_pin()
    _start(rig)
    for _ in range(7):  # keep "talking" (last_ms is only moved by messages; none here)
        rig.clock.advance(9_000)
        rig.service.sweep(rig.clock.now_ms())
    assert rig.window(wid).failures == 1


def test_an_expired_window_refuses_and_a_pending_request_expires_with_it(rig: Rig) -> None:
    rig.open_pin(ttl_ms=60_000, auto=False)
    pake, start = _start(rig)
    reply, keys = _confirm(rig, pake, start, build_csr(generate_private_key(), "x"))
    ask = pb.AwaitRequest(request_id=reply.request_id, await_secret=keys.await_secret, wait_ms=0)
    assert rig.stub.AwaitCertificate(ask).state == pb.AwaitReply.PENDING
    rig.clock.advance(60_000)
    assert rig.stub.AwaitCertificate(ask).state == pb.AwaitReply.EXPIRED
    assert not rig.journal.pairing.decide_request(reply.request_id, True, rig.clock.now_ms())
    rig.open_pin(ttl_ms=30_000)
    rig.clock.advance(30_000)
    rig.service.sweep(rig.clock.now_ms())
    with pytest.raises(grpc.RpcError) as exc:
        _start(rig)
    assert _code(exc) == grpc.StatusCode.FAILED_PRECONDITION


def test_approval_and_rejection_reach_a_waiting_node(rig: Rig) -> None:
    for approve in (True, False):
        token = rig.open_qr(auto=False)
        secret = os.urandom(32)
        reply = rig.stub.TokenPair(
            pb.TokenPairRequest(
                token=token,
                device_name="phone",
                csr_der=build_csr(generate_private_key(), "phone"),
                await_secret_sha256=secret_sha256(secret),
            )
        )
        ask = pb.AwaitRequest(request_id=reply.request_id, await_secret=secret, wait_ms=0)
        assert rig.stub.AwaitCertificate(ask).state == pb.AwaitReply.PENDING
        with pytest.raises(grpc.RpcError) as exc:  # the wrong secret learns nothing
            rig.stub.AwaitCertificate(
                pb.AwaitRequest(request_id=reply.request_id, await_secret=b"x" * 32)
            )
        assert _code(exc) == grpc.StatusCode.NOT_FOUND
        assert rig.journal.pairing.decide_request(reply.request_id, approve, rig.clock.now_ms())
        rig.service.notify()
        state = rig.stub.AwaitCertificate(ask).state
        assert state == (pb.AwaitReply.ISSUED if approve else pb.AwaitReply.REJECTED)


def test_a_qr_token_is_single_use_and_a_bad_csr_burns_nothing(rig: Rig) -> None:
    token = rig.open_qr()
    good = build_csr(generate_private_key(), "phone")
    bad = bytearray(good)
    bad[-5] ^= 0xFF  # the signature no longer verifies
    req = dict(token=token, device_name="p", await_secret_sha256="ab" * 32)
    with pytest.raises(grpc.RpcError) as exc:
        rig.stub.TokenPair(pb.TokenPairRequest(csr_der=bytes(bad), **req))
    assert _code(exc) == grpc.StatusCode.INVALID_ARGUMENT
    rig.stub.TokenPair(pb.TokenPairRequest(csr_der=good, **req))
    with pytest.raises(grpc.RpcError) as exc:
        rig.stub.TokenPair(pb.TokenPairRequest(csr_der=good, **req))
    assert _code(exc) == grpc.StatusCode.FAILED_PRECONDITION


def test_a_lost_certificate_reply_is_reissued_for_the_same_key(rig: Rig) -> None:
    token = rig.open_qr()
    key = generate_private_key()
    secret = os.urandom(32)
    reply = rig.stub.TokenPair(
        pb.TokenPairRequest(
            token=token,
            device_name="p",
            csr_der=build_csr(key, "p"),
            await_secret_sha256=secret_sha256(secret),
        )
    )
    ask = pb.AwaitRequest(request_id=reply.request_id, await_secret=secret, wait_ms=0)
    first = rig.stub.AwaitCertificate(ask)
    rig.service._issued.clear()  # what a restart of node_rpc forgets
    rig.clock.advance(1_000)
    second = rig.stub.AwaitCertificate(ask)
    assert second.state == pb.AwaitReply.ISSUED
    assert second.certificate_der != first.certificate_der
    cert = x509.load_der_x509_certificate(second.certificate_der)
    assert verify_device_certificate(cert, rig.tls.pki.ca.cert, key, rig.clock.now_ms())
    device = rig.journal.devices.get(second.device_id)
    assert device is not None and device.state == "active"
    assert cert_pem(cert)  # and the first certificate is superseded at once (grace 0)
    assert device.prev_valid_until_ms == rig.clock.now_ms()


def test_rate_limiter_per_source() -> None:
    lim = RateLimiter(per_minute=60, burst=3)
    assert [lim.allow("10.0.0.1", 0) for _ in range(4)] == [True, True, True, False]
    assert lim.allow("10.0.0.2", 0)  # another source has its own bucket: no shared budget
    assert not lim.allow("10.0.0.1", 500) and lim.allow("10.0.0.1", 1_000)  # 1/s refills
    # an IPv6 host can use a whole /64: it counts as one source
    assert [lim.allow(f"2001:db8::{i}", 0) for i in range(4)] == [True, True, True, False]
    assert lim.allow("2001:db8:0:1::1", 0)
    assert peer_host("ipv4:10.0.0.2:5555") == "10.0.0.2"
    assert peer_host("ipv6:[::1]:5555") == "::1"


def test_registry_check_known_active_in_time_and_bound_to_its_device(tmp_path: Path) -> None:
    from certs import cert_sha256
    from palyrad.journal.records import Device
    from palyrad.services.node_rpc.registry import DeviceRefused

    tls = ServerTLS(tmp_path / "certs", ["localhost"], T0)
    journal = Journal(tmp_path / "j.sqlite3")
    key = generate_private_key()
    first = tls.issue_device(key.public_key(), "dev1", 3600, T0)
    pem1 = cert_pem(x509.load_der_x509_certificate(first))
    journal.devices.add(
        Device("dev1", "laptop", "active", spki_sha256(key), cert_sha256(first),
               T0 + 3_600_000, T0, 0)
    )  # fmt: skip
    reg = DeviceRegistry()
    reg.refresh(journal)
    ident = reg.identify(pem1, T0)
    assert ident.device_id == "dev1" and reg.is_current(ident)
    # renewed: the old certificate works for the grace period, then not
    second = tls.issue_device(key.public_key(), "dev1", 3600, T0)
    assert journal.devices.renew(
        "dev1", expected_cert_sha256=cert_sha256(first), new_cert_sha256=cert_sha256(second),
        new_expires_ms=T0 + 3_600_000, now_ms=T0, grace_ms=60_000,
    )  # fmt: skip
    assert reg.refresh(journal)
    old = reg.identify(pem1, T0 + 59_999)
    assert not reg.is_current(old)
    with pytest.raises(DeviceRefused, match="superseded"):
        reg.identify(pem1, T0 + 60_000)
    # a certificate of the same CA for another (unknown) device id
    other = tls.issue_device(key.public_key(), "dev2", 3600, T0)
    with pytest.raises(DeviceRefused, match="unknown"):
        reg.identify(cert_pem(x509.load_der_x509_certificate(other)), T0)
    with pytest.raises(DeviceRefused, match="required"):
        reg.identify(b"", T0)
    pem2 = cert_pem(x509.load_der_x509_certificate(second))
    ident2 = reg.identify(pem2, T0)
    journal.devices.revoke("dev1", T0)
    assert reg.still_valid(ident2, T0)  # until the registry sees the new version ...
    assert reg.refresh(journal)
    assert not reg.still_valid(ident2, T0)  # ... which the main loop reads every 200 ms
    with pytest.raises(DeviceRefused, match="revoked"):
        reg.identify(pem2, T0)
    journal.close()


def test_device_names_show_what_they_are() -> None:
    from palyrad.services.node_rpc.pairing import clean_name

    assert clean_name("laptop\u202egnp.exe") == "laptopgnp.exe"  # no right-to-left override
    assert clean_name("a\x00b\u200b\u2028c\n  d") == "ab c d"
    assert clean_name("Zoë’s Mac") == "Zoë’s Mac"
    assert clean_name("\x07\ufeff") == "unnamed"
    assert len(clean_name("x" * 10_000)) == 64


def test_a_token_is_spent_only_with_its_request_recorded(
    rig: Rig, monkeypatch: pytest.MonkeyPatch
) -> None:
    # What a kill -9 between "consume the token" and "record the request" would leave:
    # the failure lands between the two writes, and neither stays.
    from palyrad.journal.pairing import Pairing

    token = rig.open_qr()
    csr = build_csr(generate_private_key(), "phone")
    req = pb.TokenPairRequest(token=token, device_name="p", csr_der=csr,
                              await_secret_sha256="ab" * 32)  # fmt: skip

    def crash(self: Pairing, *_: object) -> None:
        raise RuntimeError("killed between the two writes")

    with monkeypatch.context() as m:
        m.setattr(Pairing, "add_request", crash)
        with pytest.raises(grpc.RpcError) as exc:
            rig.stub.TokenPair(req)
        assert _code(exc) == grpc.StatusCode.UNKNOWN
    assert rig.stub.TokenPair(req).request_id  # the token was not spent
