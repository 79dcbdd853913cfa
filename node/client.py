"""The mTLS client of the node listener: one method per Node RPC, and renewal.

Every unary call has a deadline (``DEADLINE_S``) and maps a failed status to a ``NodeError``
(``rpc_errors``). ``open_client`` is the one way a command gets a client: it loads the
identity, refuses an expired certificate before dialling (an expired client certificate
fails the TLS handshake, which would otherwise read as "daemon unreachable"), and renews the
certificate first when 2/3 of its lifetime has passed (SPEC §4.4), then connects with the
newest certificate.

Renewal is serialised on the home's lock and re-reads the identity under it: two commands
renewing at once would make the second present a superseded certificate, which the daemon
treats as theft and answers by revoking the device.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import grpc
import orjson
from cryptography import x509

from certs.authority import BACKDATE_S
from certs.csr import build_csr
from certs.errors import CertError
from certs.verify import verify_device_certificate
from node.channel import node_channel
from node.context import NodeContext
from node.errors import PAIR_HINT, REVOKED, UNREACHABLE, NodeError
from node.home import Identity
from node.rpc_errors import node_rpc_error
from palyra_proto import palyra_node_pb2 as pb
from palyra_proto.palyra_node_pb2_grpc import NodeStub
from routines.timefmt import format_rfc3339

DEADLINE_S = 10.0


def renewal_due_at_ms(not_before_ms: int, not_after_ms: int) -> int:
    """The instant 2/3 of the certificate's lifetime has passed (rounded up: never early).

    The lifetime counts from the issue instant: the daemon backdates ``not_before`` by
    ``BACKDATE_S`` for clock skew, which is not life the certificate was given. Counted from
    ``not_before``, a 30 s certificate would be due at once and every command would renew."""
    issued = min(not_before_ms + BACKDATE_S * 1000, not_after_ms)
    lifetime = max(0, not_after_ms - issued)
    return issued + -(-lifetime * 2 // 3)


def renewal_due(identity: Identity, now_ms: int) -> bool:
    return now_ms >= renewal_due_at_ms(identity.not_before_ms, identity.not_after_ms)


def check_not_expired(identity: Identity, now_ms: int) -> None:
    if now_ms >= identity.not_after_ms:
        raise NodeError(
            f"the device certificate expired at {format_rfc3339(identity.not_after_ms)}",
            PAIR_HINT,
        )


class NodeClient:
    """A connection to the node listener with one identity; close it (or use ``with``)."""

    def __init__(self, identity: Identity, *, deadline_s: float = DEADLINE_S) -> None:
        self.identity = identity
        self.deadline_s = deadline_s
        self.channel = node_channel(identity)
        self.stub = NodeStub(self.channel)

    def __enter__(self) -> NodeClient:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self.channel.close()

    @property
    def address(self) -> str:
        return self.identity.info.address

    # ---------------------------------------------------------------------------------

    def _json(self, method: Any, request: Any) -> Any:
        reply = self._unary(method, request)
        try:
            return orjson.loads(reply.json)
        except orjson.JSONDecodeError as exc:
            raise NodeError(
                "the daemon sent a reply that is not JSON", "see the daemon's log"
            ) from exc

    def _unary(self, method: Any, request: Any) -> Any:
        try:
            return method(request, timeout=self.deadline_s)
        except grpc.RpcError as exc:
            raise node_rpc_error(exc, self.address) from None

    def status(self) -> Any:
        return self._json(self.stub.Status, pb.StatusRequest())

    def list_routines(self) -> Any:
        return self._json(self.stub.ListRoutines, pb.ListRoutinesRequest())

    def set_routine_enabled(self, routine_id: str, enabled: bool) -> Any:
        request = pb.SetRoutineEnabledRequest(routine_id=routine_id, enabled=enabled)
        return self._json(self.stub.SetRoutineEnabled, request)

    def run_now(self, routine_id: str, payload_json: str | None) -> Any:
        request = pb.RunNowRequest(routine_id=routine_id, payload_json=payload_json or "")
        return self._json(self.stub.RunNow, request)

    def fire_hook(self, hook_id: str, event: str | None, payload_json: str | None) -> Any:
        request = pb.FireHookRequest(
            hook_id=hook_id, event=event or "", payload_json=payload_json or ""
        )
        return self._json(self.stub.FireHook, request)

    def ack(self, delivery_ids: Sequence[int]) -> int:
        """Acknowledge deliveries; raises ``grpc.RpcError`` (the watch loop decides)."""
        reply = self.stub.Ack(
            pb.AckRequest(delivery_ids=list(delivery_ids)), timeout=self.deadline_s
        )
        return int(reply.acknowledged)

    def watch(self, channels: Sequence[str], events: bool) -> Any:
        """The server stream (a ``grpc.Call`` and iterator of ``WatchMessage``); no deadline."""
        return self.stub.Watch(pb.WatchRequest(channels=list(channels), events=events))

    def renew(self, csr_der: bytes) -> pb.RenewReply:
        reply: pb.RenewReply = self._unary(
            self.stub.RenewCertificate, pb.RenewRequest(csr_der=csr_der)
        )
        return reply


# -------------------------------------------------------------------------------------
# renewal


def renew_now(ctx: NodeContext, identity: Identity) -> Identity:
    """Renew ``identity``'s certificate (same key), check it and store it; the caller holds
    the home's lock. Raises ``NodeError`` (device revoked, unreachable, refused)."""
    with NodeClient(identity) as client:
        reply = client.renew(build_csr(identity.key, identity.info.name))
    try:
        device_id = verify_device_certificate(
            reply.certificate_der, identity.ca, identity.key.public_key(), ctx.now_ms()
        )
        cert = x509.load_der_x509_certificate(reply.certificate_der)
    except (CertError, ValueError) as exc:
        raise NodeError(f"the renewed certificate did not verify: {exc}", PAIR_HINT) from exc
    if device_id != identity.info.device_id:
        raise NodeError(f"the renewed certificate names another device ({device_id})", PAIR_HINT)
    renewed = identity.with_certificate(cert)
    ctx.home.store_identity(renewed)
    return renewed


def renew_if_due(ctx: NodeContext, identity: Identity) -> Identity:
    """The newest identity, renewed first if 2/3 of its certificate's lifetime has passed.

    A renewal that fails for a reason other than revocation or an unreachable daemon leaves
    the (still valid) certificate in use and says so in a note; it is tried again next time."""
    if not renewal_due(identity, ctx.now_ms()):
        return identity
    with ctx.home.locked():
        current = ctx.home.require_identity()  # another command may have renewed it already
        if not renewal_due(current, ctx.now_ms()):
            return current
        try:
            return renew_now(ctx, current)
        except NodeError as exc:
            if exc.kind in (REVOKED, UNREACHABLE):
                raise
            ctx.note(
                f"note: could not renew the device certificate ({exc.line()}); "
                f"it stays valid until {format_rfc3339(current.not_after_ms)}"
            )
            return current


def open_client(ctx: NodeContext) -> NodeClient:
    """A client for the current identity (renewed first when due). ``not paired``, an
    expired certificate and a revoked device are errors here."""
    identity = ctx.home.require_identity()
    check_not_expired(identity, ctx.now_ms())
    identity = renew_if_due(ctx, identity)
    return NodeClient(identity)


__all__ = [
    "DEADLINE_S",
    "NodeClient",
    "check_not_expired",
    "open_client",
    "renew_if_due",
    "renew_now",
    "renewal_due",
    "renewal_due_at_ms",
]
