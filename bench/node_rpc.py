"""Benchmark: the node RPC — unary mTLS calls beside a bare grpcio server, pairing wall time,
run finished → watch line, revoke → stream closed.

Each round starts a fresh daemon in a temp home (``[rpc] pairing_port = 0, node_port = 0``,
one manual routine ``ping`` running ``true`` with channel delivery ``bench``), waits
``--warmup`` s after ready, pairs one device by QR (auto-approve) for phases 1 and 3, starts
the bare peer on that daemon's certificates, then measures:

1. **Unary.** ``Node.Ping`` (32-byte payload) over mTLS through the daemon's per-call device
   check: one client loop of sequential calls, ``--seconds`` per side and round (or
   ``--calls`` N), then the same with ``--threads`` client threads (one connection each).
   **Peer**: a bare grpcio server in a child process of this script (``--echo-child``) with
   the same TLS set-up — the round's ``H/certs/server.key``, ``server.crt`` + ``ca.crt`` as
   the chain, client certificates required and verified against the daemon's CA — the same
   kind of server (``grpc.server(ThreadPoolExecutor(48), maximum_concurrent_rpcs=128)``, the
   node listener's options) and the generated ``add_NodeServicer_to_server`` with a ``Ping``
   that echoes and checks nothing. Same client loop, same device certificate. Both sides'
   connections are opened and warmed up first, then the sides take turns in ``--slices``
   alternating slices (A B A B …) so that drift on this shared machine hits both. Reported:
   calls/s, p50/p99, ours ÷ bare (goal ≥ 70 %), server CPU per 1000 calls. What differs
   besides the check: the daemon's credentials are ``dynamic_ssl_server_credentials``
   (consulted only at a handshake, and no handshake is timed) and its process has other
   threads (the node_rpc main loop, the pairing listener, the health endpoint).
2. **Pairing** with auto-approve, QR and PIN alternating: from the node's first byte (fetch
   the listener's chain) to the issued certificate verified against the CA and the node's
   key; and with the window-open request over ``run/node_rpc.sock`` before it. The node's key
   and CSR are made before the clock starts. The bench's own node code follows smoke.py (and
   node/pairing.py's order of checks) but stores nothing. **CLI wall**: the real
   ``palyra-node pair`` (``--uri`` / ``--host --port --pin``, a fresh node home each) as a
   subprocess, spawn to exit — it includes Python start-up (``palyra-node --help`` is timed
   too) and the identity store; project bytecode is compiled first. A mirror of the pairing
   listener's rate limit paces all pairings; waits are outside every timing.
3. **Run finished → watch line.** One Watch stream read in a thread; ``Node.RunNow`` M times,
   each after the previous delivery arrived (plus a random 0–100 ms gap); latency = the
   client's wall clock when the delivery arrives − the run's ``finished_at_unix_ms`` (same
   machine, same clock). Goal p99 ≤ 100 ms. One run before the M is reported apart: the
   executor's first run after start pays one-off costs (a lazy import in the finish path).
4. **Revoke → stream closed.** Every device paired in 2 (protocol-level) opens a Watch; once
   its stream row is in the journal, the bench revokes it one of three ways, in turn:
   ``palyrad.ops.nodes.revoke`` (what ``palyra node revoke`` runs: the journal, then a poke
   of node_rpc), the journal alone (``Journal.devices.revoke``, no poke: only the registry's
   200 ms refresh notices — the worst case), and the ``palyra node revoke`` CLI as a
   subprocess (its Python start-up included); time until the client's stream raises
   PERMISSION_DENIED. Goal ≤ 1 s.
5. psutil: peak RSS summed over the daemon's processes and their CPU seconds over the round
   (and per phase for node_rpc vs the bare server).

Figures are the median of the per-round figures beside the worst round. Raw numbers go to
``bench/results/node_rpc.json`` (``node_rpc-quick.json`` with ``--quick``; ``--out``).

    .venv/bin/python bench/node_rpc.py              # 5 rounds, ~4 min
    .venv/bin/python bench/node_rpc.py --quick      # 2 short rounds, ~1 min
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import select
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from benchlib import (
    cli,
    cpu_model,
    daemon_sampler,
    fmt,
    med,
    now_ms,
    package_version,
    palyra_version,
    pct,
    worst,
)

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"

PAYLOAD = b"p" * 32
WARMUP_CALLS = 200
CALL_TIMEOUT_S = 5.0
MAX_CALL_ERRORS = 50
ROUTINE_ID = "ping"
CHANNEL = "bench"
# The node listener's server, as palyrad/services/node_rpc/service.py builds it.
NODE_WORKERS = 48
NODE_MAX_RPCS = 128
NODE_OPTIONS = [
    ("grpc.max_receive_message_length", 1024 * 1024),
    ("grpc.max_send_message_length", 1024 * 1024),
    ("grpc.keepalive_time_ms", 30_000),
    ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
]
# The pairing listener's limiter (PairingService: RateLimiter(60/min, burst 30, 240/min total)).
PAIR_PER_MINUTE = 60.0
PAIR_BURST = 30.0
REVOKE_WAYS = ("ops", "journal", "cli")

TARGET_RATIO = 0.70
TARGET_WATCH_P99_MS = 100.0
TARGET_REVOKE_MS = 1000.0


# --- statistics ----------------------------------------------------------------------------


def stats(values: Sequence[float]) -> dict[str, float | int | None]:
    return {
        "n": len(values),
        "p50": pct(values, 50),
        "p90": pct(values, 90),
        "p99": pct(values, 99),
        "max": float(max(values)) if values else None,
    }


def r3(values: Sequence[float]) -> list[float]:
    return [round(v, 3) for v in values]


# --- the daemon ----------------------------------------------------------------------------


def write_home(home: Path) -> None:
    (home / "routines").mkdir(parents=True, exist_ok=True)
    os.chmod(home, 0o700)
    routine = {
        "id": ROUTINE_ID,
        "trigger": {"kind": "manual"},
        "action": {"kind": "command", "argv": ["true"]},
        "delivery": {"mode": "channel", "channel": CHANNEL},
    }
    defs = {"schema_version": 1, "routines": [routine]}
    (home / "routines" / "definitions.json").write_text(json.dumps(defs))
    (home / "palyra.toml").write_text("[rpc]\npairing_port = 0\nnode_port = 0\n")


def daemon_start(home: Path) -> dict[str, Any]:
    res = cli(home, "daemon", "start", timeout=120)
    if res.returncode != 0:
        raise RuntimeError(f"palyra daemon start failed: {res.stderr.strip()}")
    deadline = time.monotonic() + 30
    while True:
        st = cli(home, "daemon", "status", "--json", timeout=30)
        with contextlib.suppress(ValueError):
            doc: dict[str, Any] = json.loads(st.stdout)
            ep = doc.get("endpoints") or {}
            if ep.get("pairing") and ep.get("node"):
                return doc
        if time.monotonic() > deadline:
            raise RuntimeError(f"no node endpoints in daemon status: {st.stdout[:300]}")
        time.sleep(0.2)


def daemon_stop(home: Path) -> None:
    with contextlib.suppress(Exception):
        cli(home, "daemon", "stop", timeout=60)


def open_window(home: Path, method: str) -> dict[str, Any]:
    from palyrad.runtime.control_client import request

    reply: dict[str, Any] = request(
        home / "run",
        {"op": "open_window", "method": method, "ttl_ms": 600_000, "auto_approve": True,
         "host": None},
        name="node_rpc.sock",
        timeout_s=10,
    )  # fmt: skip
    if not reply.get("ok"):
        raise RuntimeError(f"open_window failed: {reply}")
    return reply


def compile_bytecode() -> str:
    """Compile the project's bytecode before the CLI samples (as bench/dispatch.py does):
    this sandbox sets PYTHONDONTWRITEBYTECODE=1, which would make every CLI sample of the
    editable dev install compile the modules it imports."""
    pkgs = [str(ROOT / p) for p in ("palyra_cli", "palyrad", "routines", "node", "certs")]
    pkgs.append(str(ROOT / "palyra_proto"))
    subprocess.run([sys.executable, "-m", "compileall", "-q", *pkgs], check=True)
    flag = os.environ.get("PYTHONDONTWRITEBYTECODE")
    return "project bytecode compiled first" + (
        " (PYTHONDONTWRITEBYTECODE is set here)" if flag else ""
    )


def node_cli() -> str:
    exe = Path(sys.executable).parent / "palyra-node"
    return str(exe) if exe.exists() else "palyra-node"


def cli_startup_ms(n: int = 3) -> list[float]:
    """``palyra-node --help`` wall times: the CLI's Python start-up alone."""
    out = []
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run([node_cli(), "--help"], capture_output=True, timeout=60)
        out.append(round((time.perf_counter() - t) * 1000, 1))
    return out


