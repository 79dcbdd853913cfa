"""Regression tests from the hostile review of issue 10 (node pairing and the node RPC).

Each test marked ``xfail(strict=True)`` reproduces a confirmed defect: it fails today and
will XPASS (and so fail the suite) once the defect is fixed; then drop the marker.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import orjson
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from certs.csr import build_csr
from certs.fingerprints import spki_sha256
from palyra_proto import palyra_node_pb2 as pb
from palyra_proto.pairing import NodePake, node_mac, transcript
from palyra_proto.palyra_node_pb2_grpc import NodeStub, PairingStub
from tests.daemon_harness import BIN, Daemon, palyra, started_with_listeners, wait_until

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with started_with_listeners(tmp_path_factory.mktemp("review") / "home") as d:
        yield d


def _ca_pem(d: Daemon) -> bytes:
    return (d.home.certs_dir / "ca.crt").read_bytes()


def _pair_raw(d: Daemon) -> tuple[ec.EllipticCurvePrivateKey, pb.AwaitReply]:
    """An auto-approved PIN pairing done with the stubs (no palyra-node)."""
    code = orjson.loads(palyra(d.root, "node", "pair-code", "--auto-approve", "--json").stdout)[
        "code"
    ]
    ca = _ca_pem(d)
    channel = grpc.secure_channel(
        d.status().endpoints["pairing"] or "",
        grpc.ssl_channel_credentials(root_certificates=ca),
    )
    stub = PairingStub(channel)
    key = ec.generate_private_key(ec.SECP256R1())
    csr = build_csr(key, "review")
    pake = NodePake(code)
    start = stub.PinStart(pb.PinStartRequest(pake_message=pake.message), timeout=10)
    keys = pake.finish(start.pake_message)
    ca_spki = spki_sha256(x509.load_pem_x509_certificate(ca))
    t = transcript(pake.message, start.pake_message, start.window_id, ca_spki, csr)
    conf = stub.PinConfirm(
        pb.PinConfirmRequest(
            handshake_id=start.handshake_id, device_name="review", csr_der=csr,
            node_mac=node_mac(keys, t),
        ),
        timeout=10,
    )  # fmt: skip
    reply = stub.AwaitCertificate(
        pb.AwaitRequest(request_id=conf.request_id, await_secret=keys.await_secret, wait_ms=5000),
        timeout=30,
    )
    assert reply.state == pb.AwaitReply.ISSUED
    channel.close()
    return key, reply


def _node_stub(d: Daemon, key: ec.EllipticCurvePrivateKey, cert_der: bytes) -> NodeStub:
    creds = grpc.ssl_channel_credentials(
        root_certificates=_ca_pem(d),
        private_key=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        certificate_chain=x509.load_der_x509_certificate(cert_der).public_bytes(
            serialization.Encoding.PEM
        ),
    )
    return NodeStub(grpc.secure_channel(d.status().endpoints["node"] or "", creds))


def test_retrying_a_renewal_whose_reply_was_lost_does_not_revoke(daemon: Daemon) -> None:
    key, reply = _pair_raw(daemon)
    stub = _node_stub(daemon, key, reply.certificate_der)
    stub.RenewCertificate(pb.RenewRequest(csr_der=build_csr(key, "review")), timeout=10)
    # The reply above is "lost": the node still holds only its first certificate, and the
    # new one has never been presented by anyone. Its retry must not look like theft.
    retry = stub.RenewCertificate(pb.RenewRequest(csr_der=build_csr(key, "review")), timeout=10)
    device = daemon.journal.devices.get(reply.device_id)
    assert device is not None and device.state == "active"
    # the retried renewal's certificate works; once it has been used, a renewal from the
    # first certificate is a copy's, and revokes the device
    fresh = _node_stub(daemon, key, retry.certificate_der)
    assert fresh.Ping(pb.PingRequest(payload=b"x"), timeout=10).device_id == reply.device_id
    with pytest.raises(grpc.RpcError) as exc:
        stub.RenewCertificate(pb.RenewRequest(csr_der=build_csr(key, "review")), timeout=10)
    assert exc.value.code() == grpc.StatusCode.PERMISSION_DENIED  # type: ignore[attr-defined]
    device = daemon.journal.devices.get(reply.device_id)
    assert device is not None and device.state == "revoked"


def _pair_node(d: Daemon, node_home: Path) -> None:
    out = palyra(d.root, "node", "pair-code", "--method", "qr", "--auto-approve", "--json")
    proc = subprocess.run(
        [str(BIN / "palyra-node"), "--home", str(node_home), "pair", "--uri", "-", "--json"],
        input=orjson.loads(out.stdout)["uri"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr


def test_a_world_writable_node_home_is_refused_by_every_command(
    daemon: Daemon, tmp_path: Path
) -> None:
    node_home = tmp_path / "node"
    _pair_node(daemon, node_home)
    os.chmod(node_home, 0o777)
    try:
        proc = subprocess.run(
            [str(BIN / "palyra-node"), "--home", str(node_home), "status", "--json"],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        os.chmod(node_home, 0o700)
    assert proc.returncode == 1 and "writable by other users" in proc.stderr


def test_node_rpc_restart_keeps_the_node_port(daemon: Daemon) -> None:
    before = daemon.status().endpoints["node"]
    st = daemon.status().process("node_rpc")
    assert st is not None and st.pid
    os.kill(st.pid, signal.SIGKILL)
    wait_until(
        lambda: (
            (p := daemon.status().process("node_rpc")) is not None
            and p.pid != st.pid
            and daemon.status().endpoints["node"]
        ),
        timeout=30,
    )
    assert daemon.status().endpoints["node"] == before


def test_four_watch_streams_per_device_and_revocation_closes_them(daemon: Daemon) -> None:
    """(Passes today: kept as a guard.) A 5th stream is refused; revoke ends the 4 at once."""
    key, reply = _pair_raw(daemon)
    streams = []
    for _ in range(4):
        s = _node_stub(daemon, key, reply.certificate_der).Watch(pb.WatchRequest())
        next(s)
        streams.append(s)
    with pytest.raises(grpc.RpcError) as info:
        next(_node_stub(daemon, key, reply.certificate_der).Watch(pb.WatchRequest()))
    assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    ended: list[grpc.StatusCode] = []

    def drain(s: object) -> None:
        try:
            for _ in s:  # type: ignore[attr-defined]
                pass
        except grpc.RpcError as exc:
            ended.append(exc.code())

    threads = [threading.Thread(target=drain, args=(s,), daemon=True) for s in streams]
    for th in threads:
        th.start()
    palyra(daemon.root, "node", "revoke", reply.device_id)
    t0 = time.monotonic()
    wait_until(lambda: len(ended) == 4 or None, timeout=5)
    assert time.monotonic() - t0 < 1.5
    assert set(ended) == {grpc.StatusCode.PERMISSION_DENIED}


def test_key_file_modes(daemon: Daemon) -> None:
    for name in ("ca.key", "server.key"):
        assert stat.S_IMODE((daemon.home.certs_dir / name).stat().st_mode) == 0o600
