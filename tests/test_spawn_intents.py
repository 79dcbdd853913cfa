"""The window between spawning a run and journaling ``started`` (issue 9, item 1).

A "crash" here is an exception raised at the exact point a kill -9 would land (right after
the spawn, before ``mark_started``); a second executor instance then recovers, as the next
start of the daemon would. In-process, on a real journal, so the window is hit every time.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from palyrad.domain.runs import Run, new_ulid, run_spec
from palyrad.journal.leases import Leases
from palyrad.runtime.home import Home
from palyrad.runtime.process_groups import run_processes
from palyrad.services.context import ServiceContext
from palyrad.services.executor.intents import COMPACT_BYTES, SpawnIntents
from palyrad.services.executor.service import Executor
from routines.model import Definitions
from routines.timefmt import now_ms
from routines.validate import validate_text
from tests.daemon_harness import every


class Crash(BaseException):
    """Where a kill -9 of the daemon would land."""


@pytest.fixture
def home(tmp_path: Path) -> Home:
    return Home.at(tmp_path / "home").ensure()


@pytest.fixture
def contexts(home: Home) -> Iterator[list[ServiceContext]]:
    made: list[ServiceContext] = []
    pipes = []

    def make() -> ServiceContext:
        parent, child = multiprocessing.Pipe()
        pipes.extend((parent, child))
        made.append(ServiceContext("executor", home, child, f"i{len(made)}", 0))
        return made[-1]

    make()
    make()
    yield made
    for p in pipes:
        p.close()


def _pending(ctx: ServiceContext, shell: str, **extra: object) -> Run:
    routine = {
        "id": "r",
        "trigger": every(60_000),
        "action": {"kind": "command", "shell": shell},
        **extra,
    }
    loaded = validate_text(
        orjson.dumps({"schema_version": 1, "routines": [routine]}),
        filename="x",
        now_ms=now_ms(),
        env={},
    ).definitions
    assert isinstance(loaded, Definitions)
    run_id = new_ulid()
    tick = now_ms()
    run = Run(
        run_id=run_id,
        chain_id=run_id,
        routine_id="r",
        attempt=1,
        trigger_kind="schedule",
        status="pending",
        queued_at_ms=tick,
        scheduled_for_ms=tick,
        fire_at_ms=tick,
        not_before_ms=tick,
        decided=True,
        spec=run_spec(loaded.routines[0]),
    )
    ctx.journal.runs.insert(run)
    return run


def _lines(path: Path) -> list[str]:
    return path.read_text().splitlines() if path.exists() else []


def test_a_run_spawned_before_a_crash_is_never_spawned_again(
    contexts: list[ServiceContext], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = contexts
    out = tmp_path / "ran"
    run = _pending(first, f"echo $PALYRA_RUN_ID >> {out}; sleep 30")
    dead = Executor(first)

    def crash(*_a: object, **_k: object) -> bool:
        raise Crash

    monkeypatch.setattr(Leases, "mark_started", crash)
    with pytest.raises(Crash):
        dead.claim_and_start()  # spawned; "started" never journaled
    monkeypatch.undo()
    deadline = time.monotonic() + 10
    while not _lines(out) and time.monotonic() < deadline:
        time.sleep(0.01)
    assert _lines(out) == [run.run_id]

    ex = Executor(second)  # the next start
    ex.recover()
    got = second.journal.runs.get(run.run_id)
    assert got is not None and got.status == "failed" and got.error_kind == "daemon_crashed"
    ex.claim_and_start()
    assert ex.active == {} and ex.armed == {}  # not re-spawned as if new
    deadline = time.monotonic() + 5
    while run_processes(run.run_id) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert run_processes(run.run_id) == []  # what it started was killed
    assert _lines(out) == [run.run_id]  # the action ran once


def test_a_run_claimed_but_provably_not_spawned_goes_back_to_the_queue(
    contexts: list[ServiceContext], tmp_path: Path
) -> None:
    first, second = contexts
    out = tmp_path / "ran"
    run = _pending(first, f"echo $PALYRA_RUN_ID >> {out}")
    dead = Executor(first)
    leased = first.journal.leases.acquire([run.run_id], dead.owner, now_ms())
    assert leased == [run.run_id]  # claimed, then the daemon died before its instant

    ex = Executor(second)
    ex.recover()
    got = second.journal.runs.get(run.run_id)
    assert got is not None and got.status == "pending" and got.lease_owner is None
    ex.claim_and_start()
    deadline = time.monotonic() + 10
    while ex.active and time.monotonic() < deadline:
        second.wait(0.05)
        ex.supervise(now_ms())
    done = second.journal.runs.get(run.run_id)
    assert done is not None and done.status == "succeeded"
    assert _lines(out) == [run.run_id]


def test_the_crashed_start_follows_its_retry_policy(
    contexts: list[ServiceContext], monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = contexts
    run = _pending(first, "true", retry={"max_attempts": 2, "backoff_ms": 1000})
    dead = Executor(first)

    def crash(*_a: object, **_k: object) -> bool:
        raise Crash

    monkeypatch.setattr(Leases, "mark_started", crash)
    with pytest.raises(Crash):
        dead.claim_and_start()
    monkeypatch.undo()
    Executor(second).recover()
    chain = second.journal.runs.for_routine("r")
    assert [(r.attempt, r.status) for r in reversed(chain)] == [(1, "failed"), (2, "pending")]
    assert chain[0].scheduled_for_ms == run.scheduled_for_ms


def test_the_intent_log_stays_small(home: Home) -> None:
    intents = SpawnIntents(home.spawn_intents)
    for _ in range(COMPACT_BYTES // 27 + 10):
        intents.record(new_ulid())
        intents.settled()
    assert home.spawn_intents.stat().st_size < COMPACT_BYTES
    intents.record("X")
    assert intents.recorded() >= {"X"}
    intents.clear()
    assert intents.recorded() == set()
    intents.close()
