"""What an adversarial review of the webhook listener (SPEC §4.5) broke, kept as tests
against a real daemon over real sockets (one component test where the daemon only showed
the symptom at shutdown): a timestamped signature replayed body-only, an accept writer
killed by a cancelled request, a request framed by both Transfer-Encoding and
Content-Length kept alive, an absolute-form target refused, and refusals flooding the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from palyrad.runtime.webhook_signatures import sign
from tests.daemon_harness import Daemon, routine, shell
from tests.test_webhooks_daemon import (
    NODE_ANY_PORTS,
    SECRET,
    SECRET_VAR,
    accepted,
    daemon_env,
    parse_raw,
    post,
    read_to_close,
    webhook_port,
)

pytestmark = pytest.mark.timeout(90)


def _hook(rid: str) -> dict[str, object]:
    return routine(
        rid, {"kind": "webhook", "secret_env": SECRET_VAR}, shell("true"), concurrency="allow"
    )


@pytest.fixture
def rv(tmp_path: Path) -> Iterator[tuple[Daemon, int]]:
    d = Daemon(tmp_path / "home")
    d.home.config.write_text(NODE_ANY_PORTS + "[webhooks]\nport = 0\nrate_per_minute = 100000\n")
    d.write_definitions([_hook("rv-a"), _hook("rv-b")])
    with daemon_env():
        try:
            d.start()
            yield d, webhook_port(d)
        finally:
            d.close()


def _raw_request(target: str, body: bytes, headers: dict[str, str]) -> bytes:
    head = f"POST {target} HTTP/1.1\r\nHost: x\r\n" + "".join(
        f"{k}: {v}\r\n" for k, v in headers.items()
    )
    return head.encode("latin-1") + b"\r\n" + body


# --- 1. replay protection bypass: a timestamped signature replayed without its timestamp ---


def test_timestamped_signature_cannot_be_replayed_as_a_body_only_signature(
    rv: tuple[Daemon, int],
) -> None:
    d, port = rv
    body = b'{"deploy": "prod"}'
    ts = int(time.time())
    captured = sign(SECRET, body, ts)  # what an eavesdropper / a log / a proxy saw
    accepted(post(port, "rv-a", body, ts=ts))
    before = len(d.runs("rv-a"))
    # The attacker moves the timestamp into the body and drops the timestamp header.
    forged = f"{ts}.".encode() + body
    answers = [
        post(port, "rv-a", forged, secret=None, headers={"X-Palyra-Signature": captured})
        for _ in range(3)
    ]
    assert [a.status for a in answers] == [401, 401, 401], answers
    assert len(d.runs("rv-a")) == before


# --- 2. a cancelled request kills the accept writer for good -------------------------------


def test_accept_writer_survives_a_cancelled_request(tmp_path: Path) -> None:
    from palyrad.journal import Journal
    from palyrad.runtime.clock import SYSTEM_CLOCK
    from palyrad.services.node_rpc.webhooks.accept import Accept, AcceptWriter, Outcome

    path = tmp_path / "journal.sqlite3"
    Journal(path).close()
    # A poke that takes a moment: the batch is in flight when the request is cancelled (as
    # when the handler's 30 s cap or the server's stop cancels the awaiting task).
    writer = AcceptWriter(
        lambda: Journal(path), SYSTEM_CLOCK, lambda: 60, lambda: time.sleep(0.3), 0.5
    )
    writer.start()
    try:

        async def cancelled_request() -> None:
            fut = asyncio.wrap_future(writer.submit(Accept("r", None, 0, "{}")))
            await asyncio.sleep(0.1)
            fut.cancel()
            await asyncio.sleep(0)

        asyncio.run(cancelled_request())
        time.sleep(1.5)
        later = writer.submit(Accept("r", None, 0, "{}"))
        assert later.result(timeout=5).outcome is Outcome.ACCEPTED
    finally:
        writer.stop()


def test_stop_under_load_leaves_no_traceback(rv: tuple[Daemon, int]) -> None:
    d, port = rv
    stop = threading.Event()

    def client(i: int) -> None:
        n = 0
        while not stop.is_set():
            n += 1
            body = b'{"i": %d, "n": %d}' % (i, n)
            data = _raw_request(
                "/hooks/rv-b",
                body,
                {
                    "Content-Length": str(len(body)),
                    "X-Palyra-Signature": sign(SECRET, body),
                    "Connection": "close",
                },
            )
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                    s.sendall(data)
                    read_to_close(s)
            except OSError:
                time.sleep(0.05)

    threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(16)]
    for t in threads:
        t.start()
    try:
        time.sleep(2.0)
        started = time.monotonic()
        d.stop()
        took = time.monotonic() - started
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    assert took < 15, took
    stderr = (d.home.run_dir / "palyrad.stderr").read_text(errors="replace")
    log = d.home.daemon_log.read_text(errors="replace")
    assert "Traceback" not in stderr, stderr[-3000:]
    assert "Traceback" not in log


# --- 3. HTTP framing --------------------------------------------------------------------------


def test_transfer_encoding_with_content_length_closes_the_connection(
    rv: tuple[Daemon, int],
) -> None:
    _, port = rv
    body = b"{}"
    data = _raw_request(
        "/hooks/rv-a",
        b"2\r\n{}\r\n0\r\n\r\n",
        {
            "Transfer-Encoding": "chunked",
            "Content-Length": "3",
            "X-Palyra-Signature": sign(SECRET, body),
        },
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        started = time.monotonic()
        raw = read_to_close(s)
        closed_after = time.monotonic() - started
    a = parse_raw(raw)
    assert a.status in (202, 400), a
    assert a.headers.get("connection", "").lower() == "close", a.headers
    assert closed_after < 2.0, closed_after


def test_absolute_form_target_is_served(rv: tuple[Daemon, int]) -> None:
    _, port = rv
    body = b'{"abs": 1}'
    data = _raw_request(
        f"http://127.0.0.1:{port}/hooks/rv-a",
        body,
        {
            "Content-Length": str(len(body)),
            "X-Palyra-Signature": sign(SECRET, body),
            "Connection": "close",
        },
    )
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(data)
        a = parse_raw(read_to_close(s))
    accepted(a)


# --- 4. unauthenticated log flooding ----------------------------------------------------------


def test_unauthenticated_requests_do_not_grow_the_log_per_request(
    rv: tuple[Daemon, int],
) -> None:
    d, port = rv
    log = d.home.daemon_log
    before = log.read_text(errors="replace").count("webhook refused")
    body = b"x"
    data = _raw_request(
        "/hooks/rv-a",
        body,
        {"Content-Length": "1", "X-Palyra-Signature": "sha256=" + "0" * 64},
    )
    n = 200
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        for _ in range(n):
            s.sendall(data)
            got = b""
            while b'"}' not in got:  # one JSON answer per request
                chunk = s.recv(4096)
                assert chunk, "closed"
                got += chunk
            assert got.startswith(b"HTTP/1.1 401"), got[:80]
    time.sleep(0.5)
    with contextlib.suppress(FileNotFoundError):
        after = log.read_text(errors="replace").count("webhook refused")
    assert after - before < n // 10, after - before
