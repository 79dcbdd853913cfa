"""The daemon's request socket: limits, bad input, and run-now through it end to end."""

from __future__ import annotations

import multiprocessing
import socket
import stat
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest

from palyrad.runtime import request_socket as control_socket
from palyrad.runtime.control_client import NotListening, request, socket_path
from palyrad.runtime.home import Home
from palyrad.runtime.request_socket import ControlServer
from palyrad.services.context import ServiceContext
from tests.daemon_harness import Daemon, palyra, routine, shell, wait_until


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[ControlServer, Path, list[dict[str, Any]]]]:
    """A ControlServer on a real ServiceContext selector, pumped by a thread."""
    home = Home.at(tmp_path / "home").ensure()
    parent, child = multiprocessing.Pipe()
    ctx = ServiceContext("test", home, child, "i1", 0)
    seen: list[dict[str, Any]] = []

    def handler(msg: dict[str, Any]) -> dict[str, Any]:
        seen.append(msg)
        return {"ok": True, "echo": msg}

    server = ControlServer(socket_path(home.run_dir), handler, ctx.register, ctx.unregister)
    stop = threading.Event()

    def pump() -> None:
        while not stop.is_set():
            ctx.wait(0.05)
            server.sweep()

    t = threading.Thread(target=pump, daemon=True)
    t.start()
    yield server, home.run_dir, seen
    stop.set()
    t.join(5)
    server.close()
    parent.close()
    child.close()


def _raw(run_dir: Path, data: bytes, timeout: float = 5.0) -> bytes:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(str(socket_path(run_dir)))
    try:
        s.sendall(data)
        out = b""
        while chunk := s.recv(65536):
            out += chunk
        return out
    finally:
        s.close()


def test_a_request_gets_its_reply_and_the_socket_is_private(
    served: tuple[ControlServer, Path, list[dict[str, Any]]],
) -> None:
    _server, run_dir, seen = served
    assert request(run_dir, {"op": "x", "n": 1}) == {"ok": True, "echo": {"op": "x", "n": 1}}
    assert seen == [{"op": "x", "n": 1}]
    assert stat.S_IMODE(socket_path(run_dir).stat().st_mode) == 0o600


def test_bad_input_gets_an_error_and_the_server_keeps_serving(
    served: tuple[ControlServer, Path, list[dict[str, Any]]],
) -> None:
    _server, run_dir, seen = served
    assert orjson.loads(_raw(run_dir, b"{not json\n"))["error"] == "bad_request"
    assert orjson.loads(_raw(run_dir, b"[1, 2]\n"))["error"] == "bad_request"
    big = b"x" * (control_socket.MAX_REQUEST_BYTES + 10)
    assert orjson.loads(_raw(run_dir, big))["error"] == "request_too_large"
    assert request(run_dir, {"op": "still-here"})["ok"] is True
    assert seen == [{"op": "still-here"}]