# --- a node (the device side, as smoke.py does it) -----------------------------------------


@dataclass
class Device:
    device_id: str
    key_pem: bytes
    cert_pem: bytes
    ca_pem: bytes


def node_channel(address: str, dev: Device) -> Any:
    """An mTLS channel with its own connection (no sharing through gRPC's global subchannel
    pool, so N channels are N connections)."""
    import grpc

    creds = grpc.ssl_channel_credentials(
        root_certificates=dev.ca_pem, private_key=dev.key_pem, certificate_chain=dev.cert_pem
    )
    return grpc.secure_channel(address, creds, options=[("grpc.use_local_subchannel_pool", 1)])


class PairingPace:
    """A mirror of the pairing listener's per-address token bucket: wait for a token before
    each pairing, so no sample is refused; returns the seconds waited (outside the timings)."""

    def __init__(self) -> None:
        self.tokens = PAIR_BURST
        self.at = time.monotonic()

    def take(self) -> float:
        rate = PAIR_PER_MINUTE / 60
        now = time.monotonic()
        self.tokens = min(PAIR_BURST, self.tokens + (now - self.at) * rate)
        self.at = now
        waited = 0.0
        if self.tokens < 1.0:
            waited = (1.0 - self.tokens) / rate + 0.25  # margin: the daemon's clock is ms
            time.sleep(waited)
            self.tokens = 1.0
            self.at = time.monotonic()
        self.tokens -= 1.0
        return waited


def pair(home: Path, method: str, name: str) -> tuple[Device, dict[str, Any]]:
    """One pairing with auto-approve; the device and its timings (ms)."""
    import grpc
    from cryptography import x509

    from certs import (
        build_csr,
        cert_der,
        cert_pem,
        fetch_presented_chain,
        generate_private_key,
        private_key_pem,
        spki_sha256,
        verify_device_certificate,
        verify_server_chain,
    )
    from palyra_proto import palyra_node_pb2 as pb
    from palyra_proto import palyra_node_pb2_grpc as pb_grpc
    from palyra_proto.pairing import (
        NodePake,
        daemon_mac,
        macs_equal,
        node_mac,
        parse_address,
        parse_pair_uri,
        secret_sha256,
        transcript,
    )

    key = generate_private_key()
    csr = build_csr(key, name)
    qr_secret = os.urandom(32)
    steps: dict[str, float] = {}
    t_open = time.perf_counter()
    win = open_window(home, method)
    t0 = time.perf_counter()  # the node's first byte is next
    if method == "qr":
        uri = parse_pair_uri(win["uri"])
        host, port, pin_ca, address = uri.host, uri.port, uri.ca_spki_sha256, uri.address
    else:
        host, port = parse_address(win["address"])
        pin_ca, address = None, win["address"]
    chain = fetch_presented_chain(host, port, 5)
    ca = verify_server_chain(chain, host, now_ms(), pin_ca)
    t1 = time.perf_counter()
    steps["chain_ms"] = (t1 - t0) * 1000
    channel = grpc.secure_channel(
        address,
        grpc.ssl_channel_credentials(root_certificates=cert_pem(ca)),
        options=[("grpc.use_local_subchannel_pool", 1)],
    )
    try:
        stub = pb_grpc.PairingStub(channel)
        if method == "qr":
            rep = stub.TokenPair(
                pb.TokenPairRequest(
                    token=uri.token,
                    device_name=name,
                    csr_der=csr,
                    await_secret_sha256=secret_sha256(qr_secret),
                ),
                timeout=10,
            )
            request_id, secret = rep.request_id, qr_secret
        else:
            pake = NodePake(win["code"])
            s = stub.PinStart(pb.PinStartRequest(pake_message=pake.message), timeout=10)
            keys = pake.finish(s.pake_message)
            tr = transcript(pake.message, s.pake_message, s.window_id, spki_sha256(ca), csr)
            rep2 = stub.PinConfirm(
                pb.PinConfirmRequest(
                    handshake_id=s.handshake_id,
                    device_name=name,
                    csr_der=csr,
                    node_mac=node_mac(keys, tr),
                ),
                timeout=10,
            )
            if not macs_equal(rep2.daemon_mac, daemon_mac(keys, tr, rep2.request_id)):
                raise RuntimeError("PIN pairing: the daemon's MAC does not verify")
            if rep2.ca_der != cert_der(ca):
                raise RuntimeError("PIN pairing: the CA differs from the listener's chain")
            request_id, secret = rep2.request_id, keys.await_secret
        t2 = time.perf_counter()
        steps["request_ms"] = (t2 - t1) * 1000
        a = stub.AwaitCertificate(
            pb.AwaitRequest(request_id=request_id, await_secret=secret, wait_ms=5000),
            timeout=10,
        )
        t3 = time.perf_counter()
        steps["await_ms"] = (t3 - t2) * 1000
        if a.state != pb.AwaitReply.ISSUED:
            raise RuntimeError(f"pairing ended in state {a.state}")
        cert = x509.load_der_x509_certificate(a.certificate_der)
        device_id = verify_device_certificate(cert, ca, key.public_key(), now_ms())
        t4 = time.perf_counter()
    finally:
        channel.close()
    steps["verify_ms"] = (t4 - t3) * 1000
    timing = {
        "method": method,
        "window_open_ms": (t0 - t_open) * 1000,
        "node_ms": (t4 - t0) * 1000,
        "with_window_ms": (t4 - t_open) * 1000,
        **steps,
    }
    dev = Device(device_id, private_key_pem(key), cert_pem(cert), cert_pem(ca))
    return dev, timing


