"""Node-stream health (SPEC §6 "Self-healing", domain ``node_stream``).

The journal's side (migration 6, heartbeats, ack lag, close requests), what a watch stream
journals about itself (``StreamProgress``, on a real journal with a manual clock), the
detector and remediation on a real journal with an injected now — and, end to end, a real
daemon (``[rpc] stream_heartbeat_ms = 1000``) with a real ``palyra-node watch``: its heartbeat
advances; SIGSTOPped, it keeps its connection and the daemon's sends still succeed, so only
its ack lag makes the stream stale; the detector finds it, the remediation has node_rpc close
it, and the node reconnects once it runs again. A raw client that opens ``Watch`` and never
reads blocks the daemon's serving thread in a send: its heartbeat stops, and the close
frees the thread.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from node.channel import node_channel
from node.home import NodeHome
from palyra_proto import palyra_node_pb2 as pb
from palyra_proto import palyra_node_pb2_grpc as pb_grpc
from palyrad.journal import Journal, ProcessHeartbeat, connection
from palyrad.journal.migrations import MIGRATIONS, SCHEMA_VERSION
from palyrad.journal.records import Device, DeviceWatch
from palyrad.runtime.clock import ManualClock
from palyrad.runtime.config import ConfigError, DaemonConfig, load_config
from palyrad.runtime.notify import poke_fifo
from palyrad.seams import Finding, RemediationFailed
from palyrad.services.context import ServiceContext
from palyrad.services.node_rpc.node_api import StreamProgress
from palyrad.services.self_healing.node_streams import (
    CLOSE_GRACE_MS,
    CloseStreamRemediation,
    NodeStreamDetector,
)
from tests.daemon_harness import RPC_ANY_PORTS, Daemon, wait_until
from tests.test_pairing_e2e import Operator, node_bg, pin_pair, start

pytestmark = pytest.mark.timeout(60)

T0 = 1_700_000_000_000
HB = 1_000  # [rpc] stream_heartbeat_ms in these tests: stale after 3 s


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[Journal]:
    j = Journal(tmp_path / "journal.sqlite3")
    yield j
    j.close()


def _device(journal: Journal, device_id: str = "dev1", name: str = "phone") -> None:
    journal.devices.add(Device(device_id, name, "active", "pk-" + device_id,
                               "cert-" + device_id, T0 + 10**9, T0, 0))  # fmt: skip


# --- journal ---------------------------------------------------------------------------------


def test_migration_6_applies_on_a_journal_at_the_previous_version(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert SCHEMA_VERSION == len(MIGRATIONS) >= 6
    path = tmp_path / "old.sqlite3"
    with monkeypatch.context() as m:  # a journal written by the Palyra before migration 6
        m.setattr(connection, "MIGRATIONS", MIGRATIONS[:5])
        m.setattr(connection, "SCHEMA_VERSION", 5)
        old = Journal(path)
        assert old.schema_version() == 5
        old.db.execute("INSERT INTO device_watches VALUES ('s1', 'dev1', '[\"a\"]', 500)")
        old.close()
    j = Journal(path)
    assert j.schema_version() == SCHEMA_VERSION
    # a row from before: its opening is its heartbeat, nothing owed, no close requested
    assert j.devices.watches() == [DeviceWatch("s1", "dev1", ("a",), 500, 500, None, None)]
    j.close()


def test_open_watch_heartbeats_and_staleness(journal: Journal) -> None:
    journal.devices.open_watch("s1", "dev1", ["a"], T0)
    journal.devices.open_watch("s2", "dev1", ["*"], T0 + 100)
    assert journal.devices.watch("s1") == DeviceWatch("s1", "dev1", ("a",), T0, T0)
    assert journal.devices.stale_watches(T0) == []  # strictly older than the bound
    assert [w.stream_id for w in journal.devices.stale_watches(T0 + 101)] == ["s1", "s2"]
    assert journal.devices.watch_heartbeat("s1", T0 + 5_000) is True
    assert [w.stream_id for w in journal.devices.stale_watches(T0 + 4_000)] == ["s2"]
    assert journal.devices.watch_heartbeat("nope", T0 + 5_000) is False
    assert journal.devices.watch("nope") is None


def test_ack_lag_makes_a_beating_stream_stale(journal: Journal) -> None:
    journal.devices.open_watch("s1", "dev1", ["a"], T0)
    journal.devices.watch_heartbeat("s1", T0 + 10_000, unacked_since_ms=T0 + 2_000)
    got = journal.devices.watch("s1")
    assert got is not None and (got.heartbeat_ms, got.unacked_since_ms) == (T0 + 10_000, T0 + 2_000)
    assert journal.devices.stale_watches(T0 + 2_000) == []
    assert [w.stream_id for w in journal.devices.stale_watches(T0 + 2_001)] == ["s1"]
    journal.devices.watch_heartbeat("s1", T0 + 11_000)  # acknowledged since: owes nothing
    assert journal.devices.stale_watches(T0 + 9_000) == []


def test_request_close(journal: Journal) -> None:
    assert journal.devices.request_close("s1", T0) is False  # no such stream
    journal.devices.open_watch("s1", "dev1", ["a"], T0)
    journal.devices.open_watch("s2", "dev1", ["b"], T0)
    assert journal.devices.close_requested() == []
    assert journal.devices.request_close("s2", T0 + 1) is True
    assert journal.devices.request_close("s2", T0 + 9) is True  # again: keeps the first time
    assert journal.devices.close_requested() == ["s2"]
    got = journal.devices.watch("s2")
    assert got is not None and got.close_requested_ms == T0 + 1
    journal.devices.close_watch("s2")  # the stream ended: the request is gone with it
    assert journal.devices.close_requested() == []
    assert journal.devices.request_close("s2", T0 + 10) is False


def test_unacknowledged_ignores_acked_and_pruned_entries(journal: Journal) -> None:
    ids = [journal.outbox.add("a", "r", f"run{i}", "{}", T0 + i) for i in range(4)]
    journal.outbox.ack("dev1", [ids[1]], T0 + 10)
    journal.outbox.ack("dev2", [ids[2]], T0 + 10)  # another device's ack is not ours
    assert journal.outbox.unacknowledged("dev1", ids) == {ids[0], ids[2], ids[3]}
    journal.outbox.prune(T0 + 1)  # ids[0] is gone: nobody owes an ack for it
    assert journal.outbox.unacknowledged("dev1", ids) == {ids[2], ids[3]}
    assert journal.outbox.unacknowledged("dev1", []) == set()


# --- what a stream journals ------------------------------------------------------------------


def test_stream_progress_journals_heartbeats_and_ack_lag(journal: Journal) -> None:
    clock = ManualClock(T0)
    journal.devices.open_watch("s1", "dev1", ["a"], T0)
    progress = StreamProgress(journal, clock, "s1", "dev1", lambda: 900, opened_ms=T0)
    first, second = (journal.outbox.add("a", "r", f"run{i}", "{}", T0) for i in range(2))

    def row() -> tuple[int, int | None]:
        w = journal.devices.watch("s1")
        assert w is not None
        return w.heartbeat_ms, w.unacked_since_ms

    clock.advance(100)
    progress.sent(first)  # at T0+100; not written yet (the opening was 100 ms ago)
    clock.advance(100)
    progress.sent(second)  # at T0+200
    progress.beat()
    assert row() == (T0, None)
    clock.advance(100)
    progress.beat()  # T0+300: a third of the heartbeat since the opening
    assert row() == (T0 + 300, T0 + 100)
    journal.outbox.ack("dev1", [first], clock.now_ms())
    clock.advance(299)
    progress.beat()  # throttled: no write
    assert row() == (T0 + 300, T0 + 100)
    clock.advance(1)
    progress.beat()
    assert row() == (T0 + 600, T0 + 200)  # now the second is the oldest owed
    journal.outbox.ack("dev1", [second], clock.now_ms())
    clock.advance(300)
    progress.beat()
    assert row() == (T0 + 900, None)
    assert progress.tracked
    journal.devices.close_watch("s1")  # the row is gone: the stream should end
    clock.advance(300)
    progress.beat()
    assert not progress.tracked


# --- detector and remediation ----------------------------------------------------------------


class FakeContext:
    """What the two parts use of a ServiceContext: journal, config, poke."""

    def __init__(self, journal: Journal, **config: Any) -> None:
        self.journal = journal
        self.config = DaemonConfig(**{"stream_heartbeat_ms": HB, **config})
        self.pokes: list[tuple[str, ...]] = []

    def poke(self, *targets: str) -> None:
        self.pokes.append(targets)


def _detect(ctx: FakeContext, now_ms: int) -> list[Finding]:
    return NodeStreamDetector(ctx).detect(now_ms, frozenset())  # type: ignore[arg-type]


def test_the_stream_heartbeat_key() -> None:
    assert DaemonConfig().stream_heartbeat_ms == 15_000


@pytest.mark.parametrize(
    ("value", "ok"), [(1_000, True), (999, False), (30_000, True), (30_001, False)]
)
def test_the_stream_heartbeat_key_is_validated(tmp_path: Path, value: int, ok: bool) -> None:
    path = tmp_path / "palyra.toml"
    path.write_text(f"[rpc]\nstream_heartbeat_ms = {value}\n")
    if ok:
        assert load_config(path).stream_heartbeat_ms == value
    else:
        with pytest.raises(ConfigError, match="stream_heartbeat_ms must be 1000-30000"):
            load_config(path)


def test_the_detector_finds_streams_without_progress(journal: Journal) -> None:
    ctx = FakeContext(journal)
    _device(journal)
    journal.devices.open_watch("s1", "dev1", ["alerts", "ops"], T0)
    journal.devices.open_watch("s2", "gone", ["*"], T0)  # a device removed meanwhile
    journal.devices.open_watch("s3", "dev1", ["*"], T0)
    journal.devices.watch_heartbeat("s3", T0 + 4_000)
    assert _detect(ctx, T0 + 3_000) == []  # exactly the bound: not yet
    findings = _detect(ctx, T0 + 4_500)
    assert [f.subject for f in findings] == ["s1", "s2"]
    assert findings[0] == Finding(
        "node_stream",
        "s1",
        "warning",
        "phone's watch stream (channels alerts, ops) has made no progress for 4 s"
        " (no heartbeat: blocked in a send or wedged)",
        remediable=True,
    )
    assert findings[1].summary.startswith("gone's watch stream (all channels) has made no")


def test_the_detector_finds_a_beating_stream_whose_deliveries_are_not_acknowledged(
    journal: Journal,
) -> None:
    ctx = FakeContext(journal)
    _device(journal)
    journal.devices.open_watch("s1", "dev1", ["alerts"], T0)
    journal.devices.watch_heartbeat("s1", T0 + 9_800, unacked_since_ms=T0 + 5_000)
    assert _detect(ctx, T0 + 8_000) == []
    (finding,) = _detect(ctx, T0 + 10_000)
    assert finding.summary == (
        "phone's watch stream (channels alerts) has made no progress for 5 s"
        " (a delivery it sent is unacknowledged: the node is not reading)"
    )
    assert finding.remediable


def test_findings_are_not_remediable_while_node_rpc_is_silent(journal: Journal) -> None:
    ctx = FakeContext(journal, process_silence_ms=10_000)
    journal.devices.open_watch("s1", "dev1", ["a"], T0)
    journal.heartbeats.beat(ProcessHeartbeat("node_rpc", 1, "i", "running", 0, T0 + 5_000))
    (finding,) = _detect(ctx, T0 + 15_000)  # node_rpc beat 10 s ago: still alive
    assert finding.remediable
    (finding,) = _detect(ctx, T0 + 15_001)
    assert not finding.remediable and "node_rpc itself is silent" in finding.summary


def _finding(subject: str) -> Finding:
    return Finding("node_stream", subject, "warning", "stale")


def test_the_remediation_requests_the_close_and_pokes_node_rpc(journal: Journal) -> None:
    ctx = FakeContext(journal)
    fix = CloseStreamRemediation(ctx)  # type: ignore[arg-type]
    assert (fix.domain, fix.action) == ("node_stream", "close_stream")
    journal.devices.open_watch("s1", "dev1", ["a"], T0)
    now = T0 + 3_001
    assert fix.apply(_finding("s1"), now) == "asked node_rpc to close the stream of device dev1"
    assert journal.devices.close_requested() == ["s1"] and ctx.pokes == [("node_rpc",)]
    # a second attempt before node_rpc acted: no new request, another poke
    assert fix.apply(_finding("s1"), now + 1_000).startswith("close already requested 1.0 s")
    assert ctx.pokes == [("node_rpc",)] * 2
    got = journal.devices.watch("s1")
    assert got is not None and got.close_requested_ms == now
    # node_rpc never closed it: the attempt fails (and the incident escalates)
    with pytest.raises(RemediationFailed, match="node_rpc has not closed it"):
        fix.apply(_finding("s1"), now + CLOSE_GRACE_MS)
    journal.devices.close_watch("s1")  # node_rpc closed it after all
    assert fix.apply(_finding("s1"), now + CLOSE_GRACE_MS) == "already closed"
    assert fix.apply(_finding("never"), now) == "already closed"


def test_the_remediation_leaves_a_stream_that_recovered(journal: Journal) -> None:
    ctx = FakeContext(journal)
    journal.devices.open_watch("s1", "dev1", ["a"], T0)
    journal.devices.watch_heartbeat("s1", T0 + 2_500)  # progress after the sweep saw it
    done = CloseStreamRemediation(ctx).apply(_finding("s1"), T0 + 3_001)  # type: ignore[arg-type]
    assert done == "the stream made progress again; left open"
    assert journal.devices.close_requested() == [] and ctx.pokes == []


def test_the_remediation_fails_when_the_journal_does(journal: Journal) -> None:
    ctx = FakeContext(journal)
    journal.close()
    with pytest.raises(RemediationFailed, match="could not request the close"):
        CloseStreamRemediation(ctx).apply(_finding("s1"), T0)  # type: ignore[arg-type]


# --- a real daemon and a real node -----------------------------------------------------------


@pytest.fixture(scope="module")
def paired(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Daemon, Path, str]]:
    """A daemon with 1 s stream heartbeats and one paired node home: (daemon, home, id)."""
    root = tmp_path_factory.mktemp("streams")
    d = Daemon(root / "daemon")
    d.home.config.write_text(RPC_ANY_PORTS + f"stream_heartbeat_ms = {HB}\n")
    try:
        op = start(d)
        home = root / "node"
        device_id = pin_pair(op, home, "--name", "phone")["device_id"]
        yield d, home, device_id
    finally:
        d.close()


@contextlib.contextmanager
def self_healing_context(d: Daemon) -> Iterator[ServiceContext]:
    """A real ServiceContext, as the self-healing process has one (its pokes go straight
    to node_rpc's wake FIFO; the supervisor end of its pipe is ours and unread)."""
    ours, theirs = multiprocessing.Pipe()
    ctx = ServiceContext("self_healing", d.home, theirs, "test", 0)
    try:
        yield ctx
    finally:
        ctx.journal.close()
        ours.close()
        theirs.close()


def _stream_of(op: Operator, device_id: str, not_: str | None = None) -> DeviceWatch | None:
    for w in op.d.journal.devices.watches():
        if w.device_id == device_id and w.stream_id != not_:
            return w
    return None


def _deliver(d: Daemon, channel: str, run_id: str, payload: str = "") -> int:
    """Queue a channel delivery as the executor does (journal, then poke node_rpc)."""
    run = {"run_id": run_id, "status": "succeeded", "pad": payload}
    outbox_id = d.journal.outbox.add(channel, "r", run_id, orjson.dumps(run).decode(), now())
    poke_fifo(d.home.wake_fifo("node_rpc"))
    return outbox_id


def now() -> int:
    return time.time_ns() // 1_000_000


def test_a_stopped_node_is_found_by_its_ack_lag_and_its_stream_closed(
    paired: tuple[Daemon, Path, str],
) -> None:
    d, home, device_id = paired
    op = Operator(d)
    watch = node_bg(home, "watch", "--channel", "phone", "--json")
    assert watch.stdout is not None
    try:
        stream = wait_until(lambda: _stream_of(op, device_id), timeout=20)
        sid = stream.stream_id

        # running: the heartbeat advances (every third of a second), nothing is stale
        def beat_after(ms: int) -> int | None:
            w = d.journal.devices.watch(sid)
            return w.heartbeat_ms if w is not None and w.heartbeat_ms > ms else None

        first = wait_until(lambda: beat_after(stream.opened_ms), timeout=5)
        wait_until(lambda: beat_after(first), timeout=5)
        delivered = _deliver(d, "phone", "run-1")
        assert orjson.loads(watch.stdout.readline())["delivery_id"] == delivered
        wait_until(lambda: not d.journal.outbox.unacknowledged(device_id, [delivered]))
        with self_healing_context(d) as ctx:
            detector = NodeStreamDetector(ctx)
            assert detector.detect(now(), frozenset()) == []

            # stopped: it keeps its TCP connection, the daemon's sends succeed (the kernel
            # buffers them) and the stream keeps beating; only the ack never comes
            os.kill(watch.pid, signal.SIGSTOP)
            stopped_delivery = _deliver(d, "phone", "run-2")
            wait_until(lambda: (w := d.journal.devices.watch(sid)) and w.unacked_since_ms)
            findings = wait_until(lambda: detector.detect(now(), frozenset()), timeout=10)
            (finding,) = findings
            assert finding.subject == sid and finding.remediable
            assert "phone's watch stream (channels phone)" in finding.summary
            assert "unacknowledged" in finding.summary  # its heartbeat is fresh

            # remediated: node_rpc cancels the call and the stream's end removes its row
            t = time.monotonic()
            done = CloseStreamRemediation(ctx).apply(finding, now())
            assert done == f"asked node_rpc to close the stream of device {device_id}"
            wait_until(lambda: d.journal.devices.watch(sid) is None, timeout=5)
            closed_s = time.monotonic() - t
            assert detector.detect(now(), frozenset()) == []
            assert CloseStreamRemediation(ctx).apply(finding, now()) == "already closed"

        # running again: the node reconnects on a new stream and acknowledges the delivery
        os.kill(watch.pid, signal.SIGCONT)
        wait_until(lambda: _stream_of(op, device_id, not_=sid), timeout=20)
        wait_until(lambda: not d.journal.outbox.unacknowledged(device_id, [stopped_delivery]))
        print(f"stale stream closed {closed_s * 1000:.0f} ms after the remediation")
        assert closed_s < 5
        watch.terminate()
        _, err = watch.communicate(timeout=20)
        assert "note: connection to the daemon lost" in err  # the node saw the close
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(watch.pid, signal.SIGCONT)
            watch.terminate()
        watch.communicate(timeout=20)


def test_a_thread_blocked_in_a_send_stops_beating_and_the_close_frees_it(
    paired: tuple[Daemon, Path, str],
) -> None:
    d, home, device_id = paired
    op = Operator(d)
    wait_until(lambda: _stream_of(op, device_id) is None)  # another test's node has gone
    # A raw client on the device's identity opens Watch and never reads: once the HTTP/2
    # windows are full, the daemon's serving thread blocks in a send and stops beating.
    payload = "x" * 60_000
    ids = [_deliver(d, "bulk", f"bulk-{i}", payload) for i in range(300)]  # ~18 MB
    channel = node_channel(NodeHome(home).require_identity())
    call = pb_grpc.NodeStub(channel).Watch(pb.WatchRequest(channels=["bulk"]))
    try:
        stream = wait_until(lambda: _stream_of(op, device_id), timeout=20)
        with self_healing_context(d) as ctx:
            finding = wait_until(
                lambda: [
                    f
                    for f in NodeStreamDetector(ctx).detect(now(), frozenset())
                    if f.subject == stream.stream_id and "no heartbeat" in f.summary
                ],
                timeout=15,
            )[0]
            CloseStreamRemediation(ctx).apply(finding, now())
            wait_until(lambda: d.journal.devices.watch(stream.stream_id) is None, timeout=5)
    finally:
        call.cancel()
        channel.close()
    # nothing was acknowledged: the next stream of the device gets all of it again
    assert d.journal.outbox.unacknowledged(device_id, ids) == set(ids)
    d.journal.outbox.ack(device_id, ids, now())  # leave nothing owed for other tests


def test_a_node_stuck_on_a_full_stdout_pipe_is_found_by_its_ack_lag(
    paired: tuple[Daemon, Path, str],
) -> None:
    d, home, device_id = paired
    op = Operator(d)
    wait_until(lambda: _stream_of(op, device_id) is None)  # another test's node has gone
    # Nobody reads the node's stdout: once the pipe is full its main loop blocks in a print
    # and stops acknowledging, while its gRPC threads still read and answer keepalive pings.
    watch = node_bg(home, "watch", "--channel", "pipe", "--json")
    try:
        stream = wait_until(lambda: _stream_of(op, device_id), timeout=20)
        ids = [_deliver(d, "pipe", f"pipe-{i}", "y" * 40_000) for i in range(4)]  # > 64 KiB
        with self_healing_context(d) as ctx:
            (finding,) = wait_until(
                lambda: NodeStreamDetector(ctx).detect(now(), frozenset()), timeout=15
            )
            assert finding.subject == stream.stream_id
            assert "unacknowledged" in finding.summary  # the stream itself kept beating
            CloseStreamRemediation(ctx).apply(finding, now())
            wait_until(lambda: d.journal.devices.watch(stream.stream_id) is None, timeout=5)
        assert d.journal.outbox.unacknowledged(device_id, ids)  # still owed: sent again later
    finally:
        watch.kill()
        watch.communicate(timeout=20)
    d.journal.outbox.ack(device_id, ids, now())  # leave nothing owed for other tests
