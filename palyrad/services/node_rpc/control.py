"""node_rpc's request socket, ``run/node_rpc.sock``: ``palyra node pair-code`` opens a window.

The PIN must live only in this process's memory (SPEC §5), so the operator's command cannot
write a window into the journal itself: it asks the running daemon, over a socket only the
owner can open, and prints what comes back — the one place a pairing code is ever shown.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from typing import Any

from palyra_proto.pairing import (
    PairingFormatError,
    PairUri,
    check_host,
    format_address,
    generate_pin,
    new_token,
    token_sha256,
)
from palyrad.domain.runs import new_ulid
from palyrad.journal import Journal
from palyrad.journal.records import PairingWindow
from palyrad.ops.nodes import MAX_TTL_MS, MIN_TTL_MS
from palyrad.runtime.config import DaemonConfig
from palyrad.seams import Clock
from palyrad.services.node_rpc.memory_search import MemorySearch
from palyrad.services.node_rpc.pairing import PairingService, PinWindow
from palyrad.services.node_rpc.tls import ServerTLS

log = logging.getLogger("palyrad.node_rpc")


def default_host(config: DaemonConfig) -> str:
    """The host put in a pairing address: ``advertise_host``, else the first listen address
    (a wildcard names nothing a node could dial: the host name then)."""
    host = config.rpc_advertise_host or (config.rpc_listen[0] if config.rpc_listen else "")
    if host in ("", "0.0.0.0", "::"):
        try:  # a host name a node can parse out of a URI (not, say, "my_host")
            host = check_host(socket.gethostname())
        except PairingFormatError:
            log.warning("the host name is not usable in a pairing address; set advertise_host")
            host = "127.0.0.1"
    return host


class ControlHandler:
    """Answers ``open_window`` (and ``memory_search``, ``memory_search.py``) in node_rpc's
    main thread, with its journal connection."""

    def __init__(
        self,
        journal: Journal,
        clock: Clock,
        config: DaemonConfig,
        tls: ServerTLS,
        pairing: PairingService,
        pairing_port: Callable[[], int | None],
    ) -> None:
        self._journal = journal
        self._clock = clock
        self._config = config
        self._tls = tls
        self._pairing = pairing
        self._port = pairing_port
        self._memory = MemorySearch(journal, clock, config)

    def __call__(self, msg: dict[str, Any]) -> dict[str, Any]:
        op = msg.get("op")
        if op == "memory_search":
            return self._memory(msg)
        if op != "open_window":
            return {"ok": False, "error": "unknown_op"}
        method, ttl_ms = msg.get("method"), msg.get("ttl_ms")
        auto, host = msg.get("auto_approve", False), msg.get("host")
        if method not in ("pin", "qr"):
            return _bad("method must be pin or qr")
        if not isinstance(ttl_ms, int) or isinstance(ttl_ms, bool):
            return _bad("ttl_ms must be an integer")
        if not MIN_TTL_MS <= ttl_ms <= MAX_TTL_MS:
            return _bad("--ttl must be between 30s and 24h")
        if not isinstance(auto, bool):
            return _bad("auto_approve must be true or false")
        if host is not None and not isinstance(host, str):
            return _bad("host must be a string")
        try:
            host = check_host(host) if host else default_host(self._config)
        except PairingFormatError as exc:
            return _bad(str(exc))
        port = self._port()
        if port is None:
            return {
                "ok": False,
                "error": "unavailable",
                "message": "the pairing listener is not up (see palyra daemon status and "
                "the daemon log: is [rpc] pairing_port in use?)",
            }
        now = self._clock.now_ms()
        self._tls.ensure_names([host], now)  # --host: reissue the server cert to cover it
        window_id = new_ulid(now)
        code = generate_pin() if method == "pin" else new_token()
        expires = now + ttl_ms
        self._journal.pairing.open_window(
            PairingWindow(
                window_id=window_id,
                method=method,
                token_sha256=token_sha256(code) if method == "qr" else None,
                auto_approve=auto,
                host=host,
                opened_ms=now,
                expires_ms=expires,
            ),
            now,
        )
        self._pairing.set_pin_window(
            PinWindow(window_id, code, expires, auto) if method == "pin" else None
        )
        uri = None
        if method == "qr":
            uri = PairUri(host, port, self._tls.ca_spki_sha256, code, expires // 1000).to_uri()
        log.info(
            "pairing window opened",
            extra={"window_id": window_id, "method": method, "auto_approve": auto},
        )
        return {
            "ok": True,
            "window_id": window_id,
            "method": method,
            "code": code,
            "uri": uri,
            "address": format_address(host, port),
            "expires_at_ms": expires,
        }


def _bad(message: str) -> dict[str, Any]:
    return {"ok": False, "error": "bad_request", "message": message}