def pair_paced(
    home: Path, method: str, name: str, pace: PairingPace
) -> tuple[Device, dict[str, Any]]:
    """``pair`` after the pace's wait; one retry (after a limiter refusal) with a fresh
    window, the refused attempt not counted."""
    import grpc

    waited = pace.take()
    try:
        dev, timing = pair(home, method, name)
        timing["retried"] = False
    except grpc.RpcError as exc:
        if exc.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
            raise
        time.sleep(60 / PAIR_PER_MINUTE + 0.5)
        waited += 60 / PAIR_PER_MINUTE + 0.5
        dev, timing = pair(home, method, name)
        timing["retried"] = True
    timing["paced_wait_s"] = round(waited, 2)
    return dev, timing


def pair_cli(home: Path, method: str, node_home: Path, pace: PairingPace) -> dict[str, Any]:
    """The real ``palyra-node pair`` as a subprocess (window opened first, not timed)."""
    from palyra_proto.pairing import parse_address

    waited = pace.take()
    win = open_window(home, method)
    argv = [node_cli(), "--home", str(node_home), "pair"]
    if method == "qr":
        argv += ["--uri", win["uri"]]
    else:
        host, port = parse_address(win["address"])
        argv += ["--host", host, "--port", str(port), "--pin", win["code"]]
    argv += ["--name", "bench-cli", "--wait", "30", "--json"]
    t0 = time.perf_counter()
    res = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    wall = (time.perf_counter() - t0) * 1000
    out: dict[str, Any] = {"method": method, "cli_wall_ms": wall, "ok": res.returncode == 0}
    if res.returncode == 0:
        with contextlib.suppress(ValueError, KeyError):
            out["device_id"] = json.loads(res.stdout)["device_id"]
    else:
        out["cli_wall_ms"] = None
        out["error"] = (res.stderr or res.stdout).strip()[-300:]
    out["paced_wait_s"] = round(waited, 2)
    return out


