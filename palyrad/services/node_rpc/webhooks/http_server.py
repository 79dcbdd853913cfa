"""The webhook listener's transport: a small, hardened HTTP/1.1 server (asyncio + h11).

It faces hostile clients, so it only moves bytes and enforces limits; what a request means
(HMAC signatures, routines) is the handler's business, behind the ``Handler`` seam.

Why this stack: h11 is a strict, well-kept HTTP/1.1 state machine (chunked bodies, pipelining,
conflicting Content-Length, header size caps) with no I/O of its own, so every byte it sees is
one we chose to read; asyncio makes a whole-request deadline (``asyncio.timeout_at``) and a
connection cap exact and costs nothing per idle connection, which a thread-per-connection
``http.server`` cannot enforce without a reaper thread.

The server runs on its own daemon thread with its own event loop; the handler runs on that
loop and may ``await server.loop.run_in_executor(...)`` for blocking work.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import threading
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from email.utils import formatdate
from http import HTTPStatus

import h11
import orjson

from palyrad.runtime.clock import SYSTEM_CLOCK
from palyrad.seams import Clock

log = logging.getLogger("palyrad.webhooks")

_CHUNK = 64 * 1024  # one read; also the most h11 holds beyond an incomplete head
_LINGER_S = 1.0  # after a closing answer: how long unread input is drained before close
_LINGER_BYTES = 1024 * 1024  # ... and how much of it at most
_STOP_GRACE_S = 1.0  # stop(): how long aborted connections get to unwind


@dataclass(frozen=True, slots=True)
class Limits:
    """What one client may cost us; every limit ends in a close, never in waiting forever."""

    max_connections: int = 64  # more are closed at once (abort right after accept, nothing sent)
    request_deadline_s: float = 10.0  # head + body complete within this of first byte / accept
    idle_s: float = 5.0  # keep-alive: no next request byte for this long -> closed quietly
    max_header_bytes: int = 16 * 1024  # h11 max_incomplete_event_size (and checked when complete)
    write_timeout_s: float = 10.0  # a client that does not read our answer is dropped
    handler_timeout_s: float = 30.0  # the handler call as a whole (its own waits included) -> 503


@dataclass(frozen=True, slots=True)
class RequestHead:
    """A parsed request line and header section, as the client sent them (nothing decoded)."""

    method: str  # e.g. "POST" (decoded ASCII, as sent)
    path: str  # the target's path, without the query string, NOT percent-decoded
    headers: Mapping[str, str]  # lower-case names (latin-1); repeated headers joined by ", "
    peer: str  # the client's IP address
    content_length: int | None  # None for chunked


@dataclass(frozen=True, slots=True)
class Response:
    """An answer: always a JSON object body, so a client never has to guess the format."""

    status: int
    body: Mapping[str, object]  # serialized with orjson; Content-Type: application/json
    headers: tuple[tuple[str, str], ...] = ()


class BodyTooLarge(Exception):
    """The body is (or will be) longer than the handler's limit; the server answers 413."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"body larger than {limit} bytes")
        self.limit = limit


class _DeadlinePassed(Exception):
    """The request did not arrive completely in time (answered 408)."""


class _Malformed(Exception):
    """h11 refused the input (answered 400, or 431 for an oversized head)."""

    def __init__(self, reason: str, status: int) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status


class _Drop(Exception):
    """The connection is beyond answering (gone, or not reading): close it, send nothing."""


Handler = Callable[[RequestHead, "Body"], Awaitable[Response]]

# Headers the transport owns: a handler cannot override the framing or what we reveal.
_OWN_HEADERS = frozenset(
    {"content-length", "transfer-encoding", "connection", "date", "server", "content-type"}
)


def _short_reason(exc: h11.RemoteProtocolError) -> str:
    """h11's reason without the quoted input some messages carry (never echo request bytes)."""
    text = str(exc).split(":", 1)[0].split("{", 1)[0]
    text = "".join(c for c in text if " " <= c <= "~").strip()
    return text[:80] or "invalid HTTP/1.1"


