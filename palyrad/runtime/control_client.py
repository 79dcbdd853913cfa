"""The client side of the daemon's request socket
(see ``palyrad.services.scheduler.control_socket``).

Kept apart from the server so that the CLI's run-now shortcut imports only ``socket`` and
``json`` (the server needs logging and selectors; the trigger module needs SQLite): this
module is on the path of a 100 ms budget. The stdlib ``json`` is used on purpose: importing
orjson (uuid, dataclasses, inspect) would cost more than the whole exchange.
"""

from __future__ import annotations

import json
import os
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


# A Unix socket address holds at most ~107 bytes of path.
MAX_ADDRESS_BYTES = 100


def address(path: Path) -> tuple[str, int | None]:
    """The address to bind or connect ``path`` by, and a directory fd to close afterwards.

    A home deep enough to overflow the address is reached through ``/proc/self/fd/N`` of an
    open descriptor of its ``run/`` directory (Linux); elsewhere that address fails like any
    other and callers go without the socket."""
    if len(os.fsencode(path)) <= MAX_ADDRESS_BYTES:
        return str(path), None
    fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    return f"/proc/self/fd/{fd}/{path.name}", fd


def request(
    run_dir: Path,
    message: dict[str, Any],
    timeout_s: float = REPLY_TIMEOUT_S,
    name: str = SOCKET_NAME,
) -> Any:
    """Send one request to the socket ``run_dir/name`` and return the decoded reply;
    NotListening when nobody serves it (nothing was sent). A TimeoutError means the daemon
    took the request but did not answer in time."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout_s)
        dir_fd: int | None = None
        try:
            addr, dir_fd = address(run_dir / name)
            sock.connect(addr)
        except OSError as exc:  # absent, stale, refused, backlog full (EAGAIN), too long
            raise NotListening(str(exc)) from exc
        finally:
            if dir_fd is not None:
                os.close(dir_fd)
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