def wait_stream_open(journal: Any, device_id: str, timeout_s: float = 5.0) -> bool:
    """True once the daemon recorded an open watch stream of ``device_id``."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if any(w.device_id == device_id for w in journal.devices.watches()):
            return True
        time.sleep(0.005)
    return False


# --- 1. unary ------------------------------------------------------------------------------


class UnaryClient:
    """``threads`` client loops (one connection each, opened and warmed up once) calling
    ``Node.Ping`` sequentially; ``run_slice`` runs them for a while and accumulates."""

    def __init__(
        self, address: str, dev: Device, threads: int, server_cpu: Callable[[], float]
    ) -> None:
        import grpc

        from palyra_proto import palyra_node_pb2 as pb
        from palyra_proto import palyra_node_pb2_grpc as pb_grpc

        self.grpc = grpc
        self.threads = threads
        self.server_cpu = server_cpu
        self.req = pb.PingRequest(payload=PAYLOAD)
        self.channels = [node_channel(address, dev) for _ in range(threads)]
        self.lat: list[float] = []
        self.errors: list[str] = []
        self.elapsed = self.cpu = self.client_cpu = 0.0
        self.slices: list[dict[str, float]] = []
        try:
            for ch in self.channels:
                grpc.channel_ready_future(ch).result(timeout=10)
            self.stubs = [pb_grpc.NodeStub(ch) for ch in self.channels]
            for stub in self.stubs:
                for _ in range(WARMUP_CALLS):
                    stub.Ping(self.req, timeout=CALL_TIMEOUT_S)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        for ch in self.channels:
            ch.close()

    def run_slice(self, seconds: float, calls: int | None) -> None:
        """One slice: for ``seconds``, or ``calls`` calls in all."""
        grpc = self.grpc
        threads = self.threads
        lat: list[list[float]] = [[] for _ in range(threads)]
        errors: list[list[str]] = [[] for _ in range(threads)]
        per_thread = None if calls is None else -(-calls // threads)
        barrier = threading.Barrier(threads + 1, timeout=30)
        stop_at = [0.0]

        def loop(i: int) -> None:
            stub, out, errs, req = self.stubs[i], lat[i], errors[i], self.req
            barrier.wait()
            end = stop_at[0]
            while len(errs) < MAX_CALL_ERRORS:
                t = time.perf_counter()
                if per_thread is None:
                    if t >= end:
                        return
                elif len(out) >= per_thread:
                    return
                try:
                    stub.Ping(req, timeout=CALL_TIMEOUT_S)
                except grpc.RpcError as exc:
                    errs.append(f"{exc.code().name}: {exc.details()}")
                    continue
                out.append((time.perf_counter() - t) * 1000)

        workers = [threading.Thread(target=loop, args=(i,), daemon=True) for i in range(threads)]
        for w in workers:
            w.start()
        cpu0, client0 = self.server_cpu(), time.process_time()
        stop_at[0] = time.perf_counter() + seconds
        t0 = time.perf_counter()
        barrier.wait()
        for w in workers:
            w.join(timeout=seconds + 60 + (0 if calls is None else calls * CALL_TIMEOUT_S))
        elapsed = time.perf_counter() - t0
        n = sum(len(x) for x in lat)
        self.elapsed += elapsed
        self.cpu += self.server_cpu() - cpu0
        self.client_cpu += time.process_time() - client0
        for x in lat:
            self.lat.extend(x)
        for e in errors:
            self.errors.extend(e)
        self.slices.append({"calls": n, "elapsed_s": round(elapsed, 4)})

    def result(self) -> dict[str, Any]:
        n = len(self.lat)
        return {
            "threads": self.threads,
            "calls": n,
            "elapsed_s": round(self.elapsed, 3),
            "calls_per_s": n / self.elapsed if self.elapsed > 0 else None,
            "latency_ms": stats(self.lat),
            "mean_ms": sum(self.lat) / n if n else None,
            "errors": len(self.errors),
            "first_errors": self.errors[:3],
            "server_cpu_s": round(self.cpu, 3),
            "server_cpu_ms_per_1000_calls": self.cpu * 1e6 / n if n else None,
            "client_cpu_s": round(self.client_cpu, 3),
            "slices": self.slices,
            "latencies_ms": r3(self.lat),
        }


def unary_side_by_side(
    args: argparse.Namespace,
    dev: Device,
    threads: int,
    ours: tuple[str, Callable[[], float]],
    bare: tuple[str, Callable[[], float]],
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Palyra and the bare server in alternating slices (A B A B …), each side
    ``--seconds`` (or ``--calls``) in all over ``--slices`` slices."""
    a = UnaryClient(ours[0], dev, threads, ours[1])
    try:
        b = UnaryClient(bare[0], dev, threads, bare[1])
        try:
            secs = args.seconds / args.slices
            calls = None if args.calls is None else max(1, args.calls // args.slices)
            for _ in range(args.slices):
                a.run_slice(secs, calls)
                b.run_slice(secs, calls)
            return a.result(), b.result()
        finally:
            b.close()
    finally:
        a.close()


class EchoChild:
    """The bare peer: this script with ``--echo-child CERTS_DIR`` in its own process."""

    def __init__(self, certs_dir: Path) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "--echo-child", str(certs_dir)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], 30)
        line = self.proc.stdout.readline() if ready else b""
        if not line:
            err = b""
            with contextlib.suppress(Exception):
                self.proc.kill()
                err = self.proc.communicate(timeout=5)[1]
            raise RuntimeError(f"echo child did not start: {err.decode()[-500:]}")
        info = json.loads(line)
        self.port: int = info["port"]
        self.pid: int = info["pid"]
        import psutil

        self.ps = psutil.Process(self.pid)

    def cpu(self) -> float:
        t = self.ps.cpu_times()
        return float(t.user + t.system)

    def rss(self) -> int:
        return int(self.ps.memory_info().rss)

    def stop(self) -> None:
        with contextlib.suppress(Exception):
            assert self.proc.stdin is not None
            self.proc.stdin.close()  # the child serves until its stdin ends
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=5)


def echo_child(certs_dir: Path) -> None:
    """The bare grpcio server: the daemon's server key and chain, mTLS against its CA, the
    node listener's server settings, a Ping that only echoes."""
    from concurrent.futures import ThreadPoolExecutor

    import grpc

    sys.path.insert(0, str(ROOT))
    from palyra_proto import palyra_node_pb2 as pb
    from palyra_proto import palyra_node_pb2_grpc as pb_grpc

    class Echo(pb_grpc.NodeServicer):
        def Ping(self, request: Any, context: Any) -> Any:
            return pb.PingReply(payload=request.payload, device_id="bare")

    key = (certs_dir / "server.key").read_bytes()
    ca = (certs_dir / "ca.crt").read_bytes()
    chain = (certs_dir / "server.crt").read_bytes() + ca
    server = grpc.server(
        ThreadPoolExecutor(max_workers=NODE_WORKERS, thread_name_prefix="node"),
        maximum_concurrent_rpcs=NODE_MAX_RPCS,
        options=NODE_OPTIONS,
    )
    pb_grpc.add_NodeServicer_to_server(Echo(), server)  # type: ignore[abstract]  # Ping only
    creds = grpc.ssl_server_credentials(
        [(key, chain)], root_certificates=ca, require_client_auth=True
    )
    port = server.add_secure_port("127.0.0.1:0", creds)
    server.start()
    print(json.dumps({"port": port, "pid": os.getpid()}), flush=True)
    sys.stdin.read()
    server.stop(grace=1.0).wait(3.0)


# --- 3. run finished → watch line ----------------------------------------------------------


