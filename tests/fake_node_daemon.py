"""A stand-in for palyrad's node_rpc listeners, for testing palyra-node on its own.

It speaks the real wire contract (palyra_node.proto) over real TLS and mTLS with a real CA
(``certs``) and the real handshake crypto (``palyra_proto.pairing``), and keeps its state in
memory: one pairing window, pending requests, a device registry, an outbox. The operator's
side is plain methods (``open_pin_window``, ``approve``, ``revoke``, ``deliver``...).

It is deliberately small and strict where the node must be checked (the node MAC before
anything, await secrets, superseded-certificate renewal revokes, revoked streams end), and
makes no attempt at the daemon's other duties. The end-to-end tests against the real daemon
are in test_pairing_e2e.py.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
import orjson

from certs.authority import (
    CertificateAuthority,
    create_authority,
    issue_device_certificate,
    issue_server_certificate,
)
from certs.csr import check_csr
from certs.errors import CertError
from certs.fingerprints import cert_sha256, cert_sha256_pem, spki_sha256
from certs.keys import cert_der, cert_pem, generate_private_key, private_key_pem
from palyra_proto import palyra_node_pb2 as pb
from palyra_proto import palyra_node_pb2_grpc as pbg
from palyra_proto.pairing import (
    ConfirmationKeys,
    DaemonPake,
    PairUri,
    PakeError,
    daemon_mac,
    generate_pin,
    macs_equal,
    new_token,
    node_mac,
    secret_sha256,
    transcript,
)
from routines.timefmt import format_rfc3339, now_ms


@dataclass
class Request:
    request_id: str
    name: str
    public_key: Any
    await_secret_sha256: str
    state: int = pb.AwaitReply.PENDING
    device_id: str = ""
    cert_der: bytes = b""


@dataclass
class Device:
    device_id: str
    name: str
    public_key: Any
    current_sha: str
    previous_sha: str = ""
    revoked: bool = False
    renewals: int = 0
    watching: list[tuple[str, ...]] = field(default_factory=list)


@dataclass
class Window:
    window_id: str
    method: str
    pin: str = ""
    token: str = ""
    expires_ms: int = 0
    auto_approve: bool = False
    open: bool = True
    handshake: tuple[str, bytes, bytes, ConfirmationKeys] | None = None
    failed: int = 0


class FakeDaemon:
    """The two listeners on 127.0.0.1 (random ports); ``close()`` stops them."""

    def __init__(
        self, *, device_ttl_s: int = 3600, names: tuple[str, ...] = ("localhost", "127.0.0.1")
    ) -> None:
        now = now_ms()
        self.ca: CertificateAuthority = create_authority(now)
        self.server_key = generate_private_key()
        self.server_cert = issue_server_certificate(
            self.ca, self.server_key.public_key(), list(names), now
        )
        self.device_ttl_s = device_ttl_s
        self.lock = threading.Condition()
        self.window: Window | None = None
        self.requests: dict[str, Request] = {}
        self.devices: dict[str, Device] = {}
        self.outbox: list[pb.Delivery] = []
        self.acked: dict[str, set[int]] = {}
        self.events: list[pb.SystemEvent] = []
        self.calls: list[str] = []
        self.routines: dict[str, bool] = {"backup": True}
        self.tamper_daemon_mac = False
        self.approve_backdate_ms = 0
        chain = cert_pem(self.server_cert) + cert_pem(self.ca.cert)
        key_pem = private_key_pem(self.server_key)

        self.pairing_server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        pbg.add_PairingServicer_to_server(_Pairing(self), self.pairing_server)
        self.pairing_port = self.pairing_server.add_secure_port(
            "127.0.0.1:0", grpc.ssl_server_credentials([(key_pem, chain)])
        )
        self._node_credentials = grpc.ssl_server_credentials(
            [(key_pem, chain)],
            root_certificates=cert_pem(self.ca.cert),
            require_client_auth=True,
        )
        self.node_server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
        pbg.add_NodeServicer_to_server(_Node(self), self.node_server)
        self.node_port = self.node_server.add_secure_port("127.0.0.1:0", self._node_credentials)
        self.pairing_server.start()
        self.node_server.start()

    def close(self) -> None:
        self.pairing_server.stop(0)
        self.node_server.stop(0)

    def stop_node_listener(self) -> None:
        self.node_server.stop(0).wait()

    def start_node_listener(self) -> None:
        """A new node listener on the same port (a daemon restart, as the node sees it)."""
        self.node_server = grpc.server(futures.ThreadPoolExecutor(max_workers=16))
        pbg.add_NodeServicer_to_server(_Node(self), self.node_server)
        port = self.node_server.add_secure_port(
            f"127.0.0.1:{self.node_port}", self._node_credentials
        )
        assert port == self.node_port
        self.node_server.start()

    # the operator ----------------------------------------------------------------------

    def open_pin_window(self, ttl_s: int = 600, auto_approve: bool = False) -> str:
        with self.lock:
            self.window = Window(
                secrets.token_hex(8),
                "pin",
                pin=generate_pin(),
                expires_ms=now_ms() + ttl_s * 1000,
                auto_approve=auto_approve,
            )
            return self.window.pin

    def open_qr_window(
        self, ttl_s: int = 600, auto_approve: bool = False, host: str = "127.0.0.1"
    ) -> str:
        with self.lock:
            token = new_token()
            exp = now_ms() + ttl_s * 1000
            self.window = Window(
                secrets.token_hex(8), "qr", token=token, expires_ms=exp, auto_approve=auto_approve
            )
            return PairUri(
                host, self.pairing_port, self.ca.spki_sha256, token, exp // 1000
            ).to_uri()

    def pending(self) -> list[Request]:
        with self.lock:
            return [r for r in self.requests.values() if r.state == pb.AwaitReply.PENDING]

    def approve(self, request_id: str, *, backdate_ms: int = 0) -> str:
        """Issue the device's certificate (``backdate_ms`` earlier than now: an aged one)."""
        with self.lock:
            req = self.requests[request_id]
            device_id = "d" + secrets.token_hex(8)
            cert = issue_device_certificate(
                self.ca, req.public_key, device_id, now_ms() - backdate_ms, self.device_ttl_s
            )
            req.device_id, req.cert_der, req.state = device_id, cert_der(cert), pb.AwaitReply.ISSUED
            self.devices[device_id] = Device(device_id, req.name, req.public_key, cert_sha256(cert))
            self.lock.notify_all()
            return device_id

    def reject(self, request_id: str) -> None:
        with self.lock:
            self.requests[request_id].state = pb.AwaitReply.REJECTED
            self.lock.notify_all()

    def expire(self, request_id: str) -> None:
        with self.lock:
            self.requests[request_id].state = pb.AwaitReply.EXPIRED
            self.lock.notify_all()

    def revoke(self, device_id: str) -> None:
        with self.lock:
            self.devices[device_id].revoked = True
            self.lock.notify_all()

    def deliver(self, channel: str, routine_id: str, run: dict[str, Any]) -> int:
        with self.lock:
            delivery_id = len(self.outbox) + 1
            self.outbox.append(
                pb.Delivery(
                    delivery_id=delivery_id,
                    channel=channel,
                    routine_id=routine_id,
                    run_json=orjson.dumps(run).decode(),
                )
            )
            self.lock.notify_all()
            return delivery_id

    def emit_event(self, event: str, payload: Any) -> None:
        with self.lock:
            self.events.append(
                pb.SystemEvent(
                    event=event,
                    payload_json=orjson.dumps(payload).decode(),
                    at=format_rfc3339(now_ms()),
                )
            )
            self.lock.notify_all()

    # the registry ----------------------------------------------------------------------

    def device_of(self, context: grpc.ServicerContext) -> Device:
        """The calling device, checked as SPEC §5 says; aborts the call otherwise."""
        pems = context.auth_context().get("x509_pem_cert") or []
        sha = cert_sha256_pem(pems[0]) if pems else ""
        with self.lock:
            for device in self.devices.values():
                if sha and sha in (device.current_sha, device.previous_sha):
                    if device.revoked:
                        break
                    return device
        context.abort(grpc.StatusCode.PERMISSION_DENIED, "device revoked")
        raise AssertionError("unreachable")


