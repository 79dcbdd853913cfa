"""The node listener's service: what a paired device may do (SPEC §4.4).

Every method starts with ``_caller``, the one device check (``registry.DeviceRegistry``):
the peer certificate must be a known certificate of an active device, within its time. The
operations are the operator library's own (``palyrad.ops``): a node's run-now, pause or hook
is the same call ``palyra`` makes, with the same checks, JSON and errors.

``Watch`` streams a device's channel deliveries, oldest unacknowledged first, then new ones
as the executor queues them (it pokes us; the hub wakes the streams). Each stream re-checks
its device at least every 250 ms, so a revocation ends it within a second.

Stream health (SPEC §6, domain ``node_stream``): each stream journals its progress
(``StreamProgress``) and node_rpc's main loop closes the streams self-healing found stale
(``close_requested``): it cancels their calls, which also frees a thread blocked in a send.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any, NoReturn

import grpc
import orjson
from cryptography import x509

from certs import CertError, cert_sha256, check_csr, not_after_ms, spki_sha256
from palyra_proto import palyra_node_pb2 as pb
from palyra_proto import palyra_node_pb2_grpc as pb_grpc
from palyrad.domain.runs import new_ulid
from palyrad.journal import Journal
from palyrad.runtime.home import Home
from palyrad.runtime.status import read_status
from palyrad.seams import Clock
from palyrad.services.node_rpc.registry import REVOKED, DeviceRefused, DeviceRegistry, Identity
from palyrad.services.node_rpc.tls import ServerTLS
from routines.errors import InvalidInput, PalyraError
from routines.timefmt import format_rfc3339

log = logging.getLogger("palyrad.node_api")

MAX_STREAMS_PER_DEVICE = 4
# Each stream holds one of the node listener's worker threads (service.NODE_WORKERS): the
# cap leaves workers for unary calls (acks, renewals, run-now) however many devices watch.
MAX_STREAMS = 48
MAX_CHANNELS = 32
MAX_ACK_IDS = 1000
MAX_PING_BYTES = 1024
BATCH = 100  # deliveries read per query
STREAM_CHECK_S = 0.25  # a stream re-checks its device (and the outbox) at least this often
ACK_CHECK_BATCH = 100  # sent ids looked up per query when a stream journals its ack lag
TOUCH_EVERY_MS = 10_000  # last_seen is written at most this often per device
_CHANNEL = re.compile(r"[A-Za-z0-9_.:-]{1,64}")


class DeliveryHub:
    """Wakes the watch streams when the journal may hold something new for them."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._seq = 0

    def notify(self) -> None:
        with self._cond:
            self._seq += 1
            self._cond.notify_all()

    @property
    def seq(self) -> int:
        return self._seq

    def wait(self, seen: int, timeout_s: float) -> int:
        """Block until the sequence moves past ``seen`` or ``timeout_s``; the new sequence."""
        with self._cond:
            if self._seq == seen:
                self._cond.wait(timeout_s)
            return self._seq


