"""The node_rpc service: the pairing, node and webhook listeners, and the health endpoint.

Threads: gRPC's worker pools serve the two listeners (each worker with its own journal
connection, ``ThreadJournals``); the main thread owns the request socket for ``pair-code``,
refreshes the device registry (every 200 ms and on every poke), fails silent pairing
handshakes, wakes watch streams and pairing waits on pokes, closes the watch streams
self-healing found stale (every pass: one read of a table of at most 48 rows; a poke from
the remediation makes it immediate), renews the server certificate when it is due and prunes
old deliveries.

The webhook listener (``webhooks/``) runs its own event loop thread, a writer thread and a
decision-waiter thread; see ``webhooks/listener.py``.

A listener that cannot bind (its port in use) is logged and reported as ``null`` in
``daemon status --json`` → ``endpoints``; the process stays up for the other one and the
health endpoint, rather than being restarted into the same busy port until it is fatal.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import grpc
import orjson

from palyra_proto import palyra_node_pb2_grpc as pb_grpc
from palyra_proto.pairing import format_address
from palyrad.journal import STATE_LISTENER_PORTS, Journal
from palyrad.ops.nodes import SOCKET_NAME
from palyrad.runtime.request_socket import ControlServer
from palyrad.services.context import ServiceContext
from palyrad.services.node_rpc.control import ControlHandler
from palyrad.services.node_rpc.node_api import MAX_STREAMS, DeliveryHub, NodeService
from palyrad.services.node_rpc.pairing import PairingService
from palyrad.services.node_rpc.registry import DeviceRegistry
from palyrad.services.node_rpc.tls import ServerTLS, server_names
from palyrad.services.node_rpc.webhooks.listener import WebhookListener

log = logging.getLogger("palyrad.node_rpc")

LOOP_S = 0.2  # registry refresh and handshake sweep cadence
HOUSEKEEPING_MS = 60_000
WEBHOOK_RETRY_MS = 5_000  # a webhook port that could not be bound is tried again this often
PAIRING_MESSAGE_BYTES = 64 * 1024
NODE_MESSAGE_BYTES = 1024 * 1024
DAY_MS = 86_400_000
NODE_WORKERS = MAX_STREAMS + 16  # watch streams hold a worker each; unary calls get the rest


class ThreadJournals:
    """One journal connection per thread (sqlite3 connections stay in their thread)."""

    def __init__(self, ctx: ServiceContext) -> None:
        self._path = ctx.home.journal
        self._sync = ctx.config.journal_synchronous
        self._local = threading.local()

    def __call__(self) -> Journal:
        j: Journal | None = getattr(self._local, "journal", None)
        if j is None:
            j = Journal(self._path, synchronous=self._sync)
            self._local.journal = j
        return j


def _serve_health(ctx: ServiceContext) -> ThreadingHTTPServer:
    """``GET /health``: reachability without a certificate (tools, doctor)."""
    instance = ctx.instance

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != "/health":
                self.send_error(404)
                return
            body = orjson.dumps({"ok": True, "instance": instance, "pid": os.getpid()})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            return  # access lines are noise in the daemon log

    server = ThreadingHTTPServer(("127.0.0.1", ctx.config.health_port), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    return server


def _bind(
    server: grpc.Server,
    hosts: tuple[str, ...],
    port: int,
    creds: grpc.ServerCredentials,
    remembered: int | None = None,
) -> int | None:
    """Bind ``port`` on each listen address — for port 0 the one this daemon chose before
    if it is still free (a paired node stored it: a restart must not move the listener),
    else any free one — then the same port on every further host. The bound port, or None
    when nothing could be bound."""
    bound: int | None = None
    for host in hosts:
        wants = [bound] if bound is not None else [port]
        if bound is None and port == 0 and remembered:
            wants = [remembered, 0]
        for want in wants:
            try:
                got = server.add_secure_port(format_address(host, want), creds)
            except RuntimeError as exc:  # grpc raises RuntimeError when it cannot bind
                log.warning("listener cannot bind", extra={"address": f"{host}:{want}",
                                                            "error": str(exc)})  # fmt: skip
                continue
            if got:
                bound = got
                break
            log.warning("listener cannot bind", extra={"address": f"{host}:{want}"})
        if bound is None:
            log.error("listener not up", extra={"host": host, "port": port})
    return bound


def run_node_rpc(ctx: ServiceContext) -> None:
    cfg = ctx.config
    journals = ThreadJournals(ctx)
    journal = ctx.journal
    now = ctx.clock.now_ms()
    tls = ServerTLS(ctx.home.certs_dir, server_names(cfg), now)
    registry = DeviceRegistry()
    registry.refresh(journal, force=True)
    # Windows and streams do not survive the process: a PIN was only in its memory.
    journal.pairing.close_all_open("daemon_restart", now)
    journal.devices.clear_watches()
    hub = DeliveryHub()
    ports: dict[str, int | None] = {"pairing": None, "node": None, "webhook": None}
    remembered: dict[str, int] = {}
    with contextlib.suppress(ValueError, TypeError):
        remembered = dict(orjson.loads(journal.state.get(STATE_LISTENER_PORTS) or "{}"))

    pairing = PairingService(
        journals, ctx.clock, tls, registry, cfg.device_cert_ttl_s, lambda: ports["node"]
    )
    node = NodeService(
        ctx.home, journals, ctx.clock, tls, registry, hub, cfg.device_cert_ttl_s,
        lambda: ctx.stopping, lambda: ctx.config.stream_heartbeat_ms,
    )  # fmt: skip

    pairing_server = grpc.server(
        ThreadPoolExecutor(max_workers=8, thread_name_prefix="pairing"),
        maximum_concurrent_rpcs=16,
        options=[
            ("grpc.max_receive_message_length", PAIRING_MESSAGE_BYTES),
            ("grpc.max_send_message_length", PAIRING_MESSAGE_BYTES),
            ("grpc.max_concurrent_streams", 4),
            ("grpc.so_reuseport", 0),  # see the node server below
        ],
    )
    pb_grpc.add_PairingServicer_to_server(pairing, pairing_server)
    ports["pairing"] = _bind(
        pairing_server,
        cfg.rpc_listen,
        cfg.pairing_port,
        tls.credentials(client_auth=False),
        remembered.get("pairing"),
    )
    node_server = grpc.server(
        ThreadPoolExecutor(max_workers=NODE_WORKERS, thread_name_prefix="node"),
        maximum_concurrent_rpcs=4 * NODE_WORKERS,
        options=[
            ("grpc.max_receive_message_length", NODE_MESSAGE_BYTES),
            ("grpc.max_send_message_length", NODE_MESSAGE_BYTES),
            ("grpc.keepalive_time_ms", 30_000),
            ("grpc.http2.min_ping_interval_without_data_ms", 10_000),
            # gRPC sets SO_REUSEPORT by default: a second daemon (another home) could then
            # bind the same port and the kernel would split connections between the two.
            ("grpc.so_reuseport", 0),
        ],
    )
    pb_grpc.add_NodeServicer_to_server(node, node_server)
    ports["node"] = _bind(
        node_server,
        cfg.rpc_listen,
        cfg.node_port,
        tls.credentials(client_auth=True),
        remembered.get("node"),
    )
    webhooks = WebhookListener(ctx, journals)
    ports["webhook"] = webhooks.start(remembered.get("webhook"))
    chosen = {k: v for k, v in ports.items() if v is not None}
    if chosen != remembered:
        journal.state.set(STATE_LISTENER_PORTS, orjson.dumps(chosen).decode(), now)
    pairing_server.start()
    node_server.start()

    control: ControlServer | None = None
    try:
        control = ControlServer(
            ctx.home.run_dir / SOCKET_NAME,
            ControlHandler(journal, ctx.clock, cfg, tls, pairing, lambda: ports["pairing"]),
            ctx.register,
            ctx.unregister,
        )
    except OSError as exc:
        log.error("node_rpc request socket unavailable", extra={"error": str(exc)})
    health = _serve_health(ctx)
    host = cfg.rpc_listen[0] if cfg.rpc_listen else "127.0.0.1"
    hosts = {"pairing": host, "node": host, "webhook": cfg.webhook_listen}
    endpoints = {
        name: None if port is None else format_address(hosts[name], port)
        for name, port in ports.items()
    }
    ctx.listen_fifo()
    ctx.ready({"health_port": health.server_address[1], "endpoints": endpoints})
    log.info("node listeners up", extra={"endpoints": endpoints})

    housekeeping_at = 0
    webhook_retry_at = ctx.clock.now_ms() + WEBHOOK_RETRY_MS
    try:
        while not ctx.stopping:
            now = ctx.clock.now_ms()
            if control is not None:
                control.sweep()
            if registry.refresh(journal):
                hub.notify()  # a revocation: streams re-check now
            pairing.sweep(now)
            _close_requested(node, journal)
            if now >= housekeeping_at:
                housekeeping_at = now + HOUSEKEEPING_MS
                _housekeeping(ctx, journal, tls, webhooks, now)
            if ports["webhook"] is None and now >= webhook_retry_at:
                webhook_retry_at = now + WEBHOOK_RETRY_MS
                ports["webhook"] = webhooks.start(remembered.get("webhook"))
                if ports["webhook"] is not None:
                    endpoints["webhook"] = format_address(cfg.webhook_listen, ports["webhook"])
                    ctx.ready({"health_port": health.server_address[1], "endpoints": endpoints})
            if ctx.wait(LOOP_S):
                registry.refresh(journal)
                hub.notify()
                pairing.notify()
    finally:
        hub.notify()
        done = [pairing_server.stop(grace=1.0), node_server.stop(grace=1.0)]
        for event in done:
            event.wait(3.0)
        webhooks.stop()
        if control is not None:
            control.close()
        health.shutdown()
        health.server_close()


def _close_requested(node: NodeService, journal: Journal) -> None:
    """Self-healing's close requests for stale streams; a failure is logged and retried on
    the next pass (the request stays in the journal)."""
    try:
        node.close_requested(journal)
    except Exception:
        log.exception("closing requested watch streams failed")


def _housekeeping(
    ctx: ServiceContext, journal: Journal, tls: ServerTLS, webhooks: WebhookListener, now: int
) -> None:
    """Once a minute: renew the server certificate when due, expire windows, drop deliveries
    past ``[delivery] retention_days``, old pairing records and webhook MACs whose window
    ended. Failures are logged: none of this is worth stopping the listeners for."""
    try:
        if tls.ensure_names([], now):
            log.info("server certificate renewed")
        webhooks.reload_certificate(tls.generation)
        journal.webhooks.prune(now)
        journal.pairing.expire_windows(now)
        journal.outbox.prune(now - ctx.config.delivery_retention_days * DAY_MS)
        journal.pairing.prune(now - 30 * DAY_MS)
    except Exception:
        log.exception("node_rpc housekeeping failed")
