"""The webhook listener's HTTP transport against real sockets and hostile raw clients.

Short limits keep the suite fast; nothing waits on a fixed sleep: every wait is a socket
read with a timeout, or a poll of a condition with a bound.
"""

from __future__ import annotations

import datetime
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from palyrad.services.node_rpc.webhooks.http_server import (
    Body,
    HttpServer,
    Limits,
    RequestHead,
    Response,
)

BODY_LIMIT = 64 * 1024
FAST = Limits(request_deadline_s=0.5, idle_s=0.3, max_connections=4, write_timeout_s=1.0)


async def echo(head: RequestHead, body: Body) -> Response:
    if head.path == "/boom":
        raise RuntimeError("handler bug")
    if head.path == "/nobody":
        return Response(404, {"error": "no such hook"})
    data = await body.read(BODY_LIMIT)
    return Response(200, {"len": len(data), "path": head.path, "method": head.method})


@pytest.fixture
def server() -> Iterator[tuple[HttpServer, int]]:
    srv = HttpServer(echo, FAST)
    _host, port = srv.start("127.0.0.1", 0)
    try:
        yield srv, port
    finally:
        srv.stop()


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    return sock


def read_response(sock: socket.socket, buf: bytearray) -> tuple[int, dict[str, str], bytes]:
    """One response from `buf` + the socket (leftover stays in `buf` for pipelining)."""
    while b"\r\n\r\n" not in buf:
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError(bytes(buf))
        buf += chunk
    head, _, rest = bytes(buf).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    while len(rest) < length:
        chunk = sock.recv(65536)
        if not chunk:
            raise EOFError(rest)
        rest += chunk
    buf[:] = rest[length:]
    return status, headers, rest[:length]


def request(sock: socket.socket, raw: bytes) -> tuple[int, dict[str, str], dict[str, object]]:
    sock.sendall(raw)
    status, headers, body = read_response(sock, bytearray())
    return status, headers, orjson.loads(body)


def closed(sock: socket.socket) -> bool:
    """The server closed (or reset) the connection; waits up to the socket's timeout."""
    try:
        while True:
            data = sock.recv(65536)
            if not data:
                return True
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


def post(path: str, body: bytes, extra: str = "") -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
    return head.encode() + body


