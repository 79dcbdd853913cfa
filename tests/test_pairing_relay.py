"""PIN pairing through a relay that sees every byte (SPEC §5, issue 10's "done when").

The relay terminates TLS on both sides and copies the plaintext (HTTP/2 frames, gRPC
messages) between a real ``palyra-node pair`` and a real daemon's pairing listener,
recording everything:

- with the daemon's own TLS keys it is a perfect eavesdropper: the pairing succeeds, and
  nothing it saw contains the PIN or a hash of it;
- with its own CA it is a man in the middle: the node's MAC covers the CA it was shown, so
  the daemon refuses it — a counted failure, no request, no certificate;
- rewriting a PAKE message (either direction) with a valid one of its own makes the keys
  differ, so key confirmation fails on both sides: a counted failure, no certificate.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import select
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

from certs import cert_pem, create_authority, generate_private_key, issue_server_certificate
from certs.keys import private_key_pem
from palyra_proto.pairing import DaemonPake, NodePake, parse_address
from palyrad.runtime.control_client import request
from tests.daemon_harness import BIN, Daemon, started_with_listeners, wait_until

pytestmark = pytest.mark.timeout(120)

Rewrite = Callable[[bytes], bytes]
HOLD_BACK = 96  # longer than either pattern below
# The node's PinStart: gRPC prefix (uncompressed, 35 bytes) + field 1 (33-byte message).
NODE_PAKE = re.compile(rb"\x00\x00\x00\x00\x23\x0a\x21(.{33})", re.S)
# The daemon's PinStartReply: window_id (26-char ULID) then field 3 (33-byte message).
DAEMON_PAKE = re.compile(rb"\x12\x1a[0-9A-Z]{26}\x1a\x21(.{33})", re.S)


class Relay:
    """A TLS-terminating byte relay on 127.0.0.1 in front of ``upstream``."""

    def __init__(
        self,
        upstream: tuple[str, int],
        cert_chain: Path,
        key: Path,
        to_daemon: Rewrite | None = None,
        to_node: Rewrite | None = None,
    ) -> None:
        self.upstream = upstream
        self.seen = bytearray()
        self.rewrites = 0
        self._to_daemon, self._to_node = to_daemon, to_node
        self._ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._ctx.load_cert_chain(cert_chain, key)
        self._ctx.set_alpn_protocols(["h2"])
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        self._lock = threading.Lock()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                raw, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._pair, args=(raw,), daemon=True).start()

    def _pair(self, raw: socket.socket) -> None:
        with contextlib.suppress(OSError):
            node = self._ctx.wrap_socket(raw, server_side=True)
            up_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            up_ctx.check_hostname = False
            up_ctx.verify_mode = ssl.CERT_NONE
            up_ctx.set_alpn_protocols(["h2"])
            daemon = up_ctx.wrap_socket(socket.create_connection(self.upstream, timeout=30))
            daemon.settimeout(None)
            self._copy({node: (daemon, self._to_daemon), daemon: (node, self._to_node)})

    def _copy(self, ends: dict[ssl.SSLSocket, tuple[ssl.SSLSocket, Rewrite | None]]) -> None:
        """Copy both directions in ONE thread (an SSL object must not be read and written
        from two threads at once). A rewriting direction holds back its last bytes until
        more arrive or the line goes quiet, so a message split across TLS records is still
        found whole (a loaded machine splits them)."""
        held = {s: b"" for s in ends}
        done = {s: rewrite is None for s, (_, rewrite) in ends.items()}
        open_ = set(ends)

        def forward(src: ssl.SSLSocket, keep: int) -> None:
            cut = max(0, len(held[src]) - keep)
            out, held[src] = held[src][:cut], held[src][cut:]
            if out:
                with self._lock:
                    self.seen += out
                ends[src][0].sendall(out)

        while open_:
            ready = [s for s in open_ if s.pending()]
            if not ready:
                ready = select.select(list(open_), [], [], 0.05)[0]
            if not ready:  # quiet: nothing held back is waiting for the rest of a message
                for src in open_:
                    forward(src, 0)
                continue
            for src in ready:
                chunk = src.recv(65536)
                if not chunk:
                    open_.discard(src)
                    forward(src, 0)
                    with contextlib.suppress(OSError):
                        ends[src][0].shutdown(socket.SHUT_WR)
                    continue
                held[src] += chunk
                rewrite = ends[src][1]
                if not done[src] and rewrite is not None:
                    new = rewrite(held[src])
                    if new != held[src]:
                        self.rewrites += 1
                        held[src], done[src] = new, True
                forward(src, 0 if done[src] else HOLD_BACK)

    def close(self) -> None:
        self._sock.close()


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    with started_with_listeners(tmp_path_factory.mktemp("relay") / "home") as d:
        yield d


def _open_pin_window(d: Daemon) -> tuple[str, str, tuple[str, int]]:
    reply = request(
        d.home.run_dir,
        {"op": "open_window", "method": "pin", "ttl_ms": 600_000, "auto_approve": True},
        name="node_rpc.sock",
    )
    assert reply["ok"], reply
    return reply["window_id"], reply["code"], parse_address(reply["address"])


def _pair(tmp: Path, port: int, pin: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "palyra-node"), "--home", str(tmp / "node"), "pair", "--host", "127.0.0.1",
         "--port", str(port), "--pin", "-", "--name", "relayed", "--wait", "30", "--json"],
        input=pin + "\n", capture_output=True, text=True, timeout=90,
    )  # fmt: skip


def _daemon_tls(d: Daemon, tmp: Path) -> tuple[Path, Path]:
    """The daemon's own chain and key: what a relay that can read everything would use."""
    chain = tmp / "chain.pem"
    chain.write_bytes(
        (d.home.certs_dir / "server.crt").read_bytes() + (d.home.certs_dir / "ca.crt").read_bytes()
    )
    return chain, d.home.certs_dir / "server.key"


