"""The client side of the daemon's request socket (see ``palyrad.control_socket``).

Kept apart from the server so that the CLI's run-now shortcut imports only ``socket`` and
``json`` (the server needs logging and selectors; the trigger module needs SQLite): this
module is on the path of a 100 ms budget. The stdlib ``json`` is used on purpose: importing
orjson (uuid, dataclasses, inspect) would cost more than the whole exchange.
"""

from __future__ import annotations

import json
import socket

# `typing` itself is ~4 ms of import; mypy honours a module-level TYPE_CHECKING constant.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

SOCKET_NAME = "control.sock"
REPLY_TIMEOUT_S = 10.0  # the client's wait for the decision


class NotListening(Exception):
    """No daemon is serving the socket (not running, or an older one without it)."""


def socket_path(run_dir: Path) -> Path:
    return run_dir / SOCKET_NAME


def run_now_request(routine_id: str, payload: str | None) -> dict[str, Any]:
    return {"op": "run_now", "routine_id": routine_id, "payload": payload}


def request(run_dir: Path, message: dict[str, Any], timeout_s: float = REPLY_TIMEOUT_S) -> Any:
    """Send one request and return the decoded reply; NotListening when nobody serves it.
    A TimeoutError means the daemon took the request but did not answer in time."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout_s)
        try:
            sock.connect(str(socket_path(run_dir)))
        except (FileNotFoundError, ConnectionRefusedError) as exc:
            raise NotListening(str(exc)) from exc
        chunks: list[bytes] = []
        try:
            sock.sendall(json.dumps(message).encode() + b"\n")
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except (ConnectionResetError, BrokenPipeError) as exc:
            # Closed unanswered: the server was at its connection cap (or went away). Only a
            # scheduler dying in the middle of a request could have journaled it already.
            raise NotListening(str(exc)) from exc
        data = b"".join(chunks)
    finally:
        sock.close()
    if not data:
        raise NotListening("the daemon closed the connection without a reply")
    return json.loads(data)