def wait_for(cond: Callable[[], bool], timeout: float = 3.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(0.01)
    return cond()


@pytest.mark.timeout(10)
def test_simple_post(server: tuple[HttpServer, int]) -> None:
    _srv, port = server
    with connect(port) as s:
        status, headers, body = request(s, post("/hooks/r1?x=1", b"hello"))
    assert status == 200
    assert body == {"len": 5, "path": "/hooks/r1", "method": "POST"}
    assert headers["content-type"] == "application/json"
    assert headers["server"] == "palyrad"
    assert "date" in headers
    assert headers["content-length"] == str(len(orjson.dumps(body)))


@pytest.mark.timeout(10)
def test_chunked_body(server: tuple[HttpServer, int]) -> None:
    _srv, port = server
    raw = (
        b"POST /hooks/c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )
    with connect(port) as s:
        status, _h, body = request(s, raw)
    assert (status, body["len"]) == (200, 11)


@pytest.mark.timeout(10)
def test_pipelined_requests_answered_in_order(server: tuple[HttpServer, int]) -> None:
    _srv, port = server
    with connect(port) as s:
        s.sendall(post("/hooks/a", b"1") + post("/hooks/b", b"22"))
        buf = bytearray()
        first = read_response(s, buf)
        second = read_response(s, buf)
    assert orjson.loads(first[2]) == {"len": 1, "path": "/hooks/a", "method": "POST"}
    assert orjson.loads(second[2]) == {"len": 2, "path": "/hooks/b", "method": "POST"}
    assert "connection" not in first[1]


@pytest.mark.timeout(10)
def test_expect_100_continue(server: tuple[HttpServer, int]) -> None:
    _srv, port = server
    with connect(port) as s:
        s.sendall(
            b"POST /hooks/e HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        buf = bytearray()
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(4096)
            assert chunk
            buf += chunk
        assert bytes(buf).startswith(b"HTTP/1.1 100 ")
        buf[:] = bytes(buf).partition(b"\r\n\r\n")[2]
        s.sendall(b"abc")
        status, _h, body = read_response(s, buf)
    assert (status, orjson.loads(body)["len"]) == (200, 3)


@pytest.mark.timeout(10)
def test_content_length_over_limit_413_without_body(server: tuple[HttpServer, int]) -> None:
    _srv, port = server
    with connect(port) as s:
        s.sendall(
            f"POST /hooks/big HTTP/1.1\r\nHost: x\r\nContent-Length: {BODY_LIMIT + 1}\r\n"
            "Expect: 100-continue\r\n\r\n".encode()
        )
        status, headers, body = read_response(s, bytearray())
        assert status == 413  # and no 100 Continue before it
        assert orjson.loads(body) == {"error": f"body larger than {BODY_LIMIT} bytes"}
        assert headers["connection"] == "close"
        assert closed(s)


@pytest.mark.timeout(10)
def test_chunked_over_limit_413(server: tuple[HttpServer, int]) -> None:
    _srv, port = server
    chunk = b"a" * 4096
    chunks = b"".join(b"1000\r\n" + chunk + b"\r\n" for _ in range(BODY_LIMIT // 4096 + 1))
    with connect(port) as s:
        s.sendall(b"POST /hooks/c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
        s.sendall(chunks)
        status, headers, _b = read_response(s, bytearray())
        assert (status, headers["connection"]) == (413, "close")
        assert closed(s)


@pytest.mark.timeout(10)
def test_unread_body_closes_connection(server: tuple[HttpServer, int]) -> None:
    _srv, port = server
    with connect(port) as s:
        s.sendall(post("/nobody", b"some body") + post("/hooks/next", b""))
        status, headers, body = read_response(s, bytearray())
        assert (status, orjson.loads(body)) == (404, {"error": "no such hook"})
        assert headers["connection"] == "close"
        assert closed(s)


@pytest.mark.timeout(10)
def test_no_body_keeps_alive_without_reading(server: tuple[HttpServer, int]) -> None:
    _srv, port = server
    with connect(port) as s:
        status, headers, _b = request(s, b"GET /nobody HTTP/1.1\r\nHost: x\r\n\r\n")
        assert status == 404 and "connection" not in headers
        status, _h, _b = request(s, post("/hooks/again", b"x"))
        assert status == 200


@pytest.mark.timeout(10)
@pytest.mark.parametrize(
    "raw",
    [
        b"GARBAGE\r\n\r\n",
        b"POST /hooks/a\x00b HTTP/1.1\r\nHost: x\r\n\r\n",
        b"POST /hooks/a HTTP/1.1\r\nHost: x\r\nX-Secret: a\x00b\r\n\r\n",
        b"POST /hooks/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n",
        b"POST /hooks/a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\nabcd",
        b"POST /hooks/a HTTP/1.1\r\nContent-Length: 1\r\n\r\nx",
    ],
    ids=[
        "request-line",
        "nul-target",
        "nul-header",
        "bad-utf8",
        "binary",
        "two-lengths",
        "no-host",
    ],
)
def test_malformed_400(server: tuple[HttpServer, int], raw: bytes) -> None:
    _srv, port = server
    with connect(port) as s:
        status, headers, body = request(s, raw)
        assert status == 400
        error = body["error"]
        assert isinstance(error, str) and error.startswith("malformed request: ")
        assert "X-Secret" not in error and "\\x" not in error and "'" not in error
        assert headers["connection"] == "close"
        assert closed(s)


@pytest.mark.timeout(10)
@pytest.mark.parametrize("pieces", [1, 40], ids=["one-send", "trickled"])
def test_header_section_too_large_431(server: tuple[HttpServer, int], pieces: int) -> None:
    _srv, port = server
    raw = b"POST /hooks/a HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"p" * 20 * 1024 + b"\r\n\r\n"
    size = len(raw) // pieces + 1
    with connect(port) as s:
        try:
            for i in range(0, len(raw), size):
                s.sendall(raw[i : i + size])
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server may answer and close before all of it is sent
        status, _h, body = read_response(s, bytearray())
        assert (status, orjson.loads(body)) == (431, {"error": "request headers too large"})
        assert closed(s)


@pytest.mark.timeout(10)
def test_slowloris_408_while_others_are_served(server: tuple[HttpServer, int]) -> None:
    _srv, port = server
    raw = post("/hooks/slow", b"x" * 50)
    result: dict[str, object] = {}

    def slow_client() -> None:
        with connect(port) as s:
            start = time.monotonic()
            data = b""
            try:
                for byte in raw:
                    s.sendall(bytes([byte]))
                    s.settimeout(0.1)
                    try:
                        data = s.recv(65536)
                    except TimeoutError:
                        continue
                    break
                s.settimeout(5)
                while data and (chunk := s.recv(65536)):  # the rest, until the close
                    data += chunk
            except (BrokenPipeError, ConnectionResetError):
                pass
            result["answered_at"] = time.monotonic()
            result["answer"] = data
            result["elapsed"] = time.monotonic() - start

    thread = threading.Thread(target=slow_client)
    thread.start()
    served_at = []
    for _ in range(3):
        with connect(port) as s:
            status, _h, _b = request(s, post("/hooks/fast", b"ok"))
        assert status == 200
        served_at.append(time.monotonic())
    thread.join(5)
    # Every fast client was served while the slow one still held its connection.
    assert max(served_at) < float(result["answered_at"])  # type: ignore[arg-type]
    answer = result["answer"]
    assert isinstance(answer, bytes) and answer.startswith(b"HTTP/1.1 408 ")
    assert b"did not arrive completely within 0.5 s" in answer
    elapsed = result["elapsed"]
    assert isinstance(elapsed, float) and 0.4 < elapsed < 5.0


@pytest.mark.timeout(10)
def test_partial_body_408(server: tuple[HttpServer, int]) -> None:
    _srv, port = server
    with connect(port) as s:
        s.sendall(b"POST /hooks/p HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nonly-some")
        status, headers, body = read_response(s, bytearray())
        assert status == 408
        assert orjson.loads(body) == {"error": "the request did not arrive completely within 0.5 s"}
        assert headers["connection"] == "close"
        assert closed(s)


@pytest.mark.timeout(10)
def test_connection_cap(server: tuple[HttpServer, int]) -> None:
    srv, port = server
    idle = [connect(port) for _ in range(4)]
    try:
        assert wait_for(lambda: srv.open_connections == 4)
        with connect(port) as extra:
            assert closed(extra)  # at once: well before the 0.5 s request deadline
    finally:
        for s in idle:
            s.close()
    assert wait_for(lambda: srv.open_connections == 0)
    with connect(port) as s:
        status, _h, _b = request(s, post("/hooks/after", b""))
    assert status == 200


@pytest.mark.timeout(10)
def test_over_cap_is_closed_promptly(server: tuple[HttpServer, int]) -> None:
    srv, port = server
    idle = [connect(port) for _ in range(4)]
    try:
        assert wait_for(lambda: srv.open_connections == 4)
        t0 = time.monotonic()
        with connect(port) as extra:
            extra.settimeout(0.45)  # shorter than the 0.5 s deadline: only the cap closes it
            assert closed(extra)
        assert time.monotonic() - t0 < 0.45
    finally:
        for s in idle:
            s.close()


@pytest.mark.timeout(10)
def test_keep_alive_idle_close(server: tuple[HttpServer, int]) -> None:
    srv, port = server
    with connect(port) as s:
        status, _h, _b = request(s, post("/hooks/k", b"1"))
        assert status == 200
        t0 = time.monotonic()
        assert s.recv(1) == b""  # quietly: no 408 for a connection between requests
        assert 0.2 < time.monotonic() - t0 < 2.0
    assert wait_for(lambda: srv.open_connections == 0)


@pytest.mark.timeout(10)
def test_handler_exception_500_then_served(
    server: tuple[HttpServer, int], caplog: pytest.LogCaptureFixture
) -> None:
    _srv, port = server
    with caplog.at_level("ERROR", logger="palyrad.webhooks"), connect(port) as s:
        status, headers, body = request(s, post("/boom", b""))
        assert (status, body) == (500, {"error": "internal error"})
        assert headers["connection"] == "close"
        assert closed(s)
    assert any(r.exc_info and "handler bug" in str(r.exc_info[1]) for r in caplog.records)
    with connect(port) as s:
        status, _h, _b = request(s, post("/hooks/ok", b""))
    assert status == 200


@pytest.mark.timeout(10)
def test_slow_handler_503() -> None:
    async def slow(head: RequestHead, body: Body) -> Response:
        import asyncio

        await asyncio.sleep(5)
        return Response(200, {})

    srv = HttpServer(slow, Limits(handler_timeout_s=0.2))
    _h, port = srv.start("127.0.0.1", 0)
    try:
        with connect(port) as s:
            status, _hd, body = request(s, post("/hooks/slow", b""))
        assert (status, body) == (503, {"error": "the daemon is busy; retry"})
    finally:
        srv.stop()


def _self_signed(tmp: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = tmp / "cert.pem", tmp / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


@pytest.mark.timeout(15)
def test_tls(tmp_path: Path) -> None:
    cert, key = _self_signed(tmp_path)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    srv = HttpServer(echo, FAST, ssl_context=server_ctx)
    _h, port = srv.start("127.0.0.1", 0)
    try:
        client_ctx = ssl.create_default_context(cafile=str(cert))
        with (
            connect(port) as raw,
            client_ctx.wrap_socket(raw, server_hostname="localhost") as s,
        ):
            status, _hd, body = request(s, post("/hooks/tls", b"secret"))
            assert (status, body) == (200, {"len": 6, "path": "/hooks/tls", "method": "POST"})
            status, _hd, body = request(s, post("/hooks/tls2", b""))  # keep-alive over TLS
            assert status == 200
        with connect(port) as silent:  # never says hello
            assert wait_for(lambda: srv.open_connections >= 1)
            t0 = time.monotonic()
            assert closed(silent)
            assert time.monotonic() - t0 < 2.0
        assert wait_for(lambda: srv.open_connections == 0)
    finally:
        srv.stop()


@pytest.mark.timeout(10)
def test_bind_conflict_and_idempotent_stop() -> None:
    first = HttpServer(echo, FAST)
    _h, port = first.start("127.0.0.1", 0)
    second = HttpServer(echo, FAST)
    try:
        with pytest.raises(OSError):
            second.start("127.0.0.1", port)
    finally:
        second.stop()
        second.stop()
        first.stop()
        first.stop()
    HttpServer(echo).stop()  # never started
    with pytest.raises(OSError):  # the port is free again after stop
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


@pytest.mark.timeout(10)
def test_stop_closes_open_connections() -> None:
    srv = HttpServer(echo, Limits(request_deadline_s=30, idle_s=30))
    _h, port = srv.start("localhost", 0)
    with socket.create_connection(("localhost", port), timeout=5) as s:
        s.sendall(b"POST /hooks/a HTTP/1.1\r\n")
        assert wait_for(lambda: srv.open_connections == 1)
        t0 = time.monotonic()
        srv.stop()
        assert closed(s)
        assert time.monotonic() - t0 < 3.0
