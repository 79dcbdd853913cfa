"""node-rpc service. For now: a loopback health endpoint (the gRPC listeners come later).

``GET /health`` answers JSON with the daemon instance and this process's pid, so tools and
doctor can check reachability without a certificate.
"""

from __future__ import annotations

import logging
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import orjson

from palyrad.services.context import ServiceContext

log = logging.getLogger("palyrad.node_rpc")


def run_node_rpc(ctx: ServiceContext) -> None:
    """Serve ``GET /health`` on a thread; the loop only waits for the stop (no clock, no
    runs: nothing here decides anything in time)."""
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
    port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, name="health", daemon=True)
    thread.start()
    ctx.ready({"health_port": port})
    log.info("health endpoint listening", extra={"port": port})
    while not ctx.stopping:
        ctx.wait(5.0)
    server.shutdown()
    server.server_close()
