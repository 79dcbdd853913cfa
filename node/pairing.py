"""The device side of pairing (SPEC §4.4, §5): QR (pinned CA + token) and PIN (SPAKE2).

Both flows generate the key pair here (the private key never leaves the device), send only
a CSR, wait for the operator's decision, check the issued certificate against the CA and
this device's key, and store the identity in one atomic step (``NodeHome.store_identity``).

Trust, in order:

- QR: the URI pins the CA's key. The listener's chain is fetched with a bare TLS handshake
  and checked (``verify_server_chain`` with the pin: chain ends at that CA, leaf has EKU
  serverAuth and names the host) *before* anything is sent; only then is the gRPC channel
  opened, trusting that CA alone.
- PIN: nothing is pinned, so the listener's TLS authenticates nothing. The node takes the CA
  the listener presents, puts its SPKI hash under its MAC, and believes it only once the
  daemon's MAC (over the same transcript and the request id) verifies: a man in the middle
  presenting its own CA makes the daemon refuse the node's MAC, and cannot forge the
  daemon's without the PIN.

Every instant comes from ``ctx.now_ms`` (tests move it); the only real-time sleeps are the
short backoffs while the daemon is briefly unreachable during the wait.
"""

from __future__ import annotations

import secrets
import socket
import ssl
import time
from contextlib import closing
from dataclasses import dataclass
from typing import Any

import grpc
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from certs.authority import not_after_ms
from certs.csr import build_csr
from certs.errors import CertError
from certs.fingerprints import spki_sha256
from certs.keys import cert_pem, generate_private_key
from certs.verify import fetch_presented_chain, verify_device_certificate, verify_server_chain
from node.channel import pairing_channel
from node.context import NodeContext
from node.errors import NodeError, code_refused, daemon_unreachable, invalid, not_verified
from node.home import Identity, NodeInfo
from node.rpc_errors import is_unreachable, status_of
from palyra_proto import palyra_node_pb2 as pb
from palyra_proto.pairing import (
    NodePake,
    PairingFormatError,
    PakeError,
    check_host,
    check_pin,
    check_port,
    daemon_mac,
    format_address,
    macs_equal,
    node_mac,
    parse_pair_uri,
    secret_sha256,
    transcript,
)
from palyra_proto.palyra_node_pb2_grpc import PairingStub
from routines.timefmt import format_rfc3339

CONNECT_TIMEOUT_S = 10.0
DEADLINE_S = 10.0
AWAIT_SLICE_MS = 20_000  # one AwaitCertificate call waits at most this long
MAX_NAME_CHARS = 64
DEFAULT_WAIT_S = 300
NEW_CODE_HINT = "ask the operator for a new code: palyra node pair-code"
REFUSED = "wrong pin or code expired"  # the daemon's wording too (lower-cased to compare)


@dataclass(frozen=True, slots=True)
class PairResult:
    device_id: str
    name: str
    address: str
    cert_expires_at: str

    def to_json(self) -> dict[str, Any]:
        return {
            "device_id": self.device_id,
            "name": self.name,
            "address": self.address,
            "cert_expires_at": self.cert_expires_at,
        }


# -------------------------------------------------------------------------------------
# input


def default_name() -> str:
    """The host name, as printable text of at most 64 characters."""
    name = "".join(c for c in socket.gethostname() if c.isprintable()).strip()
    return name[:MAX_NAME_CHARS].strip() or "palyra-node"


def check_name(name: str) -> str:
    name = name.strip()
    if not name or len(name) > MAX_NAME_CHARS or not name.isprintable():
        raise invalid(
            f"--name must be 1-{MAX_NAME_CHARS} printable characters", "e.g. --name laptop"
        )
    return name


def _format_error(exc: PairingFormatError, hint: str) -> NodeError:
    return invalid(str(exc), hint)


# -------------------------------------------------------------------------------------
# the listener


def _fetch_chain(host: str, port: int) -> list[bytes]:
    address = format_address(host, port)
    try:
        return fetch_presented_chain(host, port, CONNECT_TIMEOUT_S)
    except ssl.SSLError as exc:
        raise NodeError(
            f"no TLS pairing listener at {address}",
            f"{exc.reason or exc}; check the address (palyra node pair-code prints it)",
        ) from exc
    except OSError as exc:
        reason = exc.strerror or str(exc) or type(exc).__name__
        raise daemon_unreachable(address, reason.lower()) from exc