def _own_tls(tmp: Path) -> tuple[Path, Path]:
    """A relay CA of its own and a server certificate for 127.0.0.1 from it."""
    import time

    now = time.time_ns() // 1_000_000
    ca = create_authority(now)
    key = generate_private_key()
    cert = issue_server_certificate(ca, key.public_key(), ["127.0.0.1", "localhost"], now)
    chain, keyfile = tmp / "mitm-chain.pem", tmp / "mitm.key"
    chain.write_bytes(cert_pem(cert) + cert_pem(ca.cert))
    keyfile.write_bytes(private_key_pem(key))
    return chain, keyfile


def _secrets_of(pin: str) -> list[bytes]:
    digest = hashlib.sha256(pin.encode()).digest()
    return [pin.encode(), digest, digest.hex().encode(), digest.hex().upper().encode()]


def _window(d: Daemon, wid: str) -> tuple[int, str | None]:
    w = d.journal.pairing.get_window(wid)
    assert w is not None
    return w.failures, w.close_reason


def test_an_eavesdropper_with_the_tls_keys_learns_neither_pin_nor_hash(
    daemon: Daemon, tmp_path: Path
) -> None:
    wid, pin, upstream = _open_pin_window(daemon)
    relay = Relay(upstream, *_daemon_tls(daemon, tmp_path))
    try:
        proc = _pair(tmp_path, relay.port, pin)
    finally:
        relay.close()
    assert proc.returncode == 0, proc.stderr
    device_id = orjson.loads(proc.stdout)["device_id"]
    assert len(relay.seen) > 1000  # it did see the whole exchange, in plaintext
    assert device_id.encode() in relay.seen
    assert (tmp_path / "node" / "identity" / "device.key").exists()
    for secret in _secrets_of(pin):
        assert secret not in relay.seen
    assert _window(daemon, wid) == (0, "used")


def test_a_man_in_the_middle_with_its_own_ca_fails_on_both_sides(
    daemon: Daemon, tmp_path: Path
) -> None:
    wid, pin, upstream = _open_pin_window(daemon)
    before = len(daemon.journal.devices.all())
    relay = Relay(upstream, *_own_tls(tmp_path))
    try:
        proc = _pair(tmp_path, relay.port, pin)
    finally:
        relay.close()
    assert proc.returncode == 1
    assert "wrong PIN or code expired" in proc.stderr or "did not verify" in proc.stderr
    for secret in _secrets_of(pin):
        assert secret not in relay.seen
    wait_until(lambda: _window(daemon, wid)[0] == 1, timeout=15)
    assert len(daemon.journal.devices.all()) == before
    assert not (tmp_path / "node" / "identity").exists()  # nothing stored


def _swap(pattern: re.Pattern[bytes], fresh: bytes) -> Rewrite:
    def rewrite(chunk: bytes) -> bytes:
        m = pattern.search(chunk)
        if m is None:
            return chunk
        return chunk[: m.start(1)] + fresh + chunk[m.end(1) :]

    return rewrite


@pytest.mark.parametrize("direction", ["node_to_daemon", "daemon_to_node"])
def test_a_relay_that_alters_a_pake_message_makes_confirmation_fail(
    daemon: Daemon, tmp_path: Path, direction: str
) -> None:
    wid, pin, upstream = _open_pin_window(daemon)
    before = len(daemon.journal.devices.all())
    chain, key = _daemon_tls(daemon, tmp_path)  # same CA: only the PAKE message differs
    if direction == "node_to_daemon":
        relay = Relay(upstream, chain, key, to_daemon=_swap(NODE_PAKE, NodePake("000001").message))
    else:
        relay = Relay(upstream, chain, key, to_node=_swap(DAEMON_PAKE, DaemonPake(pin).message))
    try:
        proc = _pair(tmp_path, relay.port, pin)
    finally:
        relay.close()
    assert relay.rewrites == 1, "the relay did not find the PAKE message to alter"
    assert proc.returncode == 1, proc.stdout
    assert "wrong PIN or code expired" in proc.stderr or "did not verify" in proc.stderr
    wait_until(lambda: _window(daemon, wid)[0] == 1, timeout=15)  # a counted failure
    assert len(daemon.journal.devices.all()) == before  # no certificate
    assert not (tmp_path / "node" / "identity").exists()  # nothing stored
