"""Channel delivery through real ``palyra-node watch`` processes (SPEC §7): every entry
created after pairing reaches the device at least once and in order, acknowledged; what a
watcher did not acknowledge — it was away, or killed mid-stream — is sent again when it
comes back; ``silent_policy`` and ``failure_channel`` decide what is queued at all. Also
the PIN window's 20-failure cap, through the real node command."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from palyra_proto.pairing import parse_address
from tests.daemon_harness import BIN, RPC_ANY_PORTS, Daemon, palyra, routine, shell, wait_until

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    d = Daemon(tmp_path_factory.mktemp("delivery") / "home")
    d.home.config.write_text(RPC_ANY_PORTS)
    chan = {"mode": "channel", "channel": "ops"}
    d.write_definitions(
        [
            routine("ok", {"kind": "manual"}, shell("true"), delivery=chan),
            routine("bad", {"kind": "manual"}, shell("exit 3"), delivery={**chan,
                    "failure_channel": "alarms"}),
            routine("quiet", {"kind": "manual"}, shell("true"), delivery={**chan,
                    "silent_policy": "failure_only"}),
            routine("audit", {"kind": "manual"}, shell("exit 1"), delivery={**chan,
                    "silent_policy": "audit_only"}),
        ]
    )  # fmt: skip
    try:
        d.start()
        yield d
    finally:
        d.close()


def _node(home: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "palyra-node"), "--home", str(home), *args],
        input=stdin, capture_output=True, text=True, timeout=90,
    )  # fmt: skip


def _pair(d: Daemon, home: Path) -> str:
    out = palyra(d.root, "node", "pair-code", "--method", "qr", "--auto-approve", "--json")
    proc = _node(home, "pair", "--uri", "-", "--json", stdin=orjson.loads(out.stdout)["uri"])
    assert proc.returncode == 0, proc.stderr
    return str(orjson.loads(proc.stdout)["device_id"])


def _run(d: Daemon, rid: str) -> str:
    out = palyra(d.root, "routines", "run-now", rid, "--json")
    run_id = str(orjson.loads(out.stdout)["run_id"])
    wait_until(lambda: (r := d.journal.runs.get(run_id)) is not None and r.finished_at_ms)
    return run_id


def _watch(home: Path, *args: str) -> list[dict[str, Any]]:
    proc = _node(home, "watch", "--json", *args)
    assert proc.returncode == 0, proc.stderr
    return [orjson.loads(line) for line in proc.stdout.splitlines()]


def test_nothing_is_lost_while_away_or_when_killed_mid_stream(
    daemon: Daemon, tmp_path: Path
) -> None:
    home = tmp_path / "n"
    device_id = _pair(daemon, home)
    before = _run(daemon, "ok")  # created before this watcher ever connects: still owed
    first = _watch(home, "--channel", "ops", "--count", "1")
    assert [m["run"]["run_id"] for m in first] == [before]
    away = [_run(daemon, "ok") for _ in range(3)]  # nobody watching
    # a watcher killed mid-stream, right after its first line (acknowledged or not)
    proc = subprocess.Popen(
        [str(BIN / "palyra-node"), "--home", str(home), "watch", "--json", "--channel", "ops"],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    assert orjson.loads(proc.stdout.readline())["run"]["run_id"] == away[0]
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    later = _run(daemon, "ok")
    # the run's end and its delivery are two writes (finalize, then deliver): wait for the
    # entry itself, or a loaded machine reads the outbox in between
    wait_until(
        lambda: any(
            o.run_id == later
            for o in daemon.journal.outbox.for_device(device_id, ["ops"], 0, 0, 100)
        )
    )
    owed = daemon.journal.outbox.for_device(device_id, ["ops"], 0, 0, 100)
    owed_runs = [orjson.loads(o.payload)["run_id"] for o in owed]
    assert owed_runs in ([*away, later], [*away[1:], later])  # away[0] acked or not
    rest = _watch(home, "--channel", "ops", "--count", str(len(owed)))
    assert [m["run"]["run_id"] for m in rest] == owed_runs  # all of it, in order
    assert daemon.journal.outbox.for_device(device_id, ["ops"], 0, 0, 100) == []


def test_silent_policy_and_failure_channel_decide_what_is_delivered(
    daemon: Daemon, tmp_path: Path
) -> None:
    home = tmp_path / "n"
    _pair(daemon, home)
    for rid in ("quiet", "audit", "bad", "ok"):
        _run(daemon, rid)
    got = _watch(home, "--count", "2")  # every channel
    assert [(m["routine_id"], m["channel"]) for m in got] == [("bad", "alarms"), ("ok", "ops")]
    assert got[0]["run"]["status"] == "failed" and got[0]["run"]["exit_code"] == 3


def test_twenty_wrong_pins_close_the_window(daemon: Daemon, tmp_path: Path) -> None:
    # The node's own pairing code (node.pairing), in-process: 20 attempts as 20 processes
    # would spend 10 s on Python start-up. The last, right, attempt is the real command.
    from node.context import NodeContext
    from node.errors import NodeError
    from node.home import NodeHome
    from node.pairing import pair_with_pin
    from routines.timefmt import now_ms

    out = palyra(daemon.root, "node", "pair-code", "--method", "pin", "--json")
    window = orjson.loads(out.stdout)
    host, port = parse_address(window["address"])
    right = window["code"]
    wrong = [f"{n:06d}" for n in range(271_828, 271_828 + 40) if f"{n:06d}" != right][:20]
    ctx = NodeContext(NodeHome(tmp_path / "guess"), now_ms, lambda _: None)
    for pin in wrong:
        with pytest.raises(NodeError, match="wrong PIN or code expired"):
            pair_with_pin(ctx, host, port, pin, "guesser", 10)
    proc = _node(tmp_path / "right", "pair", "--host", host, "--port", str(port),
                 "--pin", "-", stdin=right)  # fmt: skip
    assert proc.returncode == 1  # the right PIN too: the window is closed
    assert "wrong PIN or code expired" in proc.stderr
    windows = daemon.journal.pairing.windows(1)
    assert (windows[0].failures, windows[0].close_reason) == (20, "failures")
    assert windows[0].failure_peers == ("127.0.0.1",)