def _dns_names(leaf_der: bytes) -> list[str]:
    """The leaf's DNS SANs, ``localhost`` first (the name every daemon certificate has)."""
    try:
        leaf = x509.load_der_x509_certificate(leaf_der)
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (ValueError, x509.ExtensionNotFound):
        return []
    names = [str(n) for n in san.get_values_for_type(x509.DNSName)]
    return sorted(names, key=lambda n: n.lower() != "localhost")


def unauthenticated_listener(
    chain: list[bytes], host: str, now_ms: int
) -> tuple[x509.Certificate, str | None]:
    """PIN mode: the CA the listener presents and the server name to check in TLS (None when
    ``host`` itself is in the certificate). Nothing here is trusted yet; it only has to be
    well-formed enough to open a channel, and the MACs decide."""
    try:
        return verify_server_chain(chain, host, now_ms, None), None
    except CertError as first:
        for name in _dns_names(chain[0]) if chain else []:
            try:
                return verify_server_chain(chain, name, now_ms, None), name
            except CertError:
                continue
        raise NodeError(
            f"the pairing listener's certificate cannot be used: {first.message}",
            first.hint or "check the address (palyra node pair-code prints it)",
        ) from first


# -------------------------------------------------------------------------------------
# calls


def _refusal_hint(details: str) -> str:
    """The daemon's reason as the hint. It may already read ``wrong PIN or code expired
    (why)``: then only ``why`` is kept, so the line does not say it twice."""
    text = details.strip()
    if text.lower().startswith(REFUSED):
        text = text[len(REFUSED) :].strip()
        if text.startswith("(") and text.endswith(")"):
            text = text[1:-1].strip()
    return text or f"check the PIN, or {NEW_CODE_HINT[0].lower()}{NEW_CODE_HINT[1:]}"


def pairing_rpc_error(exc: grpc.RpcError, address: str) -> NodeError:
    """A failed pairing call as the error to exit with. The daemon does not say whether a
    PIN was wrong or a window closed beyond its one-line message; that line is the hint."""
    code, details = status_of(exc)
    if code in (
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.PERMISSION_DENIED,
        grpc.StatusCode.UNAUTHENTICATED,
    ):
        return code_refused(_refusal_hint(details))
    if code is grpc.StatusCode.RESOURCE_EXHAUSTED:
        return NodeError(
            "another pairing is in progress, or too many attempts",
            details or "wait a few seconds and try again, or ask for a new code",
        )
    if code is grpc.StatusCode.INVALID_ARGUMENT:
        return invalid(details or "the daemon refused the pairing request as malformed")
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return daemon_unreachable(address)
    return NodeError(
        f"the daemon failed the pairing request ({code.name.lower()}"
        + (f": {details})" if details else ")"),
        "see the daemon's log: palyra doctor",
    )


def _call(method: Any, request: Any, address: str, timeout_s: float = DEADLINE_S) -> Any:
    try:
        return method(request, timeout=timeout_s)
    except grpc.RpcError as exc:
        raise pairing_rpc_error(exc, address) from None


SLOT_RETRY_S = 15.0  # another handshake holds the daemon's one slot: it ends within ~10 s


def _pin_start(ctx: NodeContext, stub: PairingStub, pake: NodePake, address: str) -> Any:
    """PinStart, retried for a while when another handshake holds the daemon's one slot
    (someone else pairing, or someone holding it on purpose: each such hold costs them a
    counted failure, so it cannot last)."""
    deadline = time.monotonic() + SLOT_RETRY_S
    noted = False
    while True:
        try:
            return stub.PinStart(pb.PinStartRequest(pake_message=pake.message), timeout=DEADLINE_S)
        except grpc.RpcError as exc:
            code, details = status_of(exc)
            busy = code is grpc.StatusCode.RESOURCE_EXHAUSTED and "in progress" in details
            if not busy or time.monotonic() >= deadline:
                raise pairing_rpc_error(exc, address) from None
            if not noted:
                ctx.note("note: another pairing handshake is in progress; retrying")
                noted = True
            time.sleep(1.0)