class StreamProgress:
    """What one watch stream journals about itself, for self-healing's ``node_stream``
    domain: its last progress (``heartbeat_ms``) and its ack lag (``unacked_since_ms``).

    ``beat`` is called after every message the stream got out and on every pass of its loop;
    it writes at most once per a third of ``[rpc] stream_heartbeat_ms`` (48 streams cost
    ~10 small writes per second at the default), on the stream's own journal connection.
    The key is read at every beat: after a SIGHUP that shortens it, open streams beat at the
    new pace at once, as self-healing's bound (3 × the key) shrinks. A stream blocked in a
    send or wedged in its loop stops calling it, so its heartbeat ages.

    That does not catch a node that keeps its connection but does not take what it is sent.
    SIGSTOPped or suspended, its kernel and the HTTP/2 windows buffer our small messages, so the
    sends succeed and the stream keeps beating (gRPC's keepalive ends the connection eventually
    — after 90 s in a measurement — silently, because nobody answers its pings). A node whose
    main loop is stuck — its stdout pipe full, say — is worse: its gRPC threads answer pings and
    keep reading into its queue, so nothing below the application ever notices. What neither
    does is acknowledge. So the stream remembers what it sent and when (ids in sending order,
    which is outbox order), and each write also records when it sent the oldest delivery the
    device still owes an ack for. Recording it here is cheap (no extra write, one indexed lookup
    of at most ``ACK_CHECK_BATCH`` ids per beat while something is owed, nothing when idle) and
    exact: it is the time this stream sent the entry, which the journal alone cannot tell (an
    entry created long before the stream opened was sent when it opened, and deriving that for
    every stream on every sweep would walk each device's acknowledged history).
    """

    def __init__(
        self,
        journal: Journal,
        clock: Clock,
        stream_id: str,
        device_id: str,
        heartbeat_ms: Callable[[], int],
        opened_ms: int,
    ) -> None:
        self._journal = journal
        self._clock = clock
        self._stream_id = stream_id
        self._device_id = device_id
        self._heartbeat_ms = heartbeat_ms
        self._written_ms = opened_ms  # open_watch journaled the first heartbeat
        self._sent: deque[tuple[int, int]] = deque()  # (outbox id, sent at), oldest first
        self.tracked = True  # False once the stream's row is gone: the stream should end

    def sent(self, outbox_id: int) -> None:
        """A delivery left on this stream (the send completed)."""
        self._sent.append((outbox_id, self._clock.now_ms()))
        self.beat()

    def beat(self) -> None:
        """Journal the stream's progress if the last write is a third of the heartbeat old."""
        now = self._clock.now_ms()
        if now - self._written_ms < self._heartbeat_ms() // 3:
            return
        self._written_ms = now
        self.tracked = self._journal.devices.watch_heartbeat(
            self._stream_id, now, self._oldest_unacked()
        )

    def _oldest_unacked(self) -> int | None:
        """When the oldest delivery the device still owes an ack for was sent; forgets the
        acknowledged (or pruned) ones in front of it."""
        while self._sent:
            ids = [i for i, _ in itertools.islice(self._sent, ACK_CHECK_BATCH)]
            owed = self._journal.outbox.unacknowledged(self._device_id, ids)
            for _ in ids:
                if self._sent[0][0] in owed:
                    return self._sent[0][1]
                self._sent.popleft()
        return None


