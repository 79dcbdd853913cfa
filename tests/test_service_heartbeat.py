"""Service heartbeats as self-healing reads them: the first journal beat is written at once
(so the row names this process, never its predecessor), beats follow the silence window, and
a main loop that does not come back to its wait reads as ``stalled``."""

from __future__ import annotations

import multiprocessing
import os
import sqlite3
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from palyrad.journal import Journal
from palyrad.runtime.home import Home
from palyrad.services import context as context_mod
from palyrad.services.context import ServiceContext, journal_heartbeat_every


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[ServiceContext]:
    home = Home(tmp_path / "home").ensure()
    parent, child = multiprocessing.Pipe(duplex=True)
    context = ServiceContext("scheduler", home, child, "inst-1", 2)
    yield context
    context.stop_event.set()
    parent.close()
    child.close()


def test_beats_follow_the_silence_window() -> None:
    assert journal_heartbeat_every(10_000) == 2  # the default: every 2 s
    assert journal_heartbeat_every(2_000) == 1  # never less than once a second
    assert journal_heartbeat_every(3_000) == 1
    assert journal_heartbeat_every(600_000) == 5  # never rarer than every 5 s


def test_first_journal_beat_is_written_at_once(ctx: ServiceContext) -> None:
    Journal(ctx.home.journal).close()  # the daemon's preflight creates the journal
    started = time.monotonic()
    ctx.start_threads()
    journal = Journal(ctx.home.journal)
    try:
        deadline = time.monotonic() + 5
        beat = None
        while beat is None and time.monotonic() < deadline:
            beat = journal.heartbeats.all().get("scheduler")
            time.sleep(0.02)
        assert beat is not None
        assert beat.pid == os.getpid()
        assert beat.instance == "inst-1"
        assert beat.restarts == 2
        assert beat.state == "running"
        # Before the first pipe heartbeat (1 s): the row never names a predecessor.
        assert time.monotonic() - started < 1.0
    finally:
        journal.close()


def test_a_main_loop_that_does_not_come_back_reads_stalled(
    ctx: ServiceContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert ctx.loop_state() == "running"  # before the first wait: nothing to judge
    ctx.wait(0)
    assert ctx.loop_state() == "running"  # just came back from its wait
    monkeypatch.setattr(context_mod, "STALL_FLOOR_S", 0.05)
    monkeypatch.setattr(context_mod, "STALL_SILENCES", 0)
    time.sleep(0.1)  # busy (not waiting) past the floor
    assert ctx.loop_state() == "stalled"
    ctx.wait(0)
    assert ctx.loop_state() == "running"


def test_the_stall_limit_grows_with_the_silence_window(
    ctx: ServiceContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(context_mod, "STALL_FLOOR_S", 0.05)
    object.__setattr__(ctx, "config", ctx.config.__class__(process_silence_ms=60_000))
    ctx.wait(0)
    time.sleep(0.1)
    assert ctx.loop_state() == "running"  # 3 × 60 s, not the floor, is the limit here


def test_pipe_heartbeats_go_on_while_the_journal_is_locked(tmp_path: Path) -> None:
    """The journal beat waits for the write lock (up to the busy timeout) and may fail; the
    pipe heartbeats, which tell the supervisor and self-healing the process is alive, must
    not wait with it."""
    home = Home(tmp_path / "home").ensure()
    Journal(home.journal).close()
    parent, child = multiprocessing.Pipe(duplex=True)
    ctx = ServiceContext("scheduler", home, child, "inst-1", 0)
    locker = sqlite3.connect(home.journal, isolation_level=None)
    locker.execute("BEGIN IMMEDIATE")  # another writer holds the lock throughout
    try:
        ctx.start_threads()
        beats = []
        deadline = time.monotonic() + 4.5
        while time.monotonic() < deadline:
            if parent.poll(0.1):
                msg = parent.recv()
                if msg == ("heartbeat",):
                    beats.append(time.monotonic())
        assert len(beats) >= 3, beats
    finally:
        ctx.stop_event.set()
        locker.execute("ROLLBACK")
        locker.close()
        parent.close()
        child.close()


def test_a_wedged_self_healing_loop_goes_quiet_on_the_pipe(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Self-healing judges the other services' wedged loops, not its own: when its main loop
    is stalled its pipe heartbeats stop, so the supervisor's watchdog restarts it (before,
    the heartbeat thread kept it looking healthy to the supervisor and to doctor for ever)."""
    home = Home(tmp_path / "home").ensure()
    Journal(home.journal).close()
    monkeypatch.setattr(context_mod, "STALL_FLOOR_S", 0.05)
    monkeypatch.setattr(context_mod, "STALL_SILENCES", 0)
    parent, child = multiprocessing.Pipe(duplex=True)
    ctx = ServiceContext("self_healing", home, child, "inst-1", 0)
    try:
        ctx.wait(0)  # its loop left its wait, and never comes back
        ctx.start_threads()
        time.sleep(2.5)
        msgs = []
        while parent.poll(0):
            msgs.append(parent.recv())
        assert ("heartbeat",) not in msgs
    finally:
        ctx.stop_event.set()
        parent.close()
        child.close()