def _await_certificate(
    ctx: NodeContext,
    stub: PairingStub,
    address: str,
    request_id: str,
    await_secret: bytes,
    wait_s: int,
    on_pending: Any = None,
) -> pb.AwaitReply:
    """Wait (up to ``wait_s``) for the operator's decision; the ISSUED reply, or NodeError.
    The first call does not wait, so ``on_pending`` (the "waiting for approval" note) is
    called only when there is something to wait for (not for an auto-approved window)."""
    deadline = ctx.now_ms() + wait_s * 1000
    backoff_s = 0.25
    lost = False
    first = True
    while True:
        remaining = max(0, deadline - ctx.now_ms())
        slice_ms = 0 if first else min(remaining, AWAIT_SLICE_MS)
        request = pb.AwaitRequest(
            request_id=request_id, await_secret=await_secret, wait_ms=slice_ms
        )
        started = time.monotonic()
        try:
            reply: pb.AwaitReply = stub.AwaitCertificate(
                request, timeout=slice_ms / 1000 + DEADLINE_S
            )
        except grpc.RpcError as exc:
            if not is_unreachable(exc) or ctx.now_ms() >= deadline:
                raise pairing_rpc_error(exc, address) from None
            if not lost:
                ctx.note(f"note: the daemon at {address} is not answering; still waiting")
                lost = True
            time.sleep(backoff_s)
            backoff_s = min(backoff_s * 2, 5.0)
            continue
        lost, backoff_s = False, 0.25
        if first and reply.state == pb.AwaitReply.PENDING:
            first = False
            if on_pending is not None:
                on_pending()
            continue
        first = False
        if reply.state == pb.AwaitReply.ISSUED:
            return reply
        if reply.state == pb.AwaitReply.REJECTED:
            raise NodeError(
                "pairing request rejected", f"request {request_id} was rejected on the daemon"
            )
        if reply.state == pb.AwaitReply.EXPIRED:
            raise code_refused("the pairing window expired before approval")
        if ctx.now_ms() >= deadline:
            raise NodeError(
                f"pairing request {request_id} was not approved within {wait_s} s",
                "pair again (--wait S waits longer) and approve the new request on the "
                "daemon: palyra node approve REQUEST_ID",
            )
        if time.monotonic() - started < 0.2:
            time.sleep(0.2)  # a daemon that answers PENDING at once must not be polled hot


def _wait_and_store(
    ctx: NodeContext,
    stub: PairingStub,
    *,
    address: str,
    request_id: str,
    await_secret: bytes,
    public_key_sha256: str,
    key: ec.EllipticCurvePrivateKey,
    ca: x509.Certificate,
    name: str,
    host: str,
    tls_name: str | None,
    wait_s: int,
) -> PairResult:
    ours = spki_sha256(key)
    if not secrets.compare_digest(public_key_sha256.lower(), ours):
        raise NodeError(
            "the daemon registered another key than this device's",
            f"someone may be intercepting the connection: reject request {request_id} "
            f"on the daemon (palyra node reject {request_id})",
        )
    reply = _await_certificate(
        ctx,
        stub,
        address,
        request_id,
        await_secret,
        wait_s,
        on_pending=lambda: ctx.note(
            f"note: waiting for approval: request {request_id}, key {ours[:16]}; "
            f"on the daemon: palyra node approve {request_id}"
        ),
    )
    identity = _issued_identity(ctx, reply, key=key, ca=ca, name=name, host=host, tls_name=tls_name)
    with ctx.home.locked():
        ctx.home.store_identity(identity)
    info = identity.info
    return PairResult(
        device_id=info.device_id,
        name=info.name,
        address=info.address,
        cert_expires_at=format_rfc3339(not_after_ms(identity.cert), always_ms=True),
    )


def _issued_identity(
    ctx: NodeContext,
    reply: pb.AwaitReply,
    *,
    key: ec.EllipticCurvePrivateKey,
    ca: x509.Certificate,
    name: str,
    host: str,
    tls_name: str | None,
) -> Identity:
    """Check what the daemon issued: the same CA, a client certificate for this key, the
    device id it announced, a usable node port."""
    hint = "pair again; if it repeats, see palyra doctor on the daemon"
    if reply.ca_der:
        try:
            issued_ca = x509.load_der_x509_certificate(reply.ca_der)
        except ValueError as exc:
            raise NodeError("the daemon sent an unreadable CA certificate", hint) from exc
        if spki_sha256(issued_ca) != spki_sha256(ca):
            raise NodeError("the certificate was issued by another CA than the pinned one", hint)
    try:
        device_id = verify_device_certificate(
            reply.certificate_der, ca, key.public_key(), ctx.now_ms()
        )
        cert = x509.load_der_x509_certificate(reply.certificate_der)
    except (CertError, ValueError) as exc:
        raise NodeError(f"the issued certificate did not verify: {exc}", hint) from exc
    if reply.device_id and device_id != reply.device_id:
        raise NodeError("the issued certificate names another device than announced", hint)
    if not 1 <= reply.node_port <= 65535:
        raise NodeError("the daemon announced no node listener port", hint)
    info = NodeInfo(
        device_id=device_id,
        name=name,
        host=host,
        node_port=reply.node_port,
        tls_name=tls_name,
        paired_at_ms=ctx.now_ms(),
    )
    return Identity(key=key, cert=cert, ca=ca, info=info)