class NodeService(pb_grpc.NodeServicer):
    """The ``Node`` gRPC service."""

    def __init__(
        self,
        home: Home,
        journal: Callable[[], Journal],
        clock: Clock,
        tls: ServerTLS,
        registry: DeviceRegistry,
        hub: DeliveryHub,
        device_ttl_s: int,
        stopping: Callable[[], bool],
        stream_heartbeat_ms: Callable[[], int] = lambda: 15_000,
    ) -> None:
        self._home = home
        self._journal = journal
        self._clock = clock
        self._tls = tls
        self._registry = registry
        self._hub = hub
        self._ttl_s = device_ttl_s
        self._stopping = stopping
        self._heartbeat_ms = stream_heartbeat_ms
        self._streams: dict[str, int] = {}
        # The calls of this process's open streams, for close requests (``close_requested``).
        self._calls: dict[str, grpc.ServicerContext] = {}
        self._cancelled: set[str] = set()
        self._lock = threading.Lock()
        self._touched: dict[str, int] = {}
        self._used: set[str] = set()  # current certificates known to have been used

    # -- the check ------------------------------------------------------------------------

    def _caller(self, context: grpc.ServicerContext) -> Identity:
        now = self._clock.now_ms()
        pems = context.auth_context().get("x509_pem_cert") or [b""]
        pem = pems[0] if isinstance(pems[0], bytes) else b""
        try:
            ident = self._registry.identify(pem, now)
        except DeviceRefused as exc:
            context.abort(grpc.StatusCode.PERMISSION_DENIED, exc.reason)
        if now - self._touched.get(ident.device_id, 0) >= TOUCH_EVERY_MS:
            self._touched[ident.device_id] = now
            self._journal().devices.touch(ident.device_id, now)
        if ident.cert_sha256 not in self._used and self._registry.is_current(ident):
            # The first call with a renewed certificate: from now on a renewal from the
            # previous one is a copy's, not the retry of a lost reply.
            self._journal().devices.mark_cert_used(ident.device_id, ident.cert_sha256, now)
            self._used.add(ident.cert_sha256)
        return ident

    @staticmethod
    def _fail(context: grpc.ServicerContext, exc: PalyraError) -> NoReturn:
        code = (
            grpc.StatusCode.INVALID_ARGUMENT
            if isinstance(exc, InvalidInput)
            else grpc.StatusCode.FAILED_PRECONDITION
        )
        hint = f" ({exc.hint})" if getattr(exc, "hint", "") else ""
        context.abort(code, f"{exc.message if hasattr(exc, 'message') else exc}{hint}")

    @staticmethod
    def _json(doc: Any) -> pb.JsonReply:
        return pb.JsonReply(json=orjson.dumps(doc).decode())

    # -- unary ----------------------------------------------------------------------------

    def Ping(self, request: pb.PingRequest, context: grpc.ServicerContext) -> pb.PingReply:
        ident = self._caller(context)
        if len(request.payload) > MAX_PING_BYTES:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "a ping payload is at most 1 KiB")
        return pb.PingReply(payload=request.payload, device_id=ident.device_id)

    def Status(self, request: pb.StatusRequest, context: grpc.ServicerContext) -> pb.JsonReply:
        ident = self._caller(context)
        return self._json(
            {
                "device_id": ident.device_id,
                "cert_expires_at": format_rfc3339(ident.cert_expires_ms, always_ms=True),
                "daemon": read_status(self._home).to_json(),
            }
        )

    def ListRoutines(
        self, request: pb.ListRoutinesRequest, context: grpc.ServicerContext
    ) -> pb.JsonReply:
        self._caller(context)
        from palyrad.ops.applied import definitions_to_show
        from palyrad.ops.routine_views import routine_views

        now = self._clock.now_ms()
        try:
            shown = definitions_to_show(
                self._home, now_ms=now, env=os.environ, display_name="routines/definitions.json"
            )
        except PalyraError as exc:
            self._fail(context, exc)
        views = routine_views(shown.definitions, self._journal(), now)
        return self._json({"routines": [v.to_json() for v in views]})

    def SetRoutineEnabled(
        self, request: pb.SetRoutineEnabledRequest, context: grpc.ServicerContext
    ) -> pb.JsonReply:
        ident = self._caller(context)
        from palyrad.ops.edits import apply_edit

        rid, enabled = request.routine_id, request.enabled

        def change(ed: Any) -> None:
            r = ed.get(rid)
            if r is None:
                raise LookupError(rid)
            if r.enabled != enabled:
                ed.upsert(replace(r, enabled=enabled))

        try:
            outcome = apply_edit(self._home, self._journal(), change)
        except LookupError:
            context.abort(grpc.StatusCode.NOT_FOUND, f"no routine {rid!r}")
        except PalyraError as exc:
            self._fail(context, exc)
        log.info(
            "routine paused by a node" if not enabled else "routine resumed by a node",
            extra={"routine_id": rid, "device_id": ident.device_id},
        )
        return self._json({"id": rid, "enabled": enabled, "changed": outcome.changed})

    def RunNow(self, request: pb.RunNowRequest, context: grpc.ServicerContext) -> pb.JsonReply:
        self._caller(context)
        from palyrad.ops.edits import default_timezone
        from palyrad.ops.triggers import run_now
        from routines.definitions_file import load
        from routines.model import Definitions

        def load_definitions() -> Definitions:
            result = load(
                self._home.definitions,
                now_ms=self._clock.now_ms(),
                env=os.environ,
                default_timezone=default_timezone(self._home),
            )
            if result.definitions is None:
                raise InvalidInput("routines/definitions.json is invalid", "fix it on the daemon")
            return result.definitions

        try:
            run, _ = run_now(
                self._home,
                self._journal(),
                request.routine_id,
                request.payload_json or None,
                load_definitions,
            )
        except PalyraError as exc:
            self._fail(context, exc)
        return self._json(
            {"run_id": run.run_id, "status": run.status, "error_kind": run.error_kind}
        )

    def FireHook(self, request: pb.FireHookRequest, context: grpc.ServicerContext) -> pb.JsonReply:
        self._caller(context)
        from palyrad.ops.triggers import fire_hook

        try:
            fire_hook(
                self._home,
                self._journal(),
                request.hook_id,
                request.event or None,
                request.payload_json or None,
            )
        except PalyraError as exc:
            self._fail(context, exc)
        return self._json({"hook_id": request.hook_id, "event": request.event or None})

    def Ack(self, request: pb.AckRequest, context: grpc.ServicerContext) -> pb.AckReply:
        ident = self._caller(context)
        ids = list(request.delivery_ids)
        if len(ids) > MAX_ACK_IDS:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT, f"at most {MAX_ACK_IDS} ids per acknowledgement"
            )
        n = self._journal().outbox.ack(ident.device_id, ids, self._clock.now_ms())
        return pb.AckReply(acknowledged=n)

    def RenewCertificate(
        self, request: pb.RenewRequest, context: grpc.ServicerContext
    ) -> pb.RenewReply:
        ident = self._caller(context)
        journal = self._journal()
        now = self._clock.now_ms()
        try:
            public_key = check_csr(request.csr_der)
        except CertError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"bad CSR: {exc}")
        device = journal.devices.get(ident.device_id)
        if device is None or spki_sha256(public_key) != device.public_key_sha256:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                "a renewal keeps the device's key (pair again to change it)",
            )
        der = self._tls.issue_device(public_key, ident.device_id, self._ttl_s, now)
        fingerprint = cert_sha256(der)
        expires = not_after_ms(x509.load_der_x509_certificate(der))
        if self._registry.is_current(ident):
            done = journal.devices.renew(
                ident.device_id,
                expected_cert_sha256=ident.cert_sha256,
                new_cert_sha256=fingerprint,
                new_expires_ms=expires,
                now_ms=now,
            )
        else:
            # From the previous certificate: the retry of a renewal whose reply was lost
            # (its result was never used), or else a copy of it — which revokes the device.
            done = journal.devices.reissue(
                ident.device_id,
                caller_cert_sha256=ident.cert_sha256,
                expected_cert_sha256=device.cert_sha256,
                new_cert_sha256=fingerprint,
                new_expires_ms=expires,
                now_ms=now,
            )
        if not done:
            self._revoke(journal, ident, "renewal with a superseded certificate", now)
            context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                f"{REVOKED} (a renewal came from a superseded certificate: it may be stolen)",
            )
        self._registry.refresh(journal, force=True)
        log.info("device certificate renewed", extra={"device_id": ident.device_id})
        return pb.RenewReply(certificate_der=der, expires_at_unix_ms=expires)

    def _revoke(self, journal: Journal, ident: Identity, reason: str, now: int) -> None:
        journal.devices.revoke(ident.device_id, now, reason=reason)
        self._registry.refresh(journal, force=True)
        self._hub.notify()
        log.warning("device revoked", extra={"device_id": ident.device_id, "reason": reason})

    # -- watch ----------------------------------------------------------------------------

    def Watch(
        self, request: pb.WatchRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.WatchMessage]:
        ident = self._caller(context)
        channels = list(request.channels)
        if len(channels) > MAX_CHANNELS or not all(_CHANNEL.fullmatch(c) for c in channels):
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"channels: at most {MAX_CHANNELS} names of letters, digits and _.:-",
            )
        journal = self._journal()
        with self._lock:
            if sum(self._streams.values()) >= MAX_STREAMS:
                context.abort(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"the daemon serves at most {MAX_STREAMS} watch streams at once",
                )
            if self._streams.get(ident.device_id, 0) >= MAX_STREAMS_PER_DEVICE:
                context.abort(
                    grpc.StatusCode.RESOURCE_EXHAUSTED,
                    f"at most {MAX_STREAMS_PER_DEVICE} open watch streams per device",
                )
            self._streams[ident.device_id] = self._streams.get(ident.device_id, 0) + 1
            stream_id = new_ulid(self._clock.now_ms())
            # Known before its row exists: a close request always finds the call.
            self._calls[stream_id] = context
        try:
            opened = self._clock.now_ms()
            journal.devices.open_watch(stream_id, ident.device_id, channels or ["*"], opened)
            progress = StreamProgress(
                journal,
                self._clock,
                stream_id,
                ident.device_id,
                self._heartbeat_ms,
                opened,
            )
            yield from self._stream(
                journal, ident, channels or None, request.events, context, progress
            )
        finally:
            with self._lock:
                self._streams[ident.device_id] -= 1
                self._calls.pop(stream_id, None)
                self._cancelled.discard(stream_id)
            try:
                journal.devices.close_watch(stream_id)
            except Exception:  # the journal may be gone at shutdown; the next start clears
                log.debug("closing a watch record failed", exc_info=True)

    def close_requested(self, journal: Journal) -> int:
        """Carry out self-healing's close requests (node_rpc's main loop, every pass):
        cancel the call of each such stream this process serves — that also wakes a thread
        blocked in a send, and the stream's ``finally`` removes its row, which clears the
        condition — and delete the row of one it does not serve (a stream whose end could
        not remove its row). Returns how many requests were pending."""
        requested = journal.devices.close_requested()
        for stream_id in requested:
            with self._lock:
                call = self._calls.get(stream_id)
                first = stream_id not in self._cancelled
                if call is not None:
                    self._cancelled.add(stream_id)
            if call is None:
                journal.devices.close_watch(stream_id)
                log.info("forgot a watch stream this process does not serve",
                         extra={"stream_id": stream_id})  # fmt: skip
                continue
            if first:
                log.warning("closing a stale watch stream", extra={"stream_id": stream_id})
            call.cancel()  # idempotent; repeated while the stream has not ended
        return len(requested)

    def _stream(
        self,
        journal: Journal,
        ident: Identity,
        channels: list[str] | None,
        events: bool,
        context: grpc.ServicerContext,
        progress: StreamProgress,
    ) -> Iterator[pb.WatchMessage]:
        device = journal.devices.get(ident.device_id)
        floor = device.delivery_floor if device is not None else 0
        after = 0
        event_after = journal.events.max_id() if events else 0
        last_sent = self._clock.now_ms()
        seq = self._hub.seq
        # At once, so the node knows the stream is up (and says "reconnected") before the
        # first delivery, which may be hours away.
        yield pb.WatchMessage(heartbeat=pb.Heartbeat(at_unix_ms=last_sent))
        while context.is_active() and not self._stopping():
            progress.beat()  # every pass: a wedged loop or a blocked send stops the beats
            if not progress.tracked:
                return  # the journal no longer knows this stream: the node reconnects
            now = self._clock.now_ms()
            if not self._registry.still_valid(ident, now):
                context.abort(grpc.StatusCode.PERMISSION_DENIED, REVOKED)
            sent = False
            # Every entry up to ``ceiling`` (read first: later entries only get higher ids)
            # is either in this batch or not for us (acknowledged, another channel): the
            # cursor moves past all of it, so an idle stream never re-reads acknowledged
            # entries, however many the retention keeps.
            ceiling = journal.outbox.max_id()
            batch = journal.outbox.for_device(ident.device_id, channels, after, floor, BATCH)
            if len(batch) < BATCH:
                after = max(after, ceiling)
            for item in batch:
                after = max(after, item.outbox_id)
                sent = True
                yield pb.WatchMessage(
                    delivery=pb.Delivery(
                        delivery_id=item.outbox_id,
                        channel=item.channel,
                        routine_id=item.routine_id,
                        run_json=item.payload,
                    )
                )
                progress.sent(item.outbox_id)
            if events:
                for ev in journal.events.since(event_after, 100):
                    event_after = ev.event_id
                    sent = True
                    yield pb.WatchMessage(
                        event=pb.SystemEvent(
                            event=ev.name,
                            payload_json=ev.payload or "null",
                            at=format_rfc3339(ev.created_ms, always_ms=True),
                        )
                    )
                    progress.beat()
            if sent:
                last_sent = now
                continue
            if now - last_sent >= self._heartbeat_ms():
                last_sent = now
                yield pb.WatchMessage(heartbeat=pb.Heartbeat(at_unix_ms=now))
            seq = self._hub.wait(seq, STREAM_CHECK_S)