def watch_phase(node_addr: str, dev: Device, journal: Any, runs: int) -> dict[str, Any]:
    import grpc
    import orjson

    from palyra_proto import palyra_node_pb2 as pb
    from palyra_proto import palyra_node_pb2_grpc as pb_grpc

    channel = node_channel(node_addr, dev)
    stub = pb_grpc.NodeStub(channel)
    arrived: dict[str, tuple[float, float, dict[str, Any]]] = {}
    delivery_ids: list[int] = []
    cond = threading.Condition()
    stream_error: list[str] = []
    stream = stub.Watch(pb.WatchRequest(channels=[CHANNEL]), timeout=runs * 10 + 60)

    def reader() -> None:
        try:
            for msg in stream:
                if not msg.HasField("delivery"):
                    continue
                wall = time.time_ns() / 1e6
                perf = time.perf_counter()
                run = orjson.loads(msg.delivery.run_json)
                with cond:
                    arrived[run["run_id"]] = (wall, perf, run)
                    delivery_ids.append(msg.delivery.delivery_id)
                    cond.notify_all()
        except grpc.RpcError as exc:
            if exc.code() != grpc.StatusCode.CANCELLED:
                stream_error.append(f"{exc.code().name}: {exc.details()}")
                with cond:
                    cond.notify_all()

    th = threading.Thread(target=reader, daemon=True)
    th.start()
    lat: list[float] = []
    runnow_to_line: list[float] = []
    run_s: list[float] = []
    missing = 0
    first_run: float | None = None
    try:
        if not wait_stream_open(journal, dev.device_id):
            raise RuntimeError("the watch stream did not open within 5 s")
        for k in range(runs + 1):
            time.sleep(random.uniform(0, 0.1))
            t0 = time.perf_counter()
            reply = orjson.loads(
                stub.RunNow(pb.RunNowRequest(routine_id=ROUTINE_ID), timeout=CALL_TIMEOUT_S).json
            )
            run_id = reply["run_id"]
            deadline = time.monotonic() + 5.0
            with cond:
                while run_id not in arrived and not stream_error:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        break
                    cond.wait(left)
                got = arrived.get(run_id)
            if got is None:
                missing += 1
                if stream_error:
                    break
                continue
            wall, perf, run = got
            if k == 0:  # the executor's first run: first-use costs, reported apart
                first_run = wall - run["finished_at_unix_ms"]
                continue
            lat.append(wall - run["finished_at_unix_ms"])
            runnow_to_line.append((perf - t0) * 1000)
            run_s.append(run["finished_at_unix_ms"] - run["started_at_unix_ms"])
        with cond:
            ids = list(delivery_ids)
        if ids:
            stub.Ack(pb.AckRequest(delivery_ids=ids[:1000]), timeout=CALL_TIMEOUT_S)
    finally:
        stream.cancel()
        th.join(timeout=5)
        channel.close()
    return {
        "runs": runs,
        "missing": missing,
        "stream_error": stream_error[:1],
        "first_run_finished_to_line_ms": first_run,
        "finished_to_line_ms": stats(lat),
        "runnow_call_to_line_ms": stats(runnow_to_line),
        "run_started_to_finished_ms_p50": pct(run_s, 50),
        "samples_ms": r3(lat),
    }


# --- 4. revoke → stream closed -------------------------------------------------------------


def revoke_sample(
    home: Path,
    node_addr: str,
    dev: Device,
    journal: Any,
    way: str,
) -> dict[str, Any]:
    import grpc

    from palyra_proto import palyra_node_pb2 as pb
    from palyra_proto import palyra_node_pb2_grpc as pb_grpc
    from palyrad.ops import nodes
    from palyrad.runtime.home import Home

    channel = node_channel(node_addr, dev)
    stub = pb_grpc.NodeStub(channel)
    out: dict[str, Any] = {"way": way, "device_id": dev.device_id}
    ended: dict[str, Any] = {}
    done = threading.Event()
    try:
        stub.Ping(pb.PingRequest(payload=PAYLOAD), timeout=CALL_TIMEOUT_S)
        stream = stub.Watch(pb.WatchRequest(channels=["bench-revoke"]), timeout=30)

        def reader() -> None:
            try:
                for _ in stream:
                    pass
                ended.update(t=time.perf_counter(), code="OK", details="stream ended")
            except grpc.RpcError as exc:
                ended.update(t=time.perf_counter(), code=exc.code().name, details=exc.details())
            finally:
                done.set()

        th = threading.Thread(target=reader, daemon=True)
        th.start()
        if not wait_stream_open(journal, dev.device_id):
            raise RuntimeError("the watch stream did not open within 5 s")
        t0 = time.perf_counter()
        if way == "cli":
            res = cli(home, "node", "revoke", dev.device_id, timeout=60)
            if res.returncode != 0:
                raise RuntimeError(f"palyra node revoke failed: {res.stderr.strip()}")
        elif way == "ops":  # what the CLI runs: the journal, then a poke of node_rpc
            nodes.revoke(Home.at(home), journal, dev.device_id, now_ms())
        else:
            journal.devices.revoke(dev.device_id, now_ms(), reason="bench")
        t1 = time.perf_counter()
        done.wait(5.0)
        out["revoke_write_ms"] = (t1 - t0) * 1000
        out["code"] = ended.get("code", "TIMEOUT")
        out["details"] = ended.get("details")
        out["closed_ms"] = (
            (ended["t"] - t0) * 1000 if ended.get("code") == "PERMISSION_DENIED" else None
        )
        stream.cancel()
        th.join(timeout=5)
    finally:
        channel.close()
    return out


# --- a round -------------------------------------------------------------------------------


