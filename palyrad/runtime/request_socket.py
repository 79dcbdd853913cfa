"""A request socket in the home's ``run/`` directory: one JSON line in, one JSON line out.

The transport of the daemon's local request sockets (the scheduler's ``run/control.sock``
for run-now, node_rpc's ``run/node_rpc.sock`` for pairing windows). It serves on the owning
service's selector, in that service's own thread, so a handler may use the service's journal
connection. The socket lives in the 0700 ``run/`` directory and is itself 0600: only the
owner can connect. Requests are capped (size, open connections, time to send a complete
line); a malformed one gets an error reply or a closed connection, never a crashed service.

The client is ``palyrad.runtime.control_client.request``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import selectors
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from palyrad.runtime.control_client import address

log = logging.getLogger("palyrad.control")

MAX_REQUEST_BYTES = 128 * 1024  # a 64 KiB payload, JSON-escaped, fits
MAX_CONNECTIONS = 32
REQUEST_TIMEOUT_S = 5.0  # to send a complete line; then the connection is dropped

Handler = Callable[[dict[str, Any]], dict[str, Any]]


class _Conn:
    __slots__ = ("buf", "opened", "sock")

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.opened = time.monotonic()  # for the request timeout: a duration, not an instant


class ControlServer:
    """Serves requests on the service's selector, one complete line at a time, in the
    service's own thread — so a handler may use the service's journal connection."""

    def __init__(
        self,
        path: Path,
        handler: Handler,
        register: Callable[[int, int, Callable[[int], bool]], None],
        unregister: Callable[[int], None],
    ) -> None:
        self.path = path
        self.handler = handler
        self._register = register
        self._unregister = unregister
        self._conns: dict[int, _Conn] = {}
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()  # a stale socket of a crashed daemon (the pid lock is ours)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        dir_fd: int | None = None
        try:
            addr, dir_fd = address(self.path)
            self.sock.bind(addr)
        except OSError:
            self.sock.close()
            raise
        finally:
            os.umask(old)
            if dir_fd is not None:
                os.close(dir_fd)
        os.chmod(self.path, 0o600)
        self.sock.listen(MAX_CONNECTIONS)
        self.sock.setblocking(False)
        register(self.sock.fileno(), selectors.EVENT_READ, self._accept)

    def _accept(self, _mask: int) -> bool:
        while True:
            try:
                conn, _ = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return False
            except OSError:
                log.warning("control socket accept failed", exc_info=True)
                return False
            if len(self._conns) >= MAX_CONNECTIONS:
                conn.close()  # the client falls back to the journal path
                continue
            conn.setblocking(False)
            c = _Conn(conn)
            self._conns[conn.fileno()] = c
            self._register(conn.fileno(), selectors.EVENT_READ, self._reader(c))

    def _reader(self, c: _Conn) -> Callable[[int], bool]:
        return lambda _mask: self._read(c)

    def _read(self, c: _Conn) -> bool:
        """Collect a request line; once complete, answer it. True once a request was
        handled (the service loop looks again: the handler may have left work)."""
        try:
            return self._serve(c)
        except Exception:  # nothing a client sends may stop the service
            log.exception("control connection failed")
            self._close(c)
            return False

    def _serve(self, c: _Conn) -> bool:
        try:
            chunk = c.sock.recv(65536)
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            chunk = b""
        if not chunk:
            self._close(c)
            return False
        c.buf += chunk
        end = c.buf.find(b"\n")
        if end < 0:
            if len(c.buf) > MAX_REQUEST_BYTES:
                self._reply(c, {"ok": False, "error": "request_too_large"})
            return False
        try:
            message = json.loads(bytes(c.buf[:end]))
            if not isinstance(message, dict):
                raise ValueError("not an object")
        except Exception:  # ValueError, RecursionError on deep nesting, ...
            self._reply(c, {"ok": False, "error": "bad_request"})
            return False
        try:
            reply = self.handler(message)
        except Exception:
            log.exception("control request failed", extra={"op": str(message.get("op"))})
            reply = {"ok": False, "error": "internal"}
        self._reply(c, reply)
        return True

    def _reply(self, c: _Conn, reply: dict[str, Any]) -> None:
        """Send the (small) reply and close; a client that does not read is dropped."""
        try:
            c.sock.settimeout(1.0)
            c.sock.sendall(json.dumps(reply).encode() + b"\n")
        except OSError:
            pass
        self._close(c)

    def _close(self, c: _Conn) -> None:
        fd = c.sock.fileno()
        if fd >= 0:
            self._unregister(fd)
            self._conns.pop(fd, None)
        c.sock.close()

    def sweep(self) -> None:
        """Drop connections that did not send a complete request in time."""
        limit = time.monotonic() - REQUEST_TIMEOUT_S  # monotonic: ages, not wall instants
        for c in [c for c in self._conns.values() if c.opened < limit]:
            self._close(c)

    def next_sweep_s(self) -> float | None:
        """Seconds until the oldest open connection times out (None: none open)."""
        if not self._conns:
            return None
        oldest = min(c.opened for c in self._conns.values())
        return max(0.0, oldest + REQUEST_TIMEOUT_S - time.monotonic())

    def close(self) -> None:
        """Close every connection and the socket, and remove its file (a clean stop)."""
        for c in list(self._conns.values()):
            self._close(c)
        self._unregister(self.sock.fileno())
        self.sock.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
