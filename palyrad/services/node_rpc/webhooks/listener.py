"""The webhook listener of node_rpc: transport, checks and the accept writer, wired.

``start`` binds ``[webhooks] listen``/``port`` (0 = any free port; the port this daemon chose
before is tried first, so a sender configured with it keeps working across restarts) and
returns the bound address for ``daemon status`` → ``endpoints.webhook``, or None when it
cannot bind: node_rpc stays up for the pairing and node listeners, and doctor says why.
With ``[webhooks] tls = true`` it serves HTTPS with the daemon's server certificate, reloaded
into the same context when it is renewed (new connections get the new one).
"""

from __future__ import annotations

import logging
import os
import ssl
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from certs.server_files import SERVER_CERT, SERVER_KEY
from palyrad.journal import Journal
from palyrad.services.context import ServiceContext
from palyrad.services.node_rpc.webhooks.accept import AcceptWriter
from palyrad.services.node_rpc.webhooks.http_server import HttpServer, Limits
from palyrad.services.node_rpc.webhooks.ingress import WebhookIngress

log = logging.getLogger("palyrad.webhooks")

POOL_WORKERS = 4  # journal reads and secret files off the event loop


class WebhookListener:
    """Owns the listener's threads; ``start`` once, ``stop`` once (both from node_rpc's main
    thread)."""

    def __init__(self, ctx: ServiceContext, journals: Callable[[], Journal]) -> None:
        self._ctx = ctx
        self._pool = ThreadPoolExecutor(POOL_WORKERS, thread_name_prefix="webhook")
        self._writer = AcceptWriter(
            ctx.open_journal,
            ctx.clock,
            lambda: ctx.config.webhook_rate_per_minute,
            lambda: ctx.poke("scheduler"),
        )
        self.ingress = WebhookIngress(
            journals,
            self._pool,
            ctx.clock,
            self._writer,
            lambda: ctx.config.webhook_max_body_bytes,
            os.environ,
        )
        self._ssl: ssl.SSLContext | None = None
        self._generation = 0
        self._writer_started = False
        self._failures = 0
        self._server: HttpServer | None = None
        self.port: int | None = None

    def _ssl_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        self._load_chain(context)
        return context

    def _load_chain(self, context: ssl.SSLContext) -> None:
        certs = self._ctx.home.certs_dir
        context.load_cert_chain(certs / SERVER_CERT, certs / SERVER_KEY)

    def reload_certificate(self, generation: int) -> None:
        """After a renewal (``generation`` moved): new connections get the new certificate."""
        if generation == self._generation:
            return
        self._generation = generation
        if self._ssl is not None:
            try:
                self._load_chain(self._ssl)
            except (OSError, ssl.SSLError) as exc:
                log.error("webhook listener kept its old certificate", extra={"error": str(exc)})

    def start(self, remembered: int | None) -> int | None:
        """Bind and serve; the bound port, or None when the listener is not up (then
        ``start`` is called again later: a port another program held at boot is taken as
        soon as it is free, without a restart)."""
        if self._server is not None:
            return self.port
        cfg = self._ctx.config
        try:
            self._ssl = self._ssl_context() if cfg.webhook_tls else None
        except (OSError, ssl.SSLError) as exc:
            self._not_up("webhook listener not up: no certificate", error=str(exc))
            return None
        if not self._writer_started:
            self._writer.start()
            self._writer_started = True
        wants = [cfg.webhook_port]
        if cfg.webhook_port == 0 and remembered:
            wants = [remembered, 0]
        errors = []
        for want in wants:
            server = HttpServer(self.ingress, Limits(), self._ssl, self._ctx.clock)
            try:
                _, self.port = server.start(cfg.webhook_listen, want)
            except OSError as exc:
                errors.append(f"{cfg.webhook_listen}:{want}: {exc.strerror or exc}")
                continue
            self._server = server
            if self._failures:
                log.info("webhook listener up", extra={"port": self.port})
            return self.port
        self._not_up("webhook listener not up: cannot bind", errors=errors)
        return None

    def _not_up(self, msg: str, **extra: object) -> None:
        """Logged on the first failure and every tenth retry after (one a minute or so)."""
        if self._failures % 10 == 0:
            log.error(msg, extra={"attempt": self._failures + 1, **extra})
        self._failures += 1

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
        self._writer.stop()
        self._pool.shutdown(wait=False, cancel_futures=True)