class _Wire:
    """One connection's reader, writer and h11 state, with the reads bounded by a deadline."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, limits: Limits
    ) -> None:
        self.reader = reader
        self.writer = writer
        self.limits = limits
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=limits.max_header_bytes)
        self.deadline = 0.0  # loop time by which the current request must be complete
        self.fed = 0  # bytes given to h11 in this cycle (to measure the head)
        self.eof = False

    async def fill(self) -> None:
        data = await self.reader.read(_CHUNK)
        if not data:
            self.eof = True
        self.fed += len(data)
        self.h11.receive_data(data)

    async def next_event(self) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        """The next h11 event of the current request, reading under the request deadline."""
        try:
            async with asyncio.timeout_at(self.deadline):
                while True:
                    try:
                        event = self.h11.next_event()
                    except h11.RemoteProtocolError as exc:
                        raise _Malformed(_short_reason(exc), exc.error_status_hint) from None
                    if event is h11.NEED_DATA:
                        await self.fill()
                    else:
                        return event
        except TimeoutError:
            raise _DeadlinePassed() from None
        except (ConnectionError, ssl.SSLError, OSError):
            raise _Drop() from None

    async def send(self, *events: h11.Event) -> None:
        """Write events; a client that does not take them within write_timeout_s is dropped."""
        for event in events:
            data = self.h11.send(event)
            if data:
                self.writer.write(data)
        try:
            async with asyncio.timeout(self.limits.write_timeout_s):
                await self.writer.drain()
        except TimeoutError:
            self.writer.transport.abort()
            raise _Drop() from None
        except (ConnectionError, OSError):
            raise _Drop() from None


class Body:
    """A request's body, read only when (and as far as) the handler asks for it.

    Reading stays under the request's deadline; a failure is also remembered, so a handler
    that swallows the exception still gets the right refusal sent for it by the server.
    """

    def __init__(self, wire: _Wire, head: RequestHead) -> None:
        self._wire = wire
        self._head = head
        self._data: bytes | None = None
        self.failure: Exception | None = None

    @property
    def consumed(self) -> bool:
        return self._data is not None

    async def read(self, limit: int) -> bytes:
        """The whole body. Sends `100 Continue` first when the client asked for it (Expect:
        100-continue), but not when the declared length already exceeds `limit`.
        Raises BodyTooLarge as soon as more than `limit` bytes are known to come
        (Content-Length above limit, or the chunks so far exceed it). Deadline expiry and
        disconnect propagate as exceptions the server handles."""
        if self._data is not None:
            return self._data
        if self.failure is not None:
            raise self.failure
        try:
            self._data = await self._read(limit)
        except Exception as exc:
            self.failure = exc
            raise
        return self._data

    async def _read(self, limit: int) -> bytes:
        wire = self._wire
        length = self._head.content_length
        if length is not None and length > limit:
            raise BodyTooLarge(limit)
        if wire.h11.they_are_waiting_for_100_continue:
            await wire.send(h11.InformationalResponse(status_code=100, headers=[]))
        parts: list[bytes] = []
        size = 0
        while True:
            event = await wire.next_event()
            if isinstance(event, h11.Data):
                size += len(event.data)
                if size > limit:
                    raise BodyTooLarge(limit)
                parts.append(bytes(event.data))
            elif isinstance(event, h11.EndOfMessage):
                return b"".join(parts)
            else:  # h11 yields nothing else inside a body; a guard, not a path
                raise _Drop()


def _json(status: int, body: Mapping[str, object]) -> Response:
    return Response(status, body)


class HttpServer:
    """Serves `handler` on a daemon thread with its own event loop (start / stop)."""

    def __init__(
        self,
        handler: Handler,
        limits: Limits = Limits(),  # frozen: one shared default is safe
        ssl_context: ssl.SSLContext | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._handler = handler
        self._clock = clock  # for the Date header only
        self._limits = limits
        self._ssl = ssl_context
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._conns: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self._lock = threading.Lock()
        self._stopped = False

    # -- the thread-facing surface ---------------------------------------------------------

    @property
    def open_connections(self) -> int:
        return len(self._conns)

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The server's loop: for the handler's run_in_executor and call_soon_threadsafe."""
        if self._loop is None:
            raise RuntimeError("the server is not started")
        return self._loop

    def start(self, host: str, port: int) -> tuple[str, int]:
        """Bind (host may be an IPv4/IPv6 literal or a name; port 0 = any free port)
        synchronously, raising OSError when it cannot bind, then serve on a new daemon
        thread with its own event loop. Returns the bound (host, port)."""
        with self._lock:
            if self._thread is not None or self._stopped:
                raise RuntimeError("an HttpServer starts once")
            sock = _bind(host, port)
            bound = sock.getsockname()
            loop = asyncio.new_event_loop()
            ready = threading.Event()
            failure: list[BaseException] = []

            def run() -> None:
                asyncio.set_event_loop(loop)
                try:
                    self._server = loop.run_until_complete(
                        asyncio.start_server(self._accept, sock=sock, limit=_CHUNK)
                    )
                except BaseException as exc:
                    failure.append(exc)
                    sock.close()
                    loop.close()
                    ready.set()
                    return
                ready.set()
                try:
                    loop.run_forever()
                finally:
                    _close_loop(loop)

            thread = threading.Thread(target=run, name="webhook-http", daemon=True)
            self._loop = loop
            self._thread = thread
            thread.start()
            ready.wait()
            if failure:
                self._loop = None
                raise failure[0]
            return str(bound[0]), int(bound[1])

    def stop(self, timeout_s: float = 3.0) -> None:
        """Close the listener and every connection, stop the loop, join the thread.
        Idempotent; harmless when start() failed or was never called."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        with contextlib.suppress(RuntimeError):  # the loop is already closed
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
        thread.join(timeout_s)
        if thread.is_alive():
            log.warning("the webhook HTTP server did not stop within %.1f s", timeout_s)

    async def _shutdown(self) -> None:
        if self._server is not None:
            self._server.close()
        for task, writer in list(self._conns.items()):
            writer.transport.abort()
            task.cancel()
        if self._conns:
            await asyncio.wait(list(self._conns), timeout=_STOP_GRACE_S)
        asyncio.get_running_loop().stop()

    # -- connections ----------------------------------------------------------------------

    def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Right after accept (TLS not yet begun): over the cap, abort at once, nothing sent;
        else the connection holds a slot until its task ends. A plain callback, so the count
        is exact and asyncio's streams never see (and log) a cancelled connection task."""
        if len(self._conns) >= self._limits.max_connections:
            log.debug("connection refused: %d open", len(self._conns))
            writer.transport.abort()
            return
        task = asyncio.get_running_loop().create_task(self._connection(reader, writer))
        self._conns[task] = writer

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One connection, from accept to close."""
        limits = self._limits
        task = asyncio.current_task()
        assert task is not None
        wire = _Wire(reader, writer, limits)
        wire.deadline = asyncio.get_running_loop().time() + limits.request_deadline_s
        graceful = False
        try:
            if self._ssl is not None:
                async with asyncio.timeout_at(wire.deadline):
                    await writer.start_tls(
                        self._ssl, ssl_handshake_timeout=limits.request_deadline_s
                    )
            peer = writer.get_extra_info("peername")
            graceful = await self._serve(wire, str(peer[0]) if peer else "")
        except (_Drop, TimeoutError, ConnectionError, ssl.SSLError, OSError):
            pass  # the client is gone or will not take part: nothing to tell it
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("webhook connection failed")
        finally:
            try:
                await self._close(wire, graceful)
            finally:
                self._conns.pop(task, None)

    async def _serve(self, wire: _Wire, peer: str) -> bool:
        """Requests in order until the connection must end; True when we end it politely."""
        first = True
        while True:
            if not first and not await self._await_next_request(wire):
                return False
            first = False
            try:
                event = await wire.next_event()
            except _DeadlinePassed:
                return await self._refuse(wire, 408, self._late())
            except _Malformed as exc:
                return await self._refuse_malformed(wire, exc)
            if isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return False
            if not isinstance(event, h11.Request):  # nothing else starts a request
                return False
            head_size = wire.fed - len(wire.h11.trailing_data[0])
            if head_size > self._limits.max_header_bytes:  # arrived whole, still too large
                return await self._refuse(wire, 431, {"error": "request headers too large"})
            if not await self._exchange(wire, _head(event, peer)):
                return True
            if wire.h11.our_state is not h11.DONE or wire.h11.their_state is not h11.DONE:
                return True
            wire.h11.start_next_cycle()

    async def _await_next_request(self, wire: _Wire) -> bool:
        """Keep-alive: wait up to idle_s for the next request's first byte (False: close)."""
        wire.fed = len(wire.h11.trailing_data[0])
        loop = asyncio.get_running_loop()
        if wire.fed == 0:
            try:
                async with asyncio.timeout(self._limits.idle_s):
                    await wire.fill()
            except (TimeoutError, ConnectionError, ssl.SSLError, OSError):
                return False
            if wire.eof:
                return False
        wire.deadline = loop.time() + self._limits.request_deadline_s
        return True

    async def _exchange(self, wire: _Wire, head: RequestHead) -> bool:
        """Run the handler and answer; True when the connection may carry another request."""
        body = Body(wire, head)
        response = _json(500, {"error": "internal error"})
        try:
            async with asyncio.timeout(self._limits.handler_timeout_s) as cap:
                response = await self._handler(head, body)
        except BodyTooLarge as exc:
            response = _json(413, {"error": f"body larger than {exc.limit} bytes"})
        except (_DeadlinePassed, _Malformed, _Drop) as exc:
            body.failure = exc
        except TimeoutError:
            if cap.expired():
                log.warning(
                    "webhook handler took longer than %.0f s", self._limits.handler_timeout_s
                )
                response = _json(503, {"error": "the daemon is busy; retry"})
            else:
                log.exception("webhook handler failed")
                response = _json(500, {"error": "internal error"})
        except Exception:
            log.exception("webhook handler failed")
            response = _json(500, {"error": "internal error"})
        failure = body.failure
        if isinstance(failure, _DeadlinePassed):
            await self._refuse(wire, 408, self._late())
            return False
        if isinstance(failure, _Malformed):
            await self._refuse_malformed(wire, failure)
            return False
        if isinstance(failure, _Drop):
            raise failure
        keep = response.status < 500 and response.status != 413
        if "transfer-encoding" in head.headers and "content-length" in head.headers:
            # RFC 9112 §6.3: a request framed both ways may be a smuggling attempt behind a
            # proxy; answer it (Transfer-Encoding wins) and close the connection.
            keep = False
        if keep and not body.consumed:
            keep = self._finish_empty_body(wire, head)
        await self._respond(wire, response, head, close=not keep)
        return keep

    def _finish_empty_body(self, wire: _Wire, head: RequestHead) -> bool:
        """An unread body of length 0 ends at once; any other cannot be skipped to resync."""
        if head.content_length != 0:
            return False
        try:
            return isinstance(wire.h11.next_event(), h11.EndOfMessage)
        except h11.RemoteProtocolError:
            return False

    def _late(self) -> dict[str, object]:
        seconds = f"{self._limits.request_deadline_s:g}"
        return {"error": f"the request did not arrive completely within {seconds} s"}

    async def _refuse_malformed(self, wire: _Wire, exc: _Malformed) -> bool:
        if exc.status == 431:
            return await self._refuse(wire, 431, {"error": "request headers too large"})
        return await self._refuse(wire, 400, {"error": f"malformed request: {exc.reason}"})

    async def _refuse(self, wire: _Wire, status: int, body: Mapping[str, object]) -> bool:
        """Best effort: answer when h11 still lets us, then the connection closes."""
        if wire.h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return False
        try:
            await self._respond(wire, _json(status, body), None, close=True)
        except (_Drop, h11.LocalProtocolError):
            return False
        return True

    async def _respond(
        self, wire: _Wire, response: Response, head: RequestHead | None, *, close: bool
    ) -> None:
        status = response.status
        if not 200 <= status <= 599:
            log.error("webhook handler answered status %d; sending 500", status)
            status, response = 500, _json(500, {"error": "internal error"})
        payload = orjson.dumps(dict(response.body))
        headers: list[tuple[str, str]] = [
            ("content-type", "application/json"),
            ("content-length", str(len(payload))),
            ("date", formatdate(self._clock.now_ms() / 1000, usegmt=True)),
            ("server", "palyrad"),
        ]
        headers += [(k, v) for k, v in response.headers if k.lower() not in _OWN_HEADERS]
        if close:
            headers.append(("connection", "close"))
        try:
            reason = HTTPStatus(status).phrase.encode("ascii")
        except ValueError:
            reason = b""
        events: list[h11.Event] = [h11.Response(status_code=status, headers=headers, reason=reason)]
        if not (status in (204, 304) or (head is not None and head.method == "HEAD")):
            events.append(h11.Data(data=payload))
        events.append(h11.EndOfMessage())
        await wire.send(*events)

    async def _close(self, wire: _Wire, graceful: bool) -> None:
        """Close without losing our last answer: half-close, drain briefly, then close; a
        client that takes neither is aborted after write_timeout_s."""
        writer = wire.writer
        transport = writer.transport
        if transport.is_closing():
            transport.abort()
            return
        if graceful and not wire.eof and self._ssl is None and writer.can_write_eof():
            with contextlib.suppress(TimeoutError, ConnectionError, OSError):
                writer.write_eof()
                async with asyncio.timeout(_LINGER_S):
                    drained = 0
                    while drained < _LINGER_BYTES:
                        data = await wire.reader.read(_CHUNK)
                        if not data:
                            break
                        drained += len(data)
        writer.close()
        try:
            async with asyncio.timeout(self._limits.write_timeout_s):
                await writer.wait_closed()
        except (TimeoutError, ConnectionError, ssl.SSLError, OSError):
            transport.abort()


