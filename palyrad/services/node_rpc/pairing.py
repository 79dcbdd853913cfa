"""The pairing listener's service: windows, the PIN handshake slot, requests, issuance.

SPEC §5, as the security review tightened it:

- A window is opened by ``palyra node pair-code`` through node_rpc's request socket
  (``control.py``); a new one ends the previous one. A PIN exists only in this process's
  memory (the journal holds the window, never the PIN); a QR token only as its SHA-256.
- PIN: one handshake at a time. The slot is taken when the daemon answers the node's SPAKE2
  message; from then on the handshake must deliver a valid node MAC, or it is a failed
  attempt — a wrong MAC, ten seconds of silence, sixty seconds in all, or a disconnect (which
  shows as silence). Twenty failures close the window. The daemon's own MAC is sent only
  after the node's verified, so a wrong PIN learns nothing but "wrong".
- QR: the token is consumed atomically on first presentation (a second use of the same URI
  fails, whoever presents it).
- Either way the window then admits no other request. The request waits for the operator
  (``palyra node approve/reject``, which journal the decision and poke us) unless the window
  was opened with ``--auto-approve``, and expires with its window.
- The certificate is issued when the node collects it (``AwaitCertificate``, proving the
  await secret): the daemon copies only the CSR's public key and sets everything else.
"""

from __future__ import annotations

import hmac
import logging
import re
import threading
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

import grpc
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_der_public_key,
)

from certs import CertError, cert_sha256, check_csr, not_after_ms, spki_sha256
from palyra_proto import palyra_node_pb2 as pb
from palyra_proto import palyra_node_pb2_grpc as pb_grpc
from palyra_proto.pairing import (
    ConfirmationKeys,
    DaemonPake,
    PakeError,
    daemon_mac,
    macs_equal,
    node_mac,
    secret_sha256,
    token_sha256,
    transcript,
)
from palyrad.domain.runs import new_ulid
from palyrad.journal import Journal
from palyrad.journal.records import Device, PairingRequest
from palyrad.seams import Clock
from palyrad.services.node_rpc.limits import RateLimiter, peer_host
from palyrad.services.node_rpc.registry import DeviceRegistry
from palyrad.services.node_rpc.tls import ServerTLS

log = logging.getLogger("palyrad.pairing")

SILENCE_MS = 10_000  # a handshake that says nothing for this long frees the slot (a failure)
HANDSHAKE_MS = 60_000  # and one that takes longer than this in all
MAX_FAILURES = 20
MAX_AWAIT_MS = 25_000  # one AwaitCertificate call waits at most this long
MAX_NAME_CHARS = 64
MAX_TOKEN_CHARS = 128

WRONG_CODE = "wrong PIN or code expired"
SLOT_TAKEN = "another pairing handshake is in progress; try again in a few seconds"


@dataclass(slots=True)
class PinWindow:
    """The open PIN window. ``repr`` hides the PIN: it must never reach a log."""

    window_id: str
    pin: str
    expires_ms: int
    auto_approve: bool

    def __repr__(self) -> str:
        return f"PinWindow({self.window_id}, expires_ms={self.expires_ms})"


@dataclass(slots=True)
class Handshake:
    handshake_id: str
    window_id: str
    keys: ConfirmationKeys
    node_message: bytes
    daemon_message: bytes
    peer: str
    started_ms: int
    last_ms: int


def clean_name(name: str) -> str:
    """A device name as the operator will read it: one line of visible text, at most 64
    characters. Controls, format characters (a right-to-left override could make
    ``laptop<RLO>gnp.exe`` read as something else in ``node pending``), line and paragraph
    separators, private-use and surrogate code points are dropped."""
    text = "".join(
        " " if ch in "\t\r\n" or unicodedata.category(ch) in ("Zl", "Zp") else ch
        for ch in name
        if ch in "\t\r\n" or unicodedata.category(ch) not in _HIDDEN
    )
    return " ".join(text.split())[:MAX_NAME_CHARS] or "unnamed"


_HIDDEN = frozenset({"Cc", "Cf", "Co", "Cs", "Cn"})