class _Pairing(pbg.PairingServicer):
    def __init__(self, d: FakeDaemon) -> None:
        self.d = d

    def _window(self, method: str, context: grpc.ServicerContext) -> Window:
        w = self.d.window
        if w is None or not w.open or w.method != method or now_ms() >= w.expires_ms:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "the pairing window is closed")
        assert w is not None
        return w

    def _request(self, name: str, public_key: Any, secret_hash: str, w: Window) -> Request:
        req = Request("r" + secrets.token_hex(6), name, public_key, secret_hash)
        self.d.requests[req.request_id] = req
        w.open = False
        return req

    def PinStart(
        self, request: pb.PinStartRequest, context: grpc.ServicerContext
    ) -> pb.PinStartReply:
        with self.d.lock:
            w = self._window("pin", context)
            if w.handshake is not None:
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, "another pairing is in progress")
            pake = DaemonPake(w.pin)
            try:
                keys = pake.finish(request.pake_message)
            except PakeError:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad PAKE message")
            handshake_id = secrets.token_hex(8)
            w.handshake = (handshake_id, request.pake_message, pake.message, keys)
            return pb.PinStartReply(
                handshake_id=handshake_id, window_id=w.window_id, pake_message=pake.message
            )

    def PinConfirm(
        self, request: pb.PinConfirmRequest, context: grpc.ServicerContext
    ) -> pb.PinConfirmReply:
        with self.d.lock:
            w = self._window("pin", context)
            if w.handshake is None or w.handshake[0] != request.handshake_id:
                context.abort(grpc.StatusCode.FAILED_PRECONDITION, "no such handshake")
            assert w.handshake is not None
            _, msg_a, msg_b, keys = w.handshake
            w.handshake = None
            t = transcript(msg_a, msg_b, w.window_id, self.d.ca.spki_sha256, request.csr_der)
            if not macs_equal(request.node_mac, node_mac(keys, t)):
                w.failed += 1
                context.abort(grpc.StatusCode.FAILED_PRECONDITION, "the code did not match")
            try:
                public_key = check_csr(request.csr_der)
            except CertError as exc:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            req = self._request(
                request.device_name, public_key, secret_sha256(keys.await_secret), w
            )
            if w.auto_approve:
                self.d.approve(req.request_id, backdate_ms=self.d.approve_backdate_ms)
            mac = daemon_mac(keys, t, req.request_id)
            if self.d.tamper_daemon_mac:
                mac = bytes([mac[0] ^ 1]) + mac[1:]
            return pb.PinConfirmReply(
                request_id=req.request_id,
                daemon_mac=mac,
                ca_der=cert_der(self.d.ca.cert),
                public_key_sha256=spki_sha256(public_key),
            )

    def TokenPair(
        self, request: pb.TokenPairRequest, context: grpc.ServicerContext
    ) -> pb.TokenPairReply:
        with self.d.lock:
            w = self._window("qr", context)
            if not secrets.compare_digest(request.token, w.token):
                context.abort(grpc.StatusCode.FAILED_PRECONDITION, "the code did not match")
            try:
                public_key = check_csr(request.csr_der)
            except CertError as exc:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            req = self._request(request.device_name, public_key, request.await_secret_sha256, w)
            if w.auto_approve:
                self.d.approve(req.request_id, backdate_ms=self.d.approve_backdate_ms)
            return pb.TokenPairReply(
                request_id=req.request_id, public_key_sha256=spki_sha256(public_key)
            )

    def AwaitCertificate(
        self, request: pb.AwaitRequest, context: grpc.ServicerContext
    ) -> pb.AwaitReply:
        deadline = time.monotonic() + min(request.wait_ms, 5000) / 1000
        with self.d.lock:
            req = self.d.requests.get(request.request_id)
            if req is None:
                context.abort(grpc.StatusCode.NOT_FOUND, "no such pairing request")
            assert req is not None
            if secret_sha256(request.await_secret) != req.await_secret_sha256:
                context.abort(grpc.StatusCode.PERMISSION_DENIED, "wrong await secret")
            while req.state == pb.AwaitReply.PENDING and time.monotonic() < deadline:
                self.d.lock.wait(max(0.0, deadline - time.monotonic()))
            if req.state != pb.AwaitReply.ISSUED:
                return pb.AwaitReply(state=req.state)
            return pb.AwaitReply(
                state=req.state,
                device_id=req.device_id,
                certificate_der=req.cert_der,
                ca_der=cert_der(self.d.ca.cert),
                node_port=self.d.node_port,
                expires_at_unix_ms=0,
            )


