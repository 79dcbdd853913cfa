"""The ``node_stream`` domain: a paired node's watch stream that stopped making progress
(SPEC §6 "Self-healing").

Subject: the stream id (``device_watches.stream_id``). node_rpc journals each stream's
progress (``node_api.StreamProgress``); a stream is stale when, for longer than
``3 × [rpc] stream_heartbeat_ms`` (the node's own idle limit is far longer: it never notices
a daemon-side wedge),

- its heartbeat has not moved: its serving thread is blocked in a send (the node stopped
  reading and the flow-control windows filled up) or its loop is wedged; or
- a delivery it sent is still unacknowledged: the node keeps its TCP connection but does
  not read or ack (SIGSTOPped, suspended, its output pipe full). The kernel buffers what
  is sent, so the stream itself looks busy; ack lag is the only signal there. A client
  that never acknowledges anything looks the same, and is in breach of SPEC §7 ("…and
  acknowledges it").

The remediation asks node_rpc to close the stream (``request_close``, then a poke): its main
loop cancels the call, which frees a blocked thread too, and the stream's end removes its
row, so the next sweep no longer finds it and the incident resolves. The node reconnects and
gets everything it has not acknowledged again (at least once, in order), on a fresh stream.

When node_rpc itself is silent (its process heartbeat older than ``process_silence_ms``) the
findings are not remediable: no one would carry the close out, and the ``process`` domain
restarts node_rpc, whose start forgets every stream.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from palyrad.journal.records import DeviceWatch
from palyrad.seams import Finding, RemediationFailed

if TYPE_CHECKING:
    from palyrad.services.context import ServiceContext

DOMAIN = "node_stream"
STALE_HEARTBEATS = 3  # a stream is stale after this many heartbeat intervals without progress
# node_rpc acts on a close request within one pass of its loop (200 ms; at once when poked).
# A request still open after this long is a failed attempt (node_rpc down or the stream's
# thread not responding to its cancellation), so the incident escalates.
CLOSE_GRACE_MS = 5_000


def stale_after_ms(stream_heartbeat_ms: int) -> int:
    """How long a stream may go without progress (or without an ack) before it is stale."""
    return STALE_HEARTBEATS * stream_heartbeat_ms


def _is_stale(watch: DeviceWatch, now_ms: int, bound_ms: int) -> bool:
    older_than = now_ms - bound_ms
    lagging = watch.unacked_since_ms is not None and watch.unacked_since_ms < older_than
    return watch.heartbeat_ms < older_than or lagging


def _channels(watch: DeviceWatch) -> str:
    if "*" in watch.channels or not watch.channels:
        return "all channels"
    return "channels " + ", ".join(watch.channels)


class NodeStreamDetector:
    """Every open watch stream that has made no progress for ``3 × stream_heartbeat_ms``."""

    domain = DOMAIN

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    def detect(self, now_ms: int, open_subjects: frozenset[str]) -> list[Finding]:
        journal = self.ctx.journal
        bound = stale_after_ms(self.ctx.config.stream_heartbeat_ms)
        stale = journal.devices.stale_watches(now_ms - bound)
        if not stale:
            return []
        silent = self._node_rpc_silent(now_ms)
        findings = []
        for watch in stale:
            device = journal.devices.get(watch.device_id)
            who = device.name if device is not None else watch.device_id
            since = watch.heartbeat_ms
            if watch.heartbeat_ms >= now_ms - bound and watch.unacked_since_ms is not None:
                since = watch.unacked_since_ms
                why = "a delivery it sent is unacknowledged: the node is not reading"
            else:
                why = "no heartbeat: blocked in a send or wedged"
            summary = (
                f"{who}'s watch stream ({_channels(watch)}) has made no progress for"
                f" {(now_ms - since) / 1000:.0f} s ({why})"
            )
            if silent:
                summary += "; node_rpc itself is silent (its restart closes every stream)"
            findings.append(Finding(DOMAIN, watch.stream_id, "warning", summary, not silent))
        return findings

    def _node_rpc_silent(self, now_ms: int) -> bool:
        """node_rpc journaled a heartbeat, but longer than ``process_silence_ms`` ago (no
        heartbeat yet: it has just started, and acts on close requests)."""
        beat = self.ctx.journal.heartbeats.all().get("node_rpc")
        return beat is not None and now_ms - beat.heartbeat_ms > self.ctx.config.process_silence_ms


class CloseStreamRemediation:
    """Ask node_rpc to close a stale stream. Idempotent: a stream already gone is "already
    closed"; a repeated attempt while a request is pending pokes node_rpc again; a request
    that node_rpc has not carried out within ``CLOSE_GRACE_MS`` fails the attempt."""

    domain = DOMAIN
    action = "close_stream"
    journal_free = False

    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx

    def apply(self, finding: Finding, now_ms: int) -> str:
        journal = self.ctx.journal
        try:
            watch = journal.devices.watch(finding.subject)
            if watch is None:
                return "already closed"
            if watch.close_requested_ms is not None:
                waited = now_ms - watch.close_requested_ms
                if waited >= CLOSE_GRACE_MS:
                    raise RemediationFailed(
                        f"close requested {waited / 1000:.1f} s ago and the stream is still"
                        " open: node_rpc has not closed it (is node_rpc running?)"
                    )
                self.ctx.poke("node_rpc")
                return f"close already requested {waited / 1000:.1f} s ago; node_rpc poked again"
            bound = stale_after_ms(self.ctx.config.stream_heartbeat_ms)
            if not _is_stale(watch, now_ms, bound):
                return "the stream made progress again; left open"
            if not journal.devices.request_close(watch.stream_id, now_ms):
                return "already closed"
        except RemediationFailed:
            raise
        except Exception as exc:  # the journal's errors (locked, I/O, unavailable)
            raise RemediationFailed(
                f"could not request the close: {type(exc).__name__}: {exc}"
            ) from exc
        self.ctx.poke("node_rpc")
        return f"asked node_rpc to close the stream of device {watch.device_id}"
