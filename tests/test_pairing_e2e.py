"""SPEC §4.4 end to end: a real palyrad (node_rpc's two listeners) and real ``palyra-node``
processes, each with its own home.

The operator's side is ``palyra node ...``; the journal is read only to check what the
daemon recorded (device state, certificate fingerprint, open watch streams).
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from certs.fingerprints import spki_sha256
from node.client import renew_now, renewal_due_at_ms
from node.context import NodeContext
from node.errors import NodeError
from node.home import NodeHome
from routines.timefmt import now_ms
from tests.daemon_harness import RPC_ANY_PORTS, Daemon, palyra, routine, shell, wait_until

BIN = Path(sys.executable).parent
pytestmark = pytest.mark.timeout(120)


# ---------------------------------------------------------------------------------------
# both sides


def node(
    home: Path, *args: str, stdin: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "palyra-node"), "--home", str(home), *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def node_bg(home: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(BIN / "palyra-node"), "--home", str(home), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error: ")]


class Operator:
    """The daemon side of pairing, as the operator does it (``palyra node ...``)."""

    def __init__(self, daemon: Daemon) -> None:
        self.d = daemon
        self.root = daemon.root

    def pair_code(self, method: str, *, auto_approve: bool = False) -> dict[str, Any]:
        args = ["node", "pair-code", "--method", method, "--json"]
        args += ["--auto-approve"] if auto_approve else []
        return dict(orjson.loads(palyra(self.root, *args).stdout))

    def pending(self) -> list[dict[str, Any]]:
        return list(orjson.loads(palyra(self.root, "node", "pending", "--json").stdout)["requests"])

    def decide(self, request_id: str, approve: bool) -> None:
        palyra(self.root, "node", "approve" if approve else "reject", request_id)

    def revoke(self, device_id: str) -> None:
        palyra(self.root, "node", "revoke", device_id)

    def device(self, device_id: str) -> Any:
        return self.d.journal.devices.get(device_id)

    def watching(self, device_id: str) -> bool:
        return any(w.device_id == device_id for w in self.d.journal.devices.watches())


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def rpc_daemon(tmp_path: Path) -> Iterator[Daemon]:
    d = Daemon(tmp_path / "daemon")
    (d.root / "palyra.toml").write_text(RPC_ANY_PORTS)
    try:
        yield d
    finally:
        d.close()


def start(d: Daemon, *, ttl_s: int | None = None) -> Operator:
    if ttl_s is not None:
        with open(d.root / "palyra.toml", "a") as f:
            f.write(f"[pki]\ndevice_cert_ttl_s = {ttl_s}\n")
    d.start()

    def endpoints() -> dict[str, Any] | None:
        st = orjson.loads(palyra(d.root, "daemon", "status", "--json").stdout)
        ep = st.get("endpoints") or {}
        return ep if ep.get("pairing") and ep.get("node") else None

    wait_until(endpoints, timeout=30)
    return Operator(d)


def host_port(address: str) -> tuple[str, str]:
    host, _, port = address.rpartition(":")
    return host.strip("[]"), port


def pin_pair(op: Operator, home: Path, *extra: str) -> dict[str, Any]:
    code = op.pair_code("pin", auto_approve=True)
    host, port = host_port(code["address"])
    proc = node(
        home, "pair", "--host", host, "--port", port, "--pin", "-", "--json", *extra,
        stdin=code["code"] + "\n",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return dict(orjson.loads(proc.stdout))


# ---------------------------------------------------------------------------------------
# pairing


def test_pin_pairing_then_status_and_routines(rpc_daemon: Daemon, tmp_path: Path) -> None:
    rpc_daemon.write_definitions([routine("hello", {"kind": "manual"}, shell("echo hi"))])
    op = start(rpc_daemon)
    home = tmp_path / "node"
    paired = pin_pair(op, home, "--name", "phone")
    assert set(paired) == {"device_id", "name", "address", "cert_expires_at"}
    assert paired["name"] == "phone"
    device = op.device(paired["device_id"])
    assert device is not None and device.name == "phone" and device.state == "active"
    assert stat_mode(home) == 0o700
    ident_dir = home / os.readlink(home / "identity")
    assert stat_mode(ident_dir / "device.key") == 0o600

    status = node(home, "status", "--json")
    assert status.returncode == 0, status.stderr
    st = orjson.loads(status.stdout)
    assert st["device_id"] == paired["device_id"] and st["address"] == paired["address"]
    assert st["daemon"]["running"] is True
    assert {p["name"] for p in st["daemon"]["processes"]} >= {"scheduler", "node_rpc"}

    mine = orjson.loads(node(home, "routines", "--json").stdout)
    theirs = orjson.loads(palyra(rpc_daemon.root, "routines", "list", "--json").stdout)
    assert [r["id"] for r in mine["routines"]] == [r["id"] for r in theirs["routines"]] == ["hello"]


def stat_mode(path: Path) -> int:
    return os.stat(path).st_mode & 0o777


def test_qr_pairing_waits_for_approval_showing_the_key(rpc_daemon: Daemon, tmp_path: Path) -> None:
    op = start(rpc_daemon)
    code = op.pair_code("qr")
    proc = subprocess.Popen(
        [str(BIN / "palyra-node"), "--home", str(tmp_path / "n"), "pair", "--uri", "-", "--json"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert proc.stdin is not None
    proc.stdin.write(code["uri"] + "\n")
    proc.stdin.close()
    proc.stdin = None
    pending = wait_until(op.pending, timeout=30)
    assert len(pending) == 1
    op.decide(pending[0]["request_id"], True)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    m = re.search(r"note: waiting for approval: request (\S+), key ([0-9a-f]{16});", err)
    assert m and m.group(1) == pending[0]["request_id"]
    assert pending[0]["public_key_sha256"].startswith(m.group(2))
    assert orjson.loads(out)["device_id"]
    # the token was consumed: the same URI pairs nobody else
    again = node(tmp_path / "other", "pair", "--uri", code["uri"])
    assert again.returncode == 1
    assert error_lines(again.stderr)[0].startswith("error: wrong PIN or code expired (")


def test_wrong_pin_rejected_request_and_closed_window(rpc_daemon: Daemon, tmp_path: Path) -> None:
    op = start(rpc_daemon)
    code = op.pair_code("pin")
    host, port = host_port(code["address"])
    wrong = "135790" if code["code"] != "135790" else "246801"
    proc = node(tmp_path / "a", "pair", "--host", host, "--port", port, "--pin", wrong)
    assert proc.returncode == 1
    assert error_lines(proc.stderr) == [
        "error: wrong PIN or code expired (check the PIN, or ask the operator for a new code: "
        "palyra node pair-code)"
    ]
    assert NodeHome(tmp_path / "a").load_identity() is None

    # the right PIN still works in the same window; the operator rejects the request
    bg = subprocess.Popen(
        [str(BIN / "palyra-node"), "--home", str(tmp_path / "b"), "pair", "--host", host,
         "--port", port, "--pin", code["code"]],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    pending = wait_until(op.pending, timeout=30)
    op.decide(pending[0]["request_id"], False)
    _, err = bg.communicate(timeout=60)
    assert bg.returncode == 1
    assert len(error_lines(err)) == 1
    assert error_lines(err)[0].startswith("error: pairing request rejected")

    # the window admitted its one request: it is closed now
    late = node(tmp_path / "c", "pair", "--host", host, "--port", port, "--pin", code["code"])
    assert late.returncode == 1
    assert error_lines(late.stderr)[0].startswith("error: wrong PIN or code expired (")


def test_a_qr_uri_with_another_ca_is_refused_before_sending(
    rpc_daemon: Daemon, tmp_path: Path
) -> None:
    op = start(rpc_daemon)
    code = op.pair_code("qr")
    tampered = re.sub(r"ca=sha256:[0-9a-f]{64}", "ca=sha256:" + "ab" * 32, code["uri"])
    proc = node(tmp_path / "n", "pair", "--uri", tampered)
    assert proc.returncode == 1
    assert error_lines(proc.stderr)[0].startswith(
        "error: the pairing listener is not the daemon you were shown ("
    )
    # nothing was sent: the token still pairs
    ok = node(tmp_path / "n", "pair", "--uri", code["uri"], "--wait", "0")
    assert "note: waiting for approval" in ok.stderr


# ---------------------------------------------------------------------------------------
# commands


def test_commands_act_on_the_daemon(rpc_daemon: Daemon, tmp_path: Path) -> None:
    rpc_daemon.write_definitions(
        [
            routine("hello", {"kind": "manual"}, shell("echo hi")),
            routine("deploy", {"kind": "hook", "hook_id": "deploy"}, shell("true")),
        ]
    )
    op = start(rpc_daemon)
    home = tmp_path / "n"
    pin_pair(op, home)
    assert node(home, "routines", "pause", "hello").stdout == "disabled hello\n"
    listed = orjson.loads(palyra(rpc_daemon.root, "routines", "list", "--json").stdout)
    assert {r["id"]: r["state"] for r in listed["routines"]}["hello"] == "disabled"
    refused = node(home, "run-now", "hello")
    assert refused.returncode == 1 and len(error_lines(refused.stderr)) == 1
    assert node(home, "routines", "resume", "hello").stdout == "enabled hello\n"
    run = node(home, "run-now", "hello", "--payload", '{"x": 1}', "--json")
    assert run.returncode == 0, run.stderr
    result = orjson.loads(run.stdout)
    assert set(result) == {"run_id", "status", "error_kind"}
    missing = node(home, "run-now", "nope")
    assert missing.returncode == 1 and len(error_lines(missing.stderr)) == 1
    fired = node(home, "hooks", "fire", "deploy")
    assert (fired.returncode, fired.stdout) == (0, "fired hook deploy\n")
    bad = node(home, "run-now", "hello", "--payload", "{")
    assert bad.returncode == 2


def test_revocation_stops_commands_and_streams(rpc_daemon: Daemon, tmp_path: Path) -> None:
    op = start(rpc_daemon)
    home = tmp_path / "n"
    device_id = pin_pair(op, home)["device_id"]
    watch = node_bg(home, "watch")
    wait_until(lambda: op.watching(device_id), timeout=30)
    op.revoke(device_id)
    _, err = watch.communicate(timeout=30)
    assert watch.returncode == 1
    assert error_lines(err) == [
        "error: device revoked (pair again: palyra-node pair --uri URI, or --host H --port P)"
    ]
    proc = node(home, "status", "--json")
    assert proc.returncode == 1 and proc.stdout == ""
    assert error_lines(proc.stderr)[0].startswith("error: device revoked (")


def test_stopped_daemon_is_unreachable(rpc_daemon: Daemon, tmp_path: Path) -> None:
    op = start(rpc_daemon)
    home = tmp_path / "n"
    paired = pin_pair(op, home)
    rpc_daemon.stop()
    proc = node(home, "status")
    assert proc.returncode == 1
    assert error_lines(proc.stderr) == [
        f"error: daemon unreachable (is palyrad running? address {paired['address']})"
    ]


# ---------------------------------------------------------------------------------------
# watch


def test_watch_delivers_acks_and_survives_a_restart(rpc_daemon: Daemon, tmp_path: Path) -> None:
    # a fixed node port: the restarted daemon must listen where the node was told to go
    (rpc_daemon.root / "palyra.toml").write_text(
        f"[rpc]\npairing_port = 0\nnode_port = {free_port()}\n"
    )
    delivery = {"mode": "channel", "channel": "phone"}
    rpc_daemon.write_definitions(
        [routine("hello", {"kind": "manual"}, shell("echo hi"), delivery=delivery)]
    )
    op = start(rpc_daemon)
    home = tmp_path / "n"
    pin_pair(op, home)
    watch = node_bg(home, "watch", "--channel", "phone", "--events", "--json", "--count", "3")
    assert watch.stdout is not None
    palyra(rpc_daemon.root, "routines", "run-now", "hello")
    first = orjson.loads(watch.stdout.readline())
    assert first["type"] == "delivery" and first["channel"] == "phone"
    assert first["routine_id"] == "hello" and first["run"]["status"] == "succeeded"
    palyra(rpc_daemon.root, "events", "emit", "deploy", "--payload", '{"v": 2}')
    event = orjson.loads(watch.stdout.readline())
    assert event["type"] == "event" and event["event"] == "operator.deploy"
    assert event["payload"] == {"payload": {"v": 2}}  # the journal's event body, as emitted
    palyra(rpc_daemon.root, "daemon", "restart")
    wait_until(lambda: rpc_daemon.status().running, timeout=30)
    palyra(rpc_daemon.root, "routines", "run-now", "hello")
    second = orjson.loads(watch.stdout.readline())
    assert second["type"] == "delivery" and second["delivery_id"] != first["delivery_id"]
    _, err = watch.communicate(timeout=60)
    assert watch.returncode == 0, err
    # both were acknowledged: a new watch gets nothing old
    again = node_bg(home, "watch", "--json", "--count", "1")
    assert again.stdout is not None
    palyra(rpc_daemon.root, "routines", "run-now", "hello")
    third = orjson.loads(again.stdout.readline())
    assert third["delivery_id"] not in (first["delivery_id"], second["delivery_id"])
    again.communicate(timeout=60)


def test_watch_ctrl_c_exits_quietly(rpc_daemon: Daemon, tmp_path: Path) -> None:
    op = start(rpc_daemon)
    home = tmp_path / "n"
    device_id = pin_pair(op, home)["device_id"]
    watch = node_bg(home, "watch")
    wait_until(lambda: op.watching(device_id), timeout=30)
    watch.send_signal(signal.SIGINT)
    _, err = watch.communicate(timeout=30)
    assert watch.returncode == 0 and error_lines(err) == [] and "Traceback" not in err


# ---------------------------------------------------------------------------------------
# renewal


@pytest.mark.timeout(180)
def test_renewal_keeps_a_device_working_past_its_first_certificate(
    rpc_daemon: Daemon, tmp_path: Path
) -> None:
    # 30 s certificates, real time: renewal falls due 20 s after issuance; the first
    # certificate expires 30 s after it. A watch runs across both instants.
    delivery = {"mode": "channel", "channel": "phone"}
    rpc_daemon.write_definitions(
        [routine("hello", {"kind": "manual"}, shell("true"), delivery=delivery)]
    )
    op = start(rpc_daemon, ttl_s=30)
    home = tmp_path / "n"
    pin_pair(op, home)
    first = NodeHome(home).require_identity()
    watch = node_bg(home, "watch", "--json")
    assert watch.stdout is not None
    try:
        assert node(home, "status").returncode == 0
        assert NodeHome(home).require_identity().cert_sha256 == first.cert_sha256  # not due
        due = renewal_due_at_ms(first.not_before_ms, first.not_after_ms)
        assert due < first.not_after_ms
        # the watch renews by itself when due, with no command run meanwhile
        wait_until(
            lambda: NodeHome(home).require_identity().cert_sha256 != first.cert_sha256,
            timeout=60,
            interval=0.2,
        )
        assert now_ms() >= due
        wait_until(lambda: now_ms() > first.not_after_ms + 500, timeout=60, interval=0.2)
        assert node(home, "status").returncode == 0  # past the first certificate's expiry
        palyra(rpc_daemon.root, "routines", "run-now", "hello")
        line = orjson.loads(watch.stdout.readline())  # the watch is still served
        assert line["type"] == "delivery" and line["routine_id"] == "hello"
        assert watch.poll() is None
    finally:
        watch.terminate()
        watch.communicate(timeout=30)


def test_a_renewal_from_a_superseded_certificate_revokes_the_device(
    rpc_daemon: Daemon, tmp_path: Path
) -> None:
    op = start(rpc_daemon)
    home = tmp_path / "n"
    device_id = pin_pair(op, home)["device_id"]
    stolen = NodeHome(home).require_identity()  # a copy taken now ...
    ctx = NodeContext(NodeHome(home), now_ms, lambda _: None)
    with NodeHome(home).locked():
        renewed = renew_now(ctx, stolen)  # ... superseded by the owner's renewal
    assert renewed.cert_sha256 != stolen.cert_sha256
    assert spki_sha256(renewed.key) == spki_sha256(stolen.key)
    assert op.device(device_id).cert_sha256 == renewed.cert_sha256
    assert node(home, "status").returncode == 0
    # the superseded certificate still works for its grace hour, but may not renew: a
    # renewal from it shows a copy exists, and revokes the device
    thief = NodeHome(tmp_path / "thief")
    thief.store_identity(stolen)
    with thief.locked(), pytest.raises(NodeError) as exc:
        renew_now(NodeContext(thief, now_ms, lambda _: None), stolen)
    assert exc.value.line().startswith("device revoked (")
    assert op.device(device_id).state == "revoked"
    assert error_lines(node(home, "status").stderr)[0].startswith("error: device revoked (")
