"""``palyra-node watch``: a live stream of deliveries (and events) that survives restarts.

One loop, in the main thread, owns everything: it prints, acknowledges, reconnects and
renews. The gRPC stream is read by a helper thread into a queue, so the loop wakes up on a
message *or* on its own timers (renewal checks, the idle limit) and Ctrl-C reaches it
promptly; it never blocks inside gRPC without a timeout.

- A delivery is printed, then acknowledged at once (unary ``Ack``). If the ack cannot be
  sent the daemon sends the delivery again after the reconnect; the node remembers the ids
  it printed recently and does not print them twice, but acks them again.
- Connection loss (UNAVAILABLE, a stream the daemon ended, no message for ``IDLE_S`` though
  the daemon sends heartbeats) → a note and a reconnect with backoff up to 5 s, on a new
  channel (a channel's own backoff would be slower).
- PERMISSION_DENIED → ``device revoked`` (exit 1). Every other refusal is an error too.
- Every ``RENEW_CHECK_S`` the identity is re-read from the home (another command may have
  renewed it or paired again) and renewed if due; a changed identity means a reconnect with
  the new certificate.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
import orjson

from node.client import NodeClient, check_not_expired, renew_if_due, renewal_due_at_ms
from node.context import NodeContext
from node.errors import UNREACHABLE, NodeError, device_revoked
from node.home import Identity
from node.rpc_errors import node_rpc_error, status_of
from palyra_proto import palyra_node_pb2 as pb

MAX_BACKOFF_S = 5.0
FIRST_BACKOFF_S = 0.25
RENEW_CHECK_S = 60.0
IDLE_S = 60.0  # no message at all (not even a heartbeat) for this long: the link is dead
RECENT_IDS = 4096
_RECONNECT_CODES = (
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.ABORTED,
)


@dataclass(frozen=True, slots=True)
class WatchOptions:
    channels: tuple[str, ...]
    events: bool
    count: int | None
    as_json: bool


# -------------------------------------------------------------------------------------
# output lines


def _loads(text: str) -> Any:
    if not text:
        return None
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return text  # show what came rather than drop it


def delivery_line(d: pb.Delivery) -> dict[str, Any]:
    return {
        "type": "delivery",
        "delivery_id": d.delivery_id,
        "channel": d.channel,
        "routine_id": d.routine_id,
        "run": _loads(d.run_json),
    }


def event_line(e: pb.SystemEvent) -> dict[str, Any]:
    return {"type": "event", "event": e.event, "payload": _loads(e.payload_json), "at": e.at}


def text_of(line: dict[str, Any]) -> str:
    """The human form of one line (text output may change; JSON is the contract)."""
    if line["type"] == "event":
        payload = orjson.dumps(line["payload"]).decode() if line["payload"] is not None else ""
        return f"{line['at']}  event {line['event']}  {payload}".rstrip()
    run = line["run"] if isinstance(line["run"], dict) else {}
    status = run.get("status", "?")
    if run.get("error_kind"):
        status += f" ({run['error_kind']})"
    when = run.get("finished_at") or run.get("created_at") or ""
    return (
        f"{when}  [{line['channel']}] {line['routine_id']} {run.get('run_id', '?')} {status}"
    ).strip()


# -------------------------------------------------------------------------------------
# the stream reader


_END = object()


class _Reader:
    """Reads one stream into a queue on a daemon thread: messages, then an exception (the
    stream failed) or ``_END`` (it ended)."""

    def __init__(self, call: Any) -> None:
        self.call = call
        self.queue: queue.Queue[Any] = queue.Queue()
        self._thread = threading.Thread(target=self._run, name="watch-reader", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for message in self.call:
                self.queue.put(message)
        except grpc.RpcError as exc:
            self.queue.put(exc)
        except Exception as exc:  # a broken stream must reach the loop, never die silently
            self.queue.put(exc)
        else:
            self.queue.put(_END)

    def cancel(self) -> None:
        with contextlib.suppress(Exception):
            self.call.cancel()


class _Reconnect(Exception):
    """Leave the current stream and connect again (after ``delay_s``)."""

    def __init__(self, reason: str, delay: bool = True) -> None:
        super().__init__(reason)
        self.delay = delay


# -------------------------------------------------------------------------------------
# the loop


class Watcher:
    def __init__(
        self, ctx: NodeContext, options: WatchOptions, emit: Callable[[str], None]
    ) -> None:
        self.ctx = ctx
        self.options = options
        self.emit = emit
        self.printed = 0
        self._recent: deque[int] = deque(maxlen=RECENT_IDS)
        self._recent_set: set[int] = set()
        self._unacked: set[int] = set()
        self._identity: Identity | None = None
        self._outage = False
        self._heard = False  # a message arrived on the current connection
        self._ever_heard = False

    # identity ------------------------------------------------------------------------

    def _fresh_identity(self) -> Identity:
        identity = self.ctx.home.require_identity()
        check_not_expired(identity, self.ctx.now_ms())
        return renew_if_due(self.ctx, identity)

    def _check_in_s(self) -> float:
        """Seconds to the next identity check: every minute, or sooner when the renewal
        falls due first (a 30 s certificate must be renewed within the stream's life)."""
        if self._identity is None:
            return RENEW_CHECK_S
        due_ms = renewal_due_at_ms(self._identity.not_before_ms, self._identity.not_after_ms)
        return max(0.5, min(RENEW_CHECK_S, (due_ms - self.ctx.now_ms()) / 1000))

    def _identity_changed(self) -> bool:
        """Re-read (and renew if due) the identity; True if the stream must reconnect."""
        try:
            fresh = self._fresh_identity()
        except NodeError as exc:
            if exc.kind == UNREACHABLE:
                return False  # the stream itself will notice; renewal is retried next time
            raise
        assert self._identity is not None
        return fresh.cert_sha256 != self._identity.cert_sha256 or fresh.info != self._identity.info

    # printing ------------------------------------------------------------------------

    def _remember(self, delivery_id: int) -> None:
        if len(self._recent) == self._recent.maxlen:
            self._recent_set.discard(self._recent[0])
        self._recent.append(delivery_id)
        self._recent_set.add(delivery_id)

    def _print(self, line: dict[str, Any]) -> None:
        text = orjson.dumps(line).decode() if self.options.as_json else text_of(line)
        self.emit(text)
        self.printed += 1

    def _done(self) -> bool:
        return self.options.count is not None and self.printed >= self.options.count

    def _ack(self, client: NodeClient) -> None:
        if not self._unacked:
            return
        ids = sorted(self._unacked)
        try:
            client.ack(ids)
        except grpc.RpcError as exc:
            code, _ = status_of(exc)
            if code is grpc.StatusCode.PERMISSION_DENIED:
                raise device_revoked() from None
            if code in _RECONNECT_CODES:
                raise _Reconnect(f"acknowledging failed ({code.name.lower()})") from None
            raise node_rpc_error(exc, client.address) from None
        self._unacked.difference_update(ids)

    def _handle(self, client: NodeClient, message: pb.WatchMessage) -> None:
        kind = message.WhichOneof("kind")
        if kind == "delivery":
            d = message.delivery
            if d.delivery_id not in self._recent_set:
                self._print(delivery_line(d))
                self._remember(d.delivery_id)
            self._unacked.add(d.delivery_id)
            self._ack(client)
        elif kind == "event" and self.options.events:
            self._print(event_line(message.event))

    # connection ----------------------------------------------------------------------

    def _stream(self, client: NodeClient) -> None:
        """Serve one stream until the count is reached (return) or it must end (raise)."""
        reader = _Reader(client.watch(self.options.channels, self.options.events))
        last_message = time.monotonic()
        next_check = time.monotonic() + self._check_in_s()
        try:
            while True:
                now = time.monotonic()
                timeout = max(0.0, min(next_check, last_message + IDLE_S) - now)
                try:
                    item = reader.queue.get(timeout=timeout)
                except queue.Empty:
                    item = None
                now = time.monotonic()
                if item is None:
                    if now >= last_message + IDLE_S:
                        raise _Reconnect(f"no message from the daemon for {IDLE_S:.0f} s")
                elif item is _END:
                    raise _Reconnect("the daemon ended the stream")
                elif isinstance(item, grpc.RpcError):
                    code, details = status_of(item)
                    if code is grpc.StatusCode.PERMISSION_DENIED:
                        raise device_revoked()
                    if code in _RECONNECT_CODES:
                        raise _Reconnect(details or code.name.lower())
                    raise node_rpc_error(item, client.address)
                elif isinstance(item, Exception):
                    raise _Reconnect(f"the stream broke ({type(item).__name__})")
                else:
                    last_message = now
                    self._heard = self._ever_heard = True
                    if self._outage:
                        self.ctx.note("note: reconnected")
                        self._outage = False
                    self._handle(client, item)
                    if self._done():
                        return
                if now >= next_check:
                    next_check = now + self._check_in_s()
                    if self._identity_changed():
                        raise _Reconnect("the device certificate changed", delay=False)
        finally:
            reader.cancel()

    def _finish_acks(self) -> None:
        """``--count`` reached: every printed delivery is acknowledged before exiting (a
        lost connection is retried like the stream itself)."""
        backoff = FIRST_BACKOFF_S
        while self._unacked:
            try:
                with NodeClient(self._fresh_identity()) as client:
                    self._ack(client)
                    return
            except _Reconnect as exc:
                self.ctx.note(f"note: {exc}; retrying in {backoff:.1f} s")
            except NodeError as exc:
                if exc.kind != UNREACHABLE:
                    raise
                self.ctx.note(f"note: {exc.line()}; retrying in {backoff:.1f} s")
            time.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)

    def run(self) -> None:
        """Until the count is reached (return), or an error (NodeError); Ctrl-C is the
        caller's."""
        backoff = FIRST_BACKOFF_S
        while True:
            if self._heard:
                backoff, self._heard = FIRST_BACKOFF_S, False
            client: NodeClient | None = None
            try:
                self._identity = self._fresh_identity()
                client = NodeClient(self._identity)
                self._stream(client)
            except _Reconnect as exc:
                if not exc.delay:
                    continue
                if not self._outage:
                    address = self._identity.info.address if self._identity else "?"
                    self.ctx.note(
                        f"note: connection to the daemon lost ({exc}); reconnecting"
                        if self._ever_heard
                        else f"note: cannot reach the daemon at {address} ({exc}); retrying"
                    )
                self._outage = True
            except NodeError as exc:
                if exc.kind != UNREACHABLE:
                    raise  # revoked, not paired, refused: nothing a reconnect changes
                if not self._outage:
                    self.ctx.note(f"note: {exc.line()}; retrying")
                self._outage = True
            else:
                break
            finally:
                if client is not None:
                    client.close()
            time.sleep(backoff)
            backoff = min(backoff * 2, MAX_BACKOFF_S)
        self._finish_acks()


def run_watch(
    ctx: NodeContext,
    channels: Sequence[str],
    events: bool,
    count: int | None,
    as_json: bool,
    emit: Callable[[str], None],
) -> None:
    Watcher(ctx, WatchOptions(tuple(channels), events, count, as_json), emit).run()