def daemon_round(args: argparse.Namespace, i: int) -> dict[str, Any]:
    import psutil

    from palyrad.journal import Journal

    out: dict[str, Any] = {"round": i, "loadavg_at_start": list(os.getloadavg())}
    with tempfile.TemporaryDirectory(prefix="palyra-bench-node-", dir=args.tmp) as d:
        home = Path(d) / "home"
        write_home(home)
        sampler = None
        child: EchoChild | None = None
        journal = None
        try:
            t = time.perf_counter()
            status = daemon_start(home)
            out["start_s"] = round(time.perf_counter() - t, 2)
            node_addr = status["endpoints"]["node"]
            node_rpc_pid = next(p["pid"] for p in status["processes"] if p["name"] == "node_rpc")
            node_rpc = psutil.Process(node_rpc_pid)

            def node_rpc_cpu() -> float:
                ct = node_rpc.cpu_times()
                return float(ct.user + ct.system)

            sampler = daemon_sampler(home).start()
            time.sleep(args.warmup)
            journal = Journal(home / "journal.sqlite3")
            sampler.in_window = True
            cpu0 = sampler.cpu_by_process()
            w0 = time.monotonic()
            pace = PairingPace()
            dev, _ = pair_paced(home, "qr", "bench", pace)

            # 1. unary, Palyra and the bare peer side by side
            child = EchoChild(home / "certs")
            bare_addr = f"127.0.0.1:{child.port}"
            for variant, threads in (("seq", 1), ("conc", args.threads)):
                if threads < 1:
                    continue
                a, b = unary_side_by_side(
                    args, dev, threads, (node_addr, node_rpc_cpu), (bare_addr, child.cpu)
                )
                out[f"unary_{variant}_palyra"], out[f"unary_{variant}_bare"] = a, b
            out["bare_rss_mb"] = round(child.rss() / 2**20, 1)
            out["node_rpc_rss_mb_after_unary"] = round(node_rpc.memory_info().rss / 2**20, 1)
            child.stop()
            child = None

            # 3. run finished → watch line
            out["watch"] = watch_phase(node_addr, dev, journal, args.watch_runs)

            # 2. + 4. pairing, then each fresh device's revocation
            pairings: list[dict[str, Any]] = []
            revokes: list[dict[str, Any]] = []
            for k in range(args.pairings):
                method = "qr" if k % 2 == 0 else "pin"
                d2, timing = pair_paced(home, method, f"bench-{k}", pace)
                pairings.append(timing)
                way = REVOKE_WAYS[(k // 2) % len(REVOKE_WAYS)]
                revokes.append(revoke_sample(home, node_addr, d2, journal, way))
            out["pairings"] = pairings
            out["revokes"] = revokes
            out["cli_pairings"] = [
                pair_cli(home, "qr" if k % 2 == 0 else "pin", Path(d) / f"node-{k}", pace)
                for k in range(args.cli_pairings)
            ]

            out["window_s"] = round(time.monotonic() - w0, 1)
            cpu1 = sampler.cpu_by_process()
            out["cpu_s_by_process"] = {k: round(v - cpu0.get(k, 0.0), 3) for k, v in cpu1.items()}
            out["cpu_s_window"] = round(sum(out["cpu_s_by_process"].values()), 3)
            sampler.in_window = False
        finally:
            if child is not None:
                child.stop()
            if sampler is not None:
                sampler.stop()
            if journal is not None:
                with contextlib.suppress(Exception):
                    journal.close()
            daemon_stop(home)
        out["peak_rss_mb_window"] = round(sampler.peak_window / 2**20, 1) if sampler else None
        out["loadavg_at_end"] = list(os.getloadavg())
    return out


def summarize_round(r: dict[str, Any]) -> dict[str, Any]:
    """The per-round figures the summary takes medians and worsts of."""
    s: dict[str, Any] = {}
    for variant in ("seq", "conc"):
        a, b = r.get(f"unary_{variant}_palyra"), r.get(f"unary_{variant}_bare")
        if not a or not b:
            continue
        s[f"{variant}_palyra_cps"] = a["calls_per_s"]
        s[f"{variant}_bare_cps"] = b["calls_per_s"]
        s[f"{variant}_ratio"] = (
            a["calls_per_s"] / b["calls_per_s"] if a["calls_per_s"] and b["calls_per_s"] else None
        )
        for side, x in (("palyra", a), ("bare", b)):
            s[f"{variant}_{side}_p50"] = x["latency_ms"]["p50"]
            s[f"{variant}_{side}_p99"] = x["latency_ms"]["p99"]
            s[f"{variant}_{side}_cpu_per_1000"] = x["server_cpu_ms_per_1000_calls"]
            s[f"{variant}_{side}_errors"] = x["errors"]
    for method in ("qr", "pin"):
        ps = [p for p in r.get("pairings", []) if p["method"] == method]
        for key in ("node_ms", "with_window_ms", "window_open_ms"):
            s[f"pair_{method}_{key}_p50"] = pct([p[key] for p in ps], 50)
            s[f"pair_{method}_{key}_max"] = max((p[key] for p in ps), default=None)
    w = r.get("watch")
    if w:
        for f in ("p50", "p99", "max"):
            s[f"watch_{f}"] = w["finished_to_line_ms"][f]
        s["watch_missing"] = w["missing"]
        s["watch_first_run"] = w["first_run_finished_to_line_ms"]
        s["watch_runnow_p50"] = w["runnow_call_to_line_ms"]["p50"]
    for way in REVOKE_WAYS:
        rv = [x for x in r.get("revokes", []) if x["way"] == way]
        vals = [x["closed_ms"] for x in rv if x["closed_ms"] is not None]
        s[f"revoke_{way}_p50"] = pct(vals, 50)
        s[f"revoke_{way}_p99"] = pct(vals, 99)
        s[f"revoke_{way}_failed"] = sum(1 for x in rv if x["closed_ms"] is None)
        s[f"revoke_{way}_n"] = len(rv)
    for method in ("qr", "pin"):
        cw = [c["cli_wall_ms"] for c in r.get("cli_pairings", []) if c["method"] == method]
        s[f"cli_pair_{method}_p50"] = pct([x for x in cw if x is not None], 50)
        s[f"cli_pair_{method}_max"] = max((x for x in cw if x is not None), default=None)
        s[f"cli_pair_{method}_failed"] = sum(1 for x in cw if x is None)
    s["node_rpc_rss_mb"] = r.get("node_rpc_rss_mb_after_unary")
    s["bare_rss_mb"] = r.get("bare_rss_mb")
    s["node_rpc_cpu_s"] = r.get("cpu_s_by_process", {}).get("node_rpc")
    s["peak_rss_mb"] = r.get("peak_rss_mb_window")
    s["cpu_s"] = r.get("cpu_s_window")
    return s


def summarize(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    per = [summarize_round(r) for r in rounds]
    keys = sorted({k for p in per for k in p})
    lower_is_worse = ("_cps", "_ratio")
    out: dict[str, Any] = {}
    for k in keys:
        vals = [p.get(k) for p in per]
        hiw = not k.endswith(lower_is_worse)
        out[k] = {"median": med(vals), "worst": worst(vals, higher_is_worse=hiw), "rounds": vals}
    pooled: dict[str, list[float]] = {"watch": []}
    for way in REVOKE_WAYS:
        pooled[f"revoke_{way}"] = []
    for method in ("qr", "pin"):
        pooled[f"cli_pair_{method}"] = []
    for r in rounds:
        pooled["watch"] += r.get("watch", {}).get("samples_ms", [])
        for x in r.get("revokes", []):
            if x["closed_ms"] is not None:
                pooled[f"revoke_{x['way']}"].append(x["closed_ms"])
        for c in r.get("cli_pairings", []):
            if c["cli_wall_ms"] is not None:
                pooled[f"cli_pair_{c['method']}"].append(c["cli_wall_ms"])
    out["pooled"] = {k: stats(v) for k, v in pooled.items()}
    return out


# --- output --------------------------------------------------------------------------------


def versions() -> dict[str, str]:
    return {
        "palyra": palyra_version(ROOT),
        "grpcio": package_version("grpcio"),
        "protobuf": package_version("protobuf"),
        "cryptography": package_version("cryptography"),
        "psutil": package_version("psutil"),
        "python": platform.python_version(),
        "kernel": platform.release(),
        "cpu": cpu_model(),
    }


def method_line(args: argparse.Namespace, vers: dict[str, str], bytecode: str) -> str:
    la = os.getloadavg()
    n = f"{args.calls} calls" if args.calls else f"{args.seconds:g} s"
    return (
        f"method: {os.cpu_count()} cores ({vers['cpu']}), Linux {vers['kernel']}, Python "
        f"{vers['python']}, grpcio {vers['grpcio']}, protobuf {vers['protobuf']}, palyra "
        f"{vers['palyra']}; load avg {la[0]:.2f}/{la[1]:.2f}/{la[2]:.2f} at start; "
        f"{args.rounds} rounds, each a fresh daemon (temp home, warm-up {args.warmup:g} s); "
        f"unary: Node.Ping {len(PAYLOAD)} B over mTLS, {n} per side per round in "
        f"{args.slices} alternating slices A B A B …, 1 client loop then {args.threads} "
        f"threads × 1 connection, {WARMUP_CALLS} warm-up calls per connection; peer: bare "
        f"grpcio (same cert chain, mTLS against the daemon's CA, ThreadPoolExecutor("
        f"{NODE_WORKERS}), echo Ping, own process); pairing: "
        f"{args.pairings} per round (QR/PIN alternating, auto-approve, node's first byte → "
        f"certificate verified), + {args.cli_pairings} `palyra-node pair` subprocesses per "
        f"round (CLI wall, {bytecode}); all pairings paced by the listener's rate limit, waits "
        f"excluded; watch: 1 + {args.watch_runs} run-nows per round, finished_at → delivery at "
        f"the client; revoke: each paired device, by ops.nodes.revoke (journal + poke) / "
        f"journal only / `palyra node revoke` in turn; psutil RSS/CPU of supervisor + children"
    )


def mw(d: dict[str, Any] | None, digits: int = 1, unit: str = "") -> str:
    if not d:
        return "—"
    return f"{fmt(d['median'], unit, digits)} / {fmt(d['worst'], unit, digits)}"


def round_line(r: dict[str, Any]) -> str:
    s = summarize_round(r)
    return (
        f"  round {r['round']}: ping seq {fmt(s.get('seq_palyra_cps'))}/s vs bare "
        f"{fmt(s.get('seq_bare_cps'))}/s (ratio {fmt(s.get('seq_ratio'), digits=2)}), conc "
        f"{fmt(s.get('conc_palyra_cps'))}/s vs {fmt(s.get('conc_bare_cps'))}/s "
        f"(ratio {fmt(s.get('conc_ratio'), digits=2)}); pair QR/PIN p50 "
        f"{fmt(s.get('pair_qr_node_ms_p50'))}/{fmt(s.get('pair_pin_node_ms_p50'))} ms; watch "
        f"p99 {fmt(s.get('watch_p99'), digits=1)} ms (missing {s.get('watch_missing')}); "
        f"revoke max ops/journal/cli {fmt(s.get('revoke_ops_p99'))}/"
        f"{fmt(s.get('revoke_journal_p99'))}/{fmt(s.get('revoke_cli_p99'))} ms; CLI pair "
        f"QR/PIN p50 {fmt(s.get('cli_pair_qr_p50'))}/{fmt(s.get('cli_pair_pin_p50'))} ms; "
        f"load {r['loadavg_at_end'][0]:.2f}"
    )


def print_summary(s: dict[str, Any], startup_ms: list[float]) -> None:
    def g(k: str) -> dict[str, Any] | None:
        d: dict[str, Any] | None = s.get(k)
        return d

    print()
    print("1. unary Node.Ping over mTLS (median of rounds / worst round)")
    print(f"  {'':<30}{'Palyra':>22}{'bare grpcio':>22}{'ratio':>16}")
    for variant, label in (("seq", "1 client loop"), ("conc", "concurrent threads")):
        if g(f"{variant}_ratio") is None:
            continue
        print(
            f"  {label + ' calls/s':<30}{mw(g(f'{variant}_palyra_cps'), 0):>22}"
            f"{mw(g(f'{variant}_bare_cps'), 0):>22}{mw(g(f'{variant}_ratio'), 2):>16}"
        )
        for f in ("p50", "p99"):
            print(
                f"  {'  latency ' + f + ' (ms)':<30}{mw(g(f'{variant}_palyra_{f}'), 2):>22}"
                f"{mw(g(f'{variant}_bare_{f}'), 2):>22}"
            )
        print(
            f"  {'  server CPU ms / 1000 calls':<30}"
            f"{mw(g(f'{variant}_palyra_cpu_per_1000'), 0):>22}"
            f"{mw(g(f'{variant}_bare_cpu_per_1000'), 0):>22}"
        )
    print()
    print("2. pairing wall time, auto-approve, ms (median of per-round p50 / worst round's max)")
    for method in ("qr", "pin"):
        for key, label in (
            ("node_ms", "node's first byte → cert verified"),
            ("with_window_ms", "with the window-open request"),
            ("window_open_ms", "window-open request alone"),
        ):
            p50, mx = g(f"pair_{method}_{key}_p50"), g(f"pair_{method}_{key}_max")
            print(
                f"  {method.upper():<4}{label:<38} p50 {mw(p50, 1):>16}   max "
                f"{fmt(mx['worst'] if mx else None, digits=1)}"
            )
    for method in ("qr", "pin"):
        pc = s["pooled"][f"cli_pair_{method}"]
        failed = sum(x or 0 for x in (g(f"cli_pair_{method}_failed") or {}).get("rounds", []))
        print(
            f"  {method.upper():<4}{'CLI wall: palyra-node pair':<38} p50 "
            f"{mw(g(f'cli_pair_{method}_p50'), 0):>16}   max "
            f"{fmt((g(f'cli_pair_{method}_max') or {}).get('worst'), digits=0)}"
            f"   (pooled n={pc['n']}, failed {failed})"
        )
    print(f"  palyra-node --help alone (Python start-up): {startup_ms} ms")
    print()
    print("3. run finished → watch line at the client, ms (median of rounds / worst round)")
    for f in ("p50", "p99", "max"):
        print(f"  {f:<6}{mw(g(f'watch_{f}'), 1):>20}")
    pw = s["pooled"]["watch"]
    print(
        f"  pooled n={pw['n']} p50 {fmt(pw['p50'], digits=1)} p99 {fmt(pw['p99'], digits=1)} "
        f"max {fmt(pw['max'], digits=1)}; missing deliveries (all rounds) "
        f"{sum(x or 0 for x in (g('watch_missing') or {}).get('rounds', []))}; RunNow call → "
        f"line p50 {mw(g('watch_runnow_p50'), 1)}"
    )
    print(
        f"  the executor's first run after start (not in the figures above): "
        f"{mw(g('watch_first_run'), 1)}"
    )
    print()
    print("4. revoke → stream closed (PERMISSION_DENIED at the client), ms")
    for name, label in (
        ("ops", "ops.nodes.revoke (journal + poke)"),
        ("journal", "journal only (200 ms refresh)"),
        ("cli", "`palyra node revoke` subprocess"),
    ):
        pp = s["pooled"][f"revoke_{name}"]
        failed = sum(x or 0 for x in (g(f"revoke_{name}_failed") or {}).get("rounds", []))
        print(
            f"  {label:<32} p50 {mw(g(f'revoke_{name}_p50'), 0):>14}  p99 "
            f"{mw(g(f'revoke_{name}_p99'), 0):>14}  pooled n={pp['n']} p50 "
            f"{fmt(pp['p50'])} p99 {fmt(pp['p99'])} max {fmt(pp['max'])}; not closed: {failed}"
        )
    print()
    print("5. daemon (supervisor + children) over the round window")
    print(
        f"  peak RSS MB {mw(g('peak_rss_mb'), 0)}    CPU s {mw(g('cpu_s'), 1)} (node_rpc "
        f"{mw(g('node_rpc_cpu_s'), 1)})"
    )
    print(
        f"  RSS MB after the unary runs: node_rpc process {mw(g('node_rpc_rss_mb'), 0)}, "
        f"bare grpcio server {mw(g('bare_rss_mb'), 0)}"
    )
    print()
    print("targets")

    def verdict(x: float | None, ok: bool) -> str:
        return "—" if x is None else ("PASS" if ok else "FAIL")

    for which in ("median", "worst"):
        ratio = (g("seq_ratio") or {}).get(which)
        print(
            f"  unary calls/s ≥ {TARGET_RATIO:.0%} of bare ({which} round): "
            f"{fmt(None if ratio is None else ratio * 100, '%', 0)} "
            f"[{verdict(ratio, ratio is not None and ratio >= TARGET_RATIO)}]"
        )
    wp = s["pooled"]["watch"]["p99"]
    ww = (g("watch_p99") or {}).get("worst")
    print(
        f"  watch p99 ≤ {TARGET_WATCH_P99_MS:.0f} ms: pooled {fmt(wp, digits=1)} "
        f"[{verdict(wp, wp is not None and wp <= TARGET_WATCH_P99_MS)}], worst round "
        f"{fmt(ww, digits=1)} [{verdict(ww, ww is not None and ww <= TARGET_WATCH_P99_MS)}]"
    )
    for name in REVOKE_WAYS:
        mx = s["pooled"][f"revoke_{name}"]["max"]
        print(
            f"  revoke → closed ≤ {TARGET_REVOKE_MS:.0f} ms ({name}): pooled max {fmt(mx)} "
            f"[{verdict(mx, mx is not None and mx <= TARGET_REVOKE_MS)}]"
        )


# --- main ----------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: 2 short rounds")
    ap.add_argument("--rounds", type=int, help="rounds (default 5; quick 2)")
    ap.add_argument("--seconds", type=float, help="unary s per side per round (default 3; quick 1)")
    ap.add_argument("--calls", type=int, help="N calls per side per round instead of --seconds")
    ap.add_argument(
        "--slices",
        type=int,
        default=6,
        help="alternating slices per side and round (A B A B …; default 6)",
    )
    ap.add_argument("--threads", type=int, default=4, help="concurrent client threads (0: none)")
    ap.add_argument("--watch-runs", type=int, help="run-nows per round (default 30; quick 8)")
    ap.add_argument(
        "--pairings", type=int, help="pairings (+ revocations) per round (default 12; quick 6)"
    )
    ap.add_argument(
        "--cli-pairings", type=int, help="palyra-node pair runs per round (default 4; quick 2)"
    )
    ap.add_argument("--warmup", type=float, help="s after ready before measuring (default 3)")
    ap.add_argument("--tmp", default=tempfile.gettempdir(), help="where temp homes go")
    ap.add_argument("--out", help="raw JSON (default bench/results/node_rpc[-quick].json)")
    ap.add_argument("--echo-child", metavar="CERTS_DIR", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    q = args.quick
    defaults = {
        "rounds": 2 if q else 5,
        "seconds": 1.0 if q else 3.0,
        "watch_runs": 8 if q else 30,
        "pairings": 6 if q else 12,
        "cli_pairings": 2 if q else 4,
        "warmup": 1.0 if q else 3.0,
    }
    for k, v in defaults.items():
        if getattr(args, k) is None:
            setattr(args, k, v)
    if args.out is None:
        args.out = str(RESULTS / ("node_rpc-quick.json" if q else "node_rpc.json"))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.echo_child:
        echo_child(Path(args.echo_child))
        return 0
    sys.path.insert(0, str(ROOT))
    vers = versions()
    bytecode = compile_bytecode()
    method = method_line(args, vers, bytecode)
    print(method, flush=True)
    startup = cli_startup_ms()
    rounds: list[dict[str, Any]] = []
    result: dict[str, Any] = {
        "method": method,
        "versions": vers,
        "config": {k: v for k, v in vars(args).items() if k != "echo_child"},
        "started_at": datetime.now(UTC).isoformat(),
        "cli_startup_ms_palyra_node_help": startup,
        "rounds": rounds,
    }
    t_all = time.monotonic()
    try:
        for i in range(1, args.rounds + 1):
            r = daemon_round(args, i)
            rounds.append(r)
            print(round_line(r), flush=True)
    finally:
        result["elapsed_s"] = round(time.monotonic() - t_all, 1)
        result["summary"] = summarize(rounds)
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(result, indent=1))
    print_summary(result["summary"], startup)
    print(f"\nraw numbers: {args.out} (elapsed {result['elapsed_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
