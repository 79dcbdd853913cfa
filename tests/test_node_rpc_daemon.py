"""node_rpc in a real daemon: the server certificate follows ``pair-code --host`` without a
restart (dynamic credentials), a busy port leaves the rest of the daemon running, and the
daemon's home never holds a device key."""

from __future__ import annotations

import socket
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
from cryptography import x509

from certs.server_files import san_names
from certs.verify import fetch_presented_chain
from palyra_proto.pairing import parse_address
from tests.daemon_harness import BIN, Daemon, palyra, started_with_listeners, wait_until

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with started_with_listeners(tmp_path_factory.mktemp("noderpc") / "home") as d:
        yield d


def _served_names(address: str) -> list[str]:
    host, port = parse_address(address)
    leaf = x509.load_der_x509_certificate(fetch_presented_chain(host, port, 5)[0])
    return san_names(leaf)


def test_pair_code_host_reissues_the_served_certificate_without_a_restart(
    daemon: Daemon,
) -> None:
    pid = daemon.status().process("node_rpc")
    before = _served_names(daemon.status().endpoints["pairing"] or "")
    assert "box.example.net" not in before
    assert {"localhost", "127.0.0.1", "::1"} <= set(before)
    out = palyra(daemon.root, "node", "pair-code", "--host", "box.example.net", "--json")
    assert orjson.loads(out.stdout)["address"].startswith("box.example.net:")
    after = _served_names(daemon.status().endpoints["pairing"] or "")
    assert "box.example.net" in after and set(before) <= set(after)
    node_address = daemon.status().endpoints["node"] or ""
    assert "box.example.net" in _served_names(node_address)  # both listeners
    assert daemon.status().process("node_rpc") == pid  # same process: no restart


def test_pairing_leaves_no_device_key_in_the_daemon_home(daemon: Daemon, tmp_path: Path) -> None:
    out = palyra(daemon.root, "node", "pair-code", "--method", "qr", "--auto-approve", "--json")
    uri = orjson.loads(out.stdout)["uri"]
    node_home = tmp_path / "node"
    proc = subprocess.run(
        [str(BIN / "palyra-node"), "--home", str(node_home), "pair", "--uri", "-", "--json"],
        input=uri,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    key_path = node_home / "identity" / "device.key"  # identity -> identity.<random>/
    device_key = key_path.read_bytes()
    assert b"PRIVATE KEY" in device_key
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(key_path.resolve().parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(node_home.stat().st_mode) == 0o700
    keys = []
    for path in daemon.root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            assert device_key not in data, f"the device key is in {path}"
            if b"PRIVATE KEY" in data:
                keys.append(path.relative_to(daemon.root))
                assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert sorted(map(str, keys)) == ["certs/ca.key", "certs/server.key"]
    assert stat.S_IMODE(daemon.home.certs_dir.stat().st_mode) == 0o700


def test_a_busy_port_leaves_the_daemon_up_with_that_endpoint_null(tmp_path: Path) -> None:
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen(1)
    busy = blocker.getsockname()[1]
    d = Daemon(tmp_path / "home")
    d.home.config.write_text(f"[rpc]\npairing_port = {busy}\nnode_port = 0\n")
    try:
        st = d.start()
        assert st.all_ready
        assert st.endpoints["pairing"] is None
        assert st.endpoints["node"] is not None
        out = palyra(d.root, "node", "pair-code", "--json", check=False)
        assert out.returncode == 1 and "pairing listener is not up" in out.stderr
        time.sleep(0.5)
        assert d.status().process("node_rpc").restarts == 0  # type: ignore[union-attr]
    finally:
        blocker.close()
        d.close()
    wait_until(lambda: not d.status().running, timeout=10)


def test_a_second_daemon_cannot_share_a_listener_port(daemon: Daemon, tmp_path: Path) -> None:
    # gRPC's SO_REUSEPORT default would let both bind, and split connections between them
    _, taken = parse_address(daemon.status().endpoints["node"] or "")
    other = Daemon(tmp_path / "other")
    other.home.config.write_text(f"[rpc]\npairing_port = 0\nnode_port = {taken}\n")
    try:
        assert other.start().endpoints["node"] is None
    finally:
        other.close()
