"""Arming ahead: ticks decided up to ARM_AHEAD_MS early, runs spawned on their instant.

The scheduler and executor run in-process here, on a real journal in a temp home, with
``now`` passed in — so the window edges are exact, not raced against a clock.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest

from palyrad.domain.runs import ARM_AHEAD_MS, Run, RunStatus, new_ulid, run_spec
from palyrad.runtime.clock import ManualClock
from palyrad.runtime.home import Home
from palyrad.services.context import ServiceContext
from palyrad.services.executor.service import Executor
from palyrad.services.scheduler.service import Scheduler
from routines.model import Definitions
from routines.timefmt import now_ms
from routines.validate import validate_text
from tests.daemon_harness import every


@pytest.fixture
def ctx(tmp_path: Path) -> Iterator[ServiceContext]:
    home = Home.at(tmp_path / "home").ensure()
    parent, child = multiprocessing.Pipe()
    context = ServiceContext("test", home, child, "i1", 0)
    yield context
    parent.close()
    child.close()


@pytest.fixture
def ahead_ctx(tmp_path: Path) -> Iterator[ServiceContext]:
    """A context whose clock stands still 10 s ahead of the wall: a run armed for its
    instant stays armed however slow the machine is between inserting and claiming it
    (``launch_due`` sleeps to the wall instant, which is 10 s away)."""
    home = Home.at(tmp_path / "home").ensure()
    parent, child = multiprocessing.Pipe()
    context = ServiceContext("test", home, child, "i1", 0, clock=ManualClock(now_ms() + 10_000))
    yield context
    parent.close()
    child.close()


def _write(home: Home, routines: list[dict[str, object]]) -> None:
    home.definitions.write_bytes(orjson.dumps({"schema_version": 1, "routines": routines}))


def _every_minute(rid: str, **extra: object) -> dict[str, object]:
    return {
        "id": rid,
        "trigger": every(60_000),
        "action": {"kind": "command", "argv": ["/bin/true"]},
        **extra,
    }


def _scheduler(ctx: ServiceContext, routines: list[dict[str, object]]) -> Scheduler:
    _write(ctx.home, routines)
    sched = Scheduler(ctx)
    sched.reload(startup=True)
    return sched


def _fire(ctx: ServiceContext, rid: str) -> int:
    st = ctx.journal.routines.get(rid)
    assert st is not None and st.next_fire_ms is not None
    return st.next_fire_ms


def _runs(ctx: ServiceContext, rid: str) -> list[Run]:
    return ctx.journal.runs.for_routine(rid, limit=100)


def _running(ctx: ServiceContext, rid: str, started: int) -> str:
    """A manual run of ``rid`` that is running (started at ``started``); its id."""
    run_id = new_ulid()
    ctx.journal.runs.insert(
        Run(
            run_id=run_id,
            chain_id=run_id,
            routine_id=rid,
            attempt=1,
            trigger_kind="manual",
            status="running",
            queued_at_ms=started,
            started_at_ms=started,
            decided=True,
        )
    )
    return run_id


def test_idle_routine_is_armed_with_its_instant_as_not_before(ctx: ServiceContext) -> None:
    sched = _scheduler(ctx, [_every_minute("idle")])
    fire = _fire(ctx, "idle")
    sched.fire_due(fire - ARM_AHEAD_MS - 1)  # outside the window: nothing yet
    assert _runs(ctx, "idle") == []
    sched.fire_due(fire - ARM_AHEAD_MS // 2)
    (run,) = _runs(ctx, "idle")
    assert run.status == "pending" and run.decided
    assert run.scheduled_for_ms == run.fire_at_ms == run.not_before_ms == fire
    assert _fire(ctx, "idle") == fire + 60_000  # the schedule moved on, exactly one tick
    sched.fire_due(fire)  # on the instant: already recorded, never twice
    assert len(_runs(ctx, "idle")) == 1


def test_busy_forbid_routine_is_decided_on_its_instant(ctx: ServiceContext) -> None:
    sched = _scheduler(ctx, [_every_minute("busy"), _every_minute("other")])
    fire = _fire(ctx, "busy")
    running_id = _running(ctx, "busy", fire - 5_000)
    sched.fire_due(fire - 10)
    assert [r.run_id for r in _runs(ctx, "busy")] == [running_id]  # not decided early
    assert sched.deferred_ms == fire
    # The running run ends before the instant: the tick runs, as it would have without arming.
    ctx.journal.runs.finish(running_id, status=RunStatus.SUCCEEDED, finished_ms=fire - 5)
    sched.fire_due(fire)
    tick = [r for r in _runs(ctx, "busy") if r.trigger_kind == "schedule"]
    assert len(tick) == 1 and tick[0].status == "pending" and tick[0].not_before_ms is None


def test_busy_forbid_tick_is_skipped_when_still_running_on_its_instant(
    ctx: ServiceContext,
) -> None:
    sched = _scheduler(ctx, [_every_minute("busy")])
    fire = _fire(ctx, "busy")
    _running(ctx, "busy", fire - 5_000)
    sched.fire_due(fire - 10)
    sched.fire_due(fire)
    (tick,) = [r for r in _runs(ctx, "busy") if r.trigger_kind == "schedule"]
    assert tick.status == "skipped" and tick.error_kind == "concurrency_forbid"


def test_a_tick_in_quiet_hours_is_left_to_its_instant(ctx: ServiceContext) -> None:
    quiet = {"start": "00:00", "end": "00:00"}  # always quiet
    sched = _scheduler(ctx, [_every_minute("q", quiet_hours=quiet)])
    fire = _fire(ctx, "q")
    sched.fire_due(fire - 10)
    assert _runs(ctx, "q") == []
    assert _fire(ctx, "q") == fire and sched.deferred_ms == fire  # untouched until then


def _armed_run(ctx: ServiceContext, rid: str, not_before: int, **extra: object) -> Run:
    loaded = validate_text(
        orjson.dumps({"schema_version": 1, "routines": [_every_minute(rid, **extra)]}),
        filename="x",
        now_ms=now_ms(),
        env={},
    ).definitions
    assert isinstance(loaded, Definitions)
    run_id = new_ulid()
    run = Run(
        run_id=run_id,
        chain_id=run_id,
        routine_id=rid,
        attempt=1,
        trigger_kind="schedule",
        status="pending",
        queued_at_ms=now_ms(),
        scheduled_for_ms=not_before,
        fire_at_ms=not_before,
        not_before_ms=not_before,
        decided=True,
        spec=run_spec(loaded.routines[0]),
    )
    ctx.journal.runs.insert(run)
    return run


def test_executor_spawns_an_armed_run_on_its_instant(ctx: ServiceContext) -> None:
    ex = Executor(ctx)
    instant = now_ms() + 30
    run = _armed_run(ctx, "r", instant)
    ex.claim_and_start()
    assert run.run_id in ex.armed or run.run_id in ex.active
    got = ctx.journal.runs.get(run.run_id)
    assert got is not None and got.status in ("pending", "running")
    deadline = time.monotonic() + 10
    while run.run_id not in ex.active and time.monotonic() < deadline:
        ctx.wait(ex.next_wake_s(now_ms()))
        ex.launch_due()
    started = ctx.journal.runs.get(run.run_id)
    assert started is not None and started.started_at_ms is not None
    assert started.started_at_ms >= instant  # never before its instant
    while ex.active and time.monotonic() < deadline:
        ctx.wait(0.1)
        ex.supervise(now_ms())
    done = ctx.journal.runs.get(run.run_id)
    assert done is not None and done.status == "succeeded"


def test_cancelling_an_armed_run_finalizes_it_unstarted(ahead_ctx: ServiceContext) -> None:
    ctx = ahead_ctx
    ex = Executor(ctx)
    _armed_run(ctx, "r", ctx.clock.now_ms() + 5_000)  # claimed 50 ms ahead only
    ex.claim_and_start()
    assert ex.armed == {}
    run2 = _armed_run(ctx, "r2", ctx.clock.now_ms() + 40)
    ex.claim_and_start()
    assert list(ex.armed) == [run2.run_id]
    assert ctx.journal.runs.request_cancel(run2.run_id) is not None
    ex.supervise(ctx.clock.now_ms())
    got = ctx.journal.runs.get(run2.run_id)
    assert got is not None and got.status == "cancelled" and got.started_at_ms is None
    assert ex.armed == {} and not ctx.home.run_log(run2.run_id).exists()


def test_stop_gives_armed_runs_back_to_the_queue(ahead_ctx: ServiceContext) -> None:
    ctx = ahead_ctx
    ex = Executor(ctx)
    run = _armed_run(ctx, "r", ctx.clock.now_ms() + 40)
    ex.claim_and_start()
    assert list(ex.armed) == [run.run_id]
    ex.stop_all()
    got = ctx.journal.runs.get(run.run_id)
    assert got is not None and got.status == "pending" and got.lease_owner is None


def test_a_full_disk_stops_the_run_log_not_the_executor(ctx: ServiceContext) -> None:
    """ENOSPC on a run log (here /dev/full) keeps the output in the tail only."""
    import subprocess

    from palyrad.services.executor.active_run import ActiveRun

    ex = Executor(ctx)
    run = _armed_run(ctx, "r", now_ms())
    proc = subprocess.Popen(["/bin/true"])
    proc.wait()
    active = ActiveRun(run, proc, Path("/dev/full"), 0, 0, log_file=open("/dev/full", "wb"))  # noqa: SIM115
    ex.io.record_output(active, b"hello\n")
    assert active.log_file is None and active.tail_text() == "hello\n"
    ex.io.record_output(active, b"more\n")  # no log any more, tail still kept
    assert active.tail_text() == "hello\nmore\n"


def test_a_spawn_failure_fails_the_run_and_leaves_no_log(ctx: ServiceContext) -> None:
    ex = Executor(ctx)
    action = {"kind": "command", "argv": ["/nonexistent/palyra-test"]}
    run = _armed_run(ctx, "r", now_ms(), action=action)
    ex.claim_and_start()
    got = ctx.journal.runs.get(run.run_id)
    assert got is not None and got.status == "failed" and got.error_kind == "spawn_failed"
    assert "/nonexistent/palyra-test" in (got.error_message or "")
    assert not ctx.home.run_log(run.run_id).exists() and ex.active == {} and ex.armed == {}


def test_a_config_reload_changes_the_concurrency_cap(ctx: ServiceContext) -> None:
    ex = Executor(ctx)
    ctx.home.config.write_text("[executor]\nmax_concurrent_runs = 1\n")
    ctx.reload_config()
    first = _armed_run(ctx, "a", now_ms() + 40)
    _armed_run(ctx, "b", now_ms() + 40)
    ex.claim_and_start()
    assert list(ex.armed) == [first.run_id]  # one slot, not the default 8
    ex.stop_all()