# -------------------------------------------------------------------------------------
# the two flows


def pair_with_uri(ctx: NodeContext, uri_text: str, name: str, wait_s: int) -> PairResult:
    """QR: pin the CA from the URI, check the listener before sending anything, present the
    token with a CSR, wait."""
    try:
        uri = parse_pair_uri(uri_text)
    except PairingFormatError as exc:
        raise _format_error(exc, "copy the whole palyra://pair?... URI") from None
    ctx.home.ensure()
    now = ctx.now_ms()
    if uri.expires_unix_s * 1000 <= now:
        raise code_refused(
            f"the code expired at {format_rfc3339(uri.expires_unix_s * 1000)}; {NEW_CODE_HINT}"
        )
    chain = _fetch_chain(uri.host, uri.port)
    try:
        ca = verify_server_chain(chain, uri.host, now, ca_spki_pin=uri.ca_spki_sha256)
    except CertError as exc:
        raise NodeError(
            "the pairing listener is not the daemon you were shown", exc.message
        ) from exc
    key = generate_private_key()
    csr = build_csr(key, name)
    secret = secrets.token_bytes(32)
    address = uri.address
    with closing(pairing_channel(uri.host, uri.port, cert_pem(ca), None)) as channel:
        stub = PairingStub(channel)
        request = pb.TokenPairRequest(
            token=uri.token,
            device_name=name,
            csr_der=csr,
            await_secret_sha256=secret_sha256(secret),
        )
        reply: pb.TokenPairReply = _call(stub.TokenPair, request, address)
        return _wait_and_store(
            ctx,
            stub,
            address=address,
            request_id=reply.request_id,
            await_secret=secret,
            public_key_sha256=reply.public_key_sha256,
            key=key,
            ca=ca,
            name=name,
            host=uri.host,
            tls_name=None,
            wait_s=wait_s,
        )


def check_pin_input(pin: str) -> str:
    try:
        return check_pin(pin)
    except PairingFormatError as exc:
        raise _format_error(exc, "type the 6 digits palyra node pair-code printed") from None


def check_target(host: str, port: int) -> tuple[str, int]:
    try:
        return check_host(host), check_port(port)
    except PairingFormatError as exc:
        raise _format_error(exc, "give the address palyra node pair-code printed") from None


def pair_with_pin(
    ctx: NodeContext, host: str, port: int, pin: str, name: str, wait_s: int
) -> PairResult:
    """PIN: SPAKE2 with explicit key confirmation (the node's MAC first), then wait."""
    host, port = check_target(host, port)
    pin = check_pin_input(pin)
    ctx.home.ensure()
    address = format_address(host, port)
    chain = _fetch_chain(host, port)
    ca, tls_name = unauthenticated_listener(chain, host, ctx.now_ms())
    ca_spki = spki_sha256(ca)
    key = generate_private_key()
    csr = build_csr(key, name)
    pake = NodePake(pin)
    with closing(pairing_channel(host, port, cert_pem(ca), tls_name)) as channel:
        stub = PairingStub(channel)
        start = _pin_start(ctx, stub, pake, address)
        try:
            keys = pake.finish(start.pake_message)
        except PakeError:
            raise not_verified() from None
        t = transcript(pake.message, start.pake_message, start.window_id, ca_spki, csr)
        confirm: pb.PinConfirmReply = _call(
            stub.PinConfirm,
            pb.PinConfirmRequest(
                handshake_id=start.handshake_id,
                device_name=name,
                csr_der=csr,
                node_mac=node_mac(keys, t),
            ),
            address,
        )
        if not macs_equal(confirm.daemon_mac, daemon_mac(keys, t, confirm.request_id)):
            raise not_verified()
        try:
            confirmed_ca = x509.load_der_x509_certificate(confirm.ca_der)
        except ValueError:
            raise not_verified() from None
        if spki_sha256(confirmed_ca) != ca_spki:
            raise not_verified()
        # From here on the CA is the daemon's: its key is under both MACs.
        return _wait_and_store(
            ctx,
            stub,
            address=address,
            request_id=confirm.request_id,
            await_secret=keys.await_secret,
            public_key_sha256=confirm.public_key_sha256,
            key=key,
            ca=ca,
            name=name,
            host=host,
            tls_name=tls_name,
            wait_s=wait_s,
        )