class _Node(pbg.NodeServicer):
    def __init__(self, d: FakeDaemon) -> None:
        self.d = d

    def _json(self, value: Any) -> pb.JsonReply:
        return pb.JsonReply(json=orjson.dumps(value).decode())

    def Status(self, request: pb.StatusRequest, context: grpc.ServicerContext) -> pb.JsonReply:
        device = self.d.device_of(context)
        self.d.calls.append("Status")
        return self._json(
            {
                "device_id": device.device_id,
                "cert_expires_at": "2030-01-01T00:00:00Z",
                "daemon": {"running": True, "pid": 42, "started_at": None, "processes": []},
            }
        )

    def ListRoutines(
        self, request: pb.ListRoutinesRequest, context: grpc.ServicerContext
    ) -> pb.JsonReply:
        self.d.device_of(context)
        return self._json(
            {
                "routines": [
                    {
                        "id": rid,
                        "state": "enabled" if on else "disabled",
                        "next_run_at": None,
                        "last_run": None,
                    }
                    for rid, on in self.d.routines.items()
                ]
            }
        )

    def SetRoutineEnabled(
        self, request: pb.SetRoutineEnabledRequest, context: grpc.ServicerContext
    ) -> pb.JsonReply:
        self.d.device_of(context)
        if request.routine_id not in self.d.routines:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no routine {request.routine_id!r}")
        changed = self.d.routines[request.routine_id] != request.enabled
        self.d.routines[request.routine_id] = request.enabled
        return self._json(
            {"id": request.routine_id, "enabled": request.enabled, "changed": changed}
        )

    def RunNow(self, request: pb.RunNowRequest, context: grpc.ServicerContext) -> pb.JsonReply:
        self.d.device_of(context)
        if request.routine_id not in self.d.routines:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no routine {request.routine_id!r}")
        if not self.d.routines[request.routine_id]:
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION, f"routine {request.routine_id!r} is disabled"
            )
        return self._json({"run_id": "01RUN", "status": "queued", "error_kind": None})

    def FireHook(self, request: pb.FireHookRequest, context: grpc.ServicerContext) -> pb.JsonReply:
        self.d.device_of(context)
        return self._json({"hook_id": request.hook_id, "runs": []})

    def Ack(self, request: pb.AckRequest, context: grpc.ServicerContext) -> pb.AckReply:
        device = self.d.device_of(context)
        with self.d.lock:
            acked = self.d.acked.setdefault(device.device_id, set())
            new = set(request.delivery_ids) - acked
            acked.update(new)
        return pb.AckReply(acknowledged=len(new))

    def Watch(
        self, request: pb.WatchRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.WatchMessage]:
        device = self.d.device_of(context)
        channels = tuple(request.channels)
        with self.d.lock:
            device.watching.append(channels)
            sent_events = len(self.d.events)
        try:
            yield pb.WatchMessage(heartbeat=pb.Heartbeat(at_unix_ms=now_ms()))
            sent: set[int] = set()
            while context.is_active():
                out: list[pb.WatchMessage] = []
                with self.d.lock:
                    if device.revoked:
                        context.abort(grpc.StatusCode.PERMISSION_DENIED, "device revoked")
                    acked = self.d.acked.get(device.device_id, set())
                    for d in self.d.outbox:
                        if d.delivery_id in acked or d.delivery_id in sent:
                            continue
                        if channels and d.channel not in channels:
                            continue
                        sent.add(d.delivery_id)
                        out.append(pb.WatchMessage(delivery=d))
                    if request.events:
                        for e in self.d.events[sent_events:]:
                            out.append(pb.WatchMessage(event=e))
                    sent_events = len(self.d.events)
                    if not out:
                        self.d.lock.wait(0.2)
                yield from out
        finally:
            with self.d.lock:
                device.watching.remove(channels)

    def RenewCertificate(
        self, request: pb.RenewRequest, context: grpc.ServicerContext
    ) -> pb.RenewReply:
        device = self.d.device_of(context)
        sha = cert_sha256_pem(context.auth_context()["x509_pem_cert"][0])
        with self.d.lock:
            if sha != device.current_sha:
                device.revoked = True
                context.abort(grpc.StatusCode.PERMISSION_DENIED, "device revoked")
            public_key = check_csr(request.csr_der)
            if spki_sha256(public_key) != spki_sha256(device.public_key):
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "renewal is for the same key only")
            cert = issue_device_certificate(
                self.d.ca, public_key, device.device_id, now_ms(), self.d.device_ttl_s
            )
            device.previous_sha, device.current_sha = device.current_sha, cert_sha256(cert)
            device.renewals += 1
            return pb.RenewReply(certificate_der=cert_der(cert), expires_at_unix_ms=0)