def _head(event: h11.Request, peer: str) -> RequestHead:
    joined: dict[str, str] = {}
    for name, value in event.headers:
        key = name.decode("latin-1")
        text = value.decode("latin-1")
        joined[key] = f"{joined[key]}, {text}" if key in joined else text
    if "transfer-encoding" in joined:
        length: int | None = None
    else:
        length = int(joined.get("content-length", "0"))
    target = event.target.decode("latin-1")
    path = target.split("?", 1)[0]
    if path[:7].lower() == "http://" or path[:8].lower() == "https://":
        # The absolute form (RFC 9112 §3.2.2), which a server must accept: its path part.
        rest = path.split("://", 1)[1]
        path = "/" + rest.split("/", 1)[1] if "/" in rest else "/"
    return RequestHead(
        method=event.method.decode("latin-1"),
        path=path,
        headers=joined,
        peer=peer,
        content_length=length,
    )


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on the first address of `host` that binds: SO_REUSEADDR (restarts
    need not wait out TIME_WAIT) but never SO_REUSEPORT (a second daemon must fail, not split
    the traffic)."""
    infos = socket.getaddrinfo(host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    last: OSError = OSError(f"no address to bind for {host!r}")
    for family, type_, proto, _name, addr in infos:
        sock = socket.socket(family, type_, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(addr)
            sock.listen(128)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            last = exc
            continue
        return sock
    raise last


def _close_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what is left on the stopped loop, let it unwind, close the loop."""
    try:
        pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
        for task in pending:
            task.cancel()
        if pending:
            loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
        loop.run_until_complete(loop.shutdown_asyncgens())
    finally:
        loop.close()