def test_silent_connections_are_dropped_and_the_cap_holds(
    served: tuple[ControlServer, Path, list[dict[str, Any]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    server, run_dir, _seen = served
    monkeypatch.setattr(control_socket, "REQUEST_TIMEOUT_S", 0.3)
    idle = []
    for _ in range(control_socket.MAX_CONNECTIONS):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(str(socket_path(run_dir)))
        idle.append(s)
    wait_until(lambda: len(server._conns) == control_socket.MAX_CONNECTIONS, timeout=5)
    # One more than the cap: accepted and closed at once, so the client falls back.
    with pytest.raises(NotListening):
        request(run_dir, {"op": "over"}, timeout_s=5)
    # Idle ones are dropped after REQUEST_TIMEOUT_S (the peer sees EOF) ...
    idle[0].settimeout(5)
    assert idle[0].recv(10) == b""
    wait_until(lambda: not server._conns, timeout=5)
    for s in idle:
        s.close()
    # ... and the server serves again.
    assert request(run_dir, {"op": "after"})["ok"] is True


def test_no_daemon_means_not_listening(tmp_path: Path) -> None:
    with pytest.raises(NotListening):
        request(tmp_path, {"op": "run_now"})
    # A stale socket file left by a killed daemon is "not listening" too.
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(str(socket_path(tmp_path)))
    stale.close()
    with pytest.raises(NotListening):
        request(tmp_path, {"op": "run_now"})


def test_run_now_reads_an_edit_saved_just_before_it(daemon: Daemon) -> None:
    daemon.write_definitions([routine("old", {"kind": "manual"}, shell("true"))])
    daemon.start()
    t0 = time.monotonic()
    daemon.write_definitions(
        [
            routine("old", {"kind": "manual"}, shell("true")),
            routine("new", {"kind": "manual"}, shell("true")),
        ]
    )
    out = palyra(daemon.root, "routines", "run-now", "new", "--json")
    assert orjson.loads(out.stdout)["status"] in ("pending", "running")
    assert time.monotonic() - t0 < 30
    wait_until(lambda: [r for r in daemon.runs("new") if r.status == "succeeded"])


def test_run_now_refusals_through_the_socket_record_nothing(daemon: Daemon) -> None:
    daemon.write_definitions(
        [
            routine("on", {"kind": "manual"}, shell("true")),
            routine("off", {"kind": "manual"}, shell("true"), enabled=False),
        ]
    )
    daemon.start()
    reply = request(daemon.home.run_dir, {"op": "run_now", "routine_id": "off", "payload": None})
    assert reply == {"ok": False, "error": "refused", "message": "routine 'off' is disabled"}
    reply = request(daemon.home.run_dir, {"op": "run_now", "routine_id": "on", "payload": "{x"})
    assert reply["ok"] is False and reply["error"] == "bad_payload"
    reply = request(daemon.home.run_dir, {"op": "nope"})
    assert reply == {"ok": False, "error": "unknown_op"}
    proc = palyra(daemon.root, "routines", "run-now", "off", check=False)
    assert proc.returncode == 1 and "routine 'off' is disabled" in proc.stderr
    assert daemon.runs("off") == [] and daemon.runs("on") == []
    ok = request(daemon.home.run_dir, {"op": "run_now", "routine_id": "on", "payload": '{"k":1}'})
    assert ok["ok"] is True
    (run,) = daemon.runs("on")
    assert run.run_id == ok["run_id"] and run.trigger_payload == '{"k":1}'


def test_deeply_nested_json_is_a_bad_request_not_a_crash(
    served: tuple[ControlServer, Path, list[dict[str, Any]]],
) -> None:
    _server, run_dir, _seen = served
    reply = _raw(run_dir, b"[" * 100_000 + b"\n")
    assert orjson.loads(reply)["error"] == "bad_request"
    assert request(run_dir, {"op": "still-here"})["ok"] is True


def test_a_home_too_deep_for_a_socket_address_still_gets_a_socket(tmp_path: Path) -> None:
    deep = tmp_path / ("d" * 60) / ("e" * 60)
    home = Home.at(deep).ensure()
    assert len(str(socket_path(home.run_dir))) > 108  # more than sun_path holds
    parent, child = multiprocessing.Pipe()
    ctx = ServiceContext("test", home, child, "i1", 0)
    server = ControlServer(
        socket_path(home.run_dir), lambda m: {"ok": True}, ctx.register, ctx.unregister
    )
    try:
        t = threading.Thread(target=lambda: [ctx.wait(0.05) for _ in range(40)], daemon=True)
        t.start()
        assert request(home.run_dir, {"op": "x"}) == {"ok": True}
        t.join(5)
    finally:
        server.close()
        parent.close()
        child.close()


def test_output_only_events_do_not_wake_the_loop(tmp_path: Path) -> None:
    import os

    home = Home.at(tmp_path / "home").ensure()
    parent, child = multiprocessing.Pipe()
    ctx = ServiceContext("test", home, child, "i1", 0)
    r, w = os.pipe()
    got: list[bytes] = []

    def on_read(_mask: int) -> bool:
        got.append(os.read(r, 100))
        return got[-1] == b"eof"

    ctx.register(r, 1, on_read)  # selectors.EVENT_READ
    os.write(w, b"chunk")
    assert ctx.wait(0.2) is False and got == [b"chunk"]  # served, loop not woken
    os.write(w, b"eof")
    assert ctx.wait(5) is True and got[-1] == b"eof"
    ctx.wake()
    assert ctx.wait(5) is True  # a poke always wakes it
    ctx.unregister(r)
    os.close(r)
    os.close(w)
    parent.close()
    child.close()