class PairingService(pb_grpc.PairingServicer):
    """The ``Pairing`` gRPC service, and the in-memory half of the windows."""

    def __init__(
        self,
        journal: Callable[[], Journal],
        clock: Clock,
        tls: ServerTLS,
        registry: DeviceRegistry,
        device_ttl_s: int,
        node_port: Callable[[], int | None],
    ) -> None:
        self._journal = journal
        self._clock = clock
        self._tls = tls
        self._registry = registry
        self._ttl_s = device_ttl_s
        self._node_port = node_port
        self._lock = threading.Lock()
        self._decided = threading.Condition()
        self._window: PinWindow | None = None
        self._slot: Handshake | None = None
        self._issued: dict[str, pb.AwaitReply] = {}
        # Generous enough for a person retyping a PIN; the PAKE itself caps guesses at 20 a
        # window. This bounds the CPU a flood can take (a SPAKE2 step and an ECDSA check each).
        self._limiter = RateLimiter(per_minute=60, burst=30)

    # -- windows (called from the main thread) --------------------------------------------

    def set_pin_window(self, window: PinWindow | None) -> None:
        """A new window (PIN, or ``None`` for a QR one) ends the previous one and any
        handshake in progress (it did not fail: the operator replaced the code)."""
        with self._lock:
            self._window = window
            self._slot = None

    def sweep(self, now_ms: int) -> None:
        """Fail a handshake that went silent or took too long; forget an expired PIN."""
        with self._lock:
            self._sweep_locked(now_ms)
            if self._window is not None and now_ms >= self._window.expires_ms:
                self._window = None

    def notify(self) -> None:
        """Something may have been decided (a poke): wake the waiting AwaitCertificate calls."""
        with self._decided:
            self._decided.notify_all()

    def _failed(self, hs: Handshake, now_ms: int) -> None:
        """Count a failed attempt (under ``_lock``); the 20th closes the window."""
        count = self._journal().pairing.record_failure(
            hs.window_id, hs.peer, now_ms, max_failures=MAX_FAILURES
        )
        log.warning(
            "pairing attempt failed",
            extra={"window_id": hs.window_id, "peer": hs.peer, "failures": count},
        )
        if count >= MAX_FAILURES and self._window is not None:
            if self._window.window_id == hs.window_id:
                self._window = None
            log.warning("pairing window closed after 20 failed attempts")

    def _limit(self, context: grpc.ServicerContext, now_ms: int) -> str:
        peer = peer_host(context.peer())
        if not self._limiter.allow(peer, now_ms):
            context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                "too many pairing attempts from this address; wait a minute",
            )
        return peer

    # -- PIN ------------------------------------------------------------------------------

    def PinStart(
        self, request: pb.PinStartRequest, context: grpc.ServicerContext
    ) -> pb.PinStartReply:
        now = self._clock.now_ms()
        peer = self._limit(context, now)
        with self._lock:
            self._sweep_locked(now)
            window = self._window
            busy = self._slot is not None
        if window is None:
            context.abort(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"{WRONG_CODE} (no PIN pairing window is open; on the daemon: "
                "palyra node pair-code --method pin)",
            )
        if busy:
            context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, SLOT_TAKEN)
        # SPAKE2 is pure Python (~20 ms): computed outside the lock, so issuance and the
        # sweep never wait for it; the slot is taken below only if still free.
        pake = DaemonPake(window.pin)
        try:
            keys = pake.finish(request.pake_message)
        except PakeError:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "malformed PAKE message")
        hs = Handshake(
            new_ulid(now), window.window_id, keys, request.pake_message, pake.message,
            peer, now, now,
        )  # fmt: skip
        with self._lock:
            if self._slot is not None or self._window is not window:
                context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, SLOT_TAKEN)
            self._slot = hs
        return pb.PinStartReply(
            handshake_id=hs.handshake_id, window_id=hs.window_id, pake_message=hs.daemon_message
        )

    def _sweep_locked(self, now_ms: int) -> None:
        """(under ``_lock``) A silent or overlong handshake frees the slot, as a failure."""
        hs = self._slot
        if hs is not None and (
            now_ms - hs.last_ms >= SILENCE_MS or now_ms - hs.started_ms >= HANDSHAKE_MS
        ):
            self._slot = None
            self._failed(hs, now_ms)

    def PinConfirm(
        self, request: pb.PinConfirmRequest, context: grpc.ServicerContext
    ) -> pb.PinConfirmReply:
        now = self._clock.now_ms()
        with self._lock:
            self._sweep_locked(now)
            hs = self._slot
            if hs is None or not hmac.compare_digest(hs.handshake_id, request.handshake_id):
                context.abort(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"{WRONG_CODE} (the handshake timed out or was replaced; start again)",
                )
            self._slot = None  # any answer ends the handshake
            t = transcript(
                hs.node_message,
                hs.daemon_message,
                hs.window_id,
                self._tls.ca_spki_sha256,
                request.csr_der,
            )
            if not macs_equal(request.node_mac, node_mac(hs.keys, t)):
                self._failed(hs, now)
                context.abort(grpc.StatusCode.FAILED_PRECONDITION, WRONG_CODE)
            # The PIN is proven. A bad CSR now is a broken node, not an attacker: refuse it
            # and keep the window (the same PIN may try again).
            public_key = self._check_csr(request.csr_der, context)
            window = self._window
            auto = window is not None and window.window_id == hs.window_id and window.auto_approve
            # The PIN is of no further use, and forgetting it is the safest.
            if window is not None and window.window_id == hs.window_id:
                self._window = None
        journal = self._journal()
        # Using the window and recording its request is one transaction: a crash between
        # the two would leave a window spent on a request that does not exist.
        with journal.transaction():
            if not journal.pairing.use_window(hs.window_id, now):
                context.abort(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"{WRONG_CODE} (the pairing window closed or expired)",
                )
            req = self._new_request(
                journal,
                hs.window_id,
                request.device_name,
                "pin",
                hs.peer,
                public_key,
                secret_sha256(hs.keys.await_secret),
                auto,
                now,
            )
        return pb.PinConfirmReply(
            request_id=req.request_id,
            daemon_mac=daemon_mac(hs.keys, t, req.request_id),
            ca_der=self._tls.ca_der,
            public_key_sha256=req.public_key_sha256,
        )

    # -- QR -------------------------------------------------------------------------------

    def TokenPair(
        self, request: pb.TokenPairRequest, context: grpc.ServicerContext
    ) -> pb.TokenPairReply:
        now = self._clock.now_ms()
        peer = self._limit(context, now)
        if not request.token or len(request.token) > MAX_TOKEN_CHARS:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "malformed pairing token")
        if not re.fullmatch(r"[0-9a-f]{64}", request.await_secret_sha256):
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "await_secret_sha256: 64 hex digits")
        public_key = self._check_csr(request.csr_der, context)
        journal = self._journal()
        with journal.transaction():  # the token is spent only with its request recorded
            window = journal.pairing.consume_token(token_sha256(request.token), now)
            if window is None:
                context.abort(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"{WRONG_CODE} (the code was already used, expired or replaced)",
                )
            req = self._new_request(
                journal,
                window.window_id,
                request.device_name,
                "qr",
                peer,
                public_key,
                request.await_secret_sha256,
                window.auto_approve,
                now,
            )
        return pb.TokenPairReply(request_id=req.request_id, public_key_sha256=req.public_key_sha256)

    # -- both -----------------------------------------------------------------------------

    @staticmethod
    def _check_csr(der: bytes, context: grpc.ServicerContext) -> ec.EllipticCurvePublicKey:
        try:
            return check_csr(der)
        except CertError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"bad CSR: {exc}")

    def _new_request(
        self,
        journal: Journal,
        window_id: str,
        name: str,
        method: str,
        peer: str,
        public_key: ec.EllipticCurvePublicKey,
        await_sha256: str,
        auto_approve: bool,
        now: int,
    ) -> PairingRequest:
        window = journal.pairing.get_window(window_id)
        expires = window.expires_ms if window is not None else now
        der = public_key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
        req = PairingRequest(
            request_id=new_ulid(now),
            window_id=window_id,
            device_id=new_ulid(now),
            device_name=clean_name(name),
            method=method,
            peer=peer,
            public_key_sha256=spki_sha256(public_key),
            public_key_der=der,
            await_secret_sha256=await_sha256,
            requested_ms=now,
            expires_ms=expires,
            state="approved" if auto_approve else "pending",
            decided_ms=now if auto_approve else None,
        )
        journal.pairing.add_request(req)
        log.info(
            "pairing request",
            extra={
                "request_id": req.request_id,
                "method": method,
                "peer": peer,
                "public_key_sha256": req.public_key_sha256[:16],
                "auto_approved": auto_approve,
            },
        )
        return req

    def AwaitCertificate(
        self, request: pb.AwaitRequest, context: grpc.ServicerContext
    ) -> pb.AwaitReply:
        now = self._clock.now_ms()
        journal = self._journal()
        req = journal.pairing.get_request(request.request_id)
        if req is None or not hmac.compare_digest(
            secret_sha256(request.await_secret), req.await_secret_sha256
        ):
            context.abort(grpc.StatusCode.NOT_FOUND, "unknown pairing request")
        deadline = now + min(int(request.wait_ms), MAX_AWAIT_MS)
        while True:
            reply = self._outcome(journal, req.request_id, now)
            if reply is not None:
                return reply
            if now >= deadline or not context.is_active():
                return pb.AwaitReply(state=pb.AwaitReply.PENDING)
            with self._decided:
                self._decided.wait(min(1.0, (deadline - now) / 1000))
            now = self._clock.now_ms()

    def _outcome(self, journal: Journal, request_id: str, now: int) -> pb.AwaitReply | None:
        """The answer for a request in its current state; None while it is pending."""
        req = journal.pairing.get_request(request_id)
        if req is None:
            return pb.AwaitReply(state=pb.AwaitReply.EXPIRED)
        if req.state == "rejected":
            return pb.AwaitReply(state=pb.AwaitReply.REJECTED)
        if req.state == "approved" or (req.state == "issued" and now < req.expires_ms):
            return self._issue(journal, req, now)
        if req.state == "issued":
            return self._issued.get(request_id) or pb.AwaitReply(state=pb.AwaitReply.EXPIRED)
        if now >= req.expires_ms:
            return pb.AwaitReply(state=pb.AwaitReply.EXPIRED)
        return None

    def _issue(self, journal: Journal, req: PairingRequest, now: int) -> pb.AwaitReply:
        """Issue the certificate of an approved request (or, after a crash lost the reply of
        an issued one, a fresh certificate for the same key: the node proved the await
        secret, and the undelivered certificate is superseded)."""
        with self._lock:  # one issuance per request, even with two waiting calls
            cached = self._issued.get(req.request_id)
            if cached is not None:
                return cached
            public_key = load_der_public_key(req.public_key_der)
            der = self._tls.issue_device(
                public_key,  # type: ignore[arg-type]
                req.device_id,
                self._ttl_s,
                now,
            )
            expires = not_after_ms(x509.load_der_x509_certificate(der))
            fingerprint = cert_sha256(der)
            if req.state == "issued":
                device = journal.devices.get(req.device_id)
                if device is None or not journal.devices.renew(
                    req.device_id,
                    expected_cert_sha256=device.cert_sha256,
                    new_cert_sha256=fingerprint,
                    new_expires_ms=expires,
                    now_ms=now,
                    grace_ms=0,
                ):
                    return pb.AwaitReply(state=pb.AwaitReply.EXPIRED)  # removed or revoked
            else:
                device = Device(
                    device_id=req.device_id,
                    name=req.device_name,
                    state="active",
                    public_key_sha256=req.public_key_sha256,
                    cert_sha256=fingerprint,
                    cert_expires_ms=expires,
                    paired_ms=now,
                    delivery_floor=journal.outbox.max_id(),
                )
                if not journal.pairing.mark_issued(req.request_id, device, now):
                    return pb.AwaitReply(state=pb.AwaitReply.EXPIRED)
            self._registry.refresh(journal, force=True)
            reply = pb.AwaitReply(
                state=pb.AwaitReply.ISSUED,
                device_id=req.device_id,
                certificate_der=der,
                ca_der=self._tls.ca_der,
                node_port=self._node_port() or 0,
                expires_at_unix_ms=expires,
            )
            self._issued[req.request_id] = reply
            log.info(
                "device paired", extra={"device_id": req.device_id, "device_name": req.device_name}
            )
            return reply
