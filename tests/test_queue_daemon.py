"""The background queue in a real palyrad (SPEC §6 "Background queue", "Maintenance ticks").

- a worker killed mid-task (``kill -9`` of the executor while a ``delivery`` handler is
  blocked opening a FIFO nobody reads): the restarted executor takes the task over at once
  (attempt 2, a new token, long before the 60 s lease would have run out) and the line is
  delivered exactly once;
- a file delivery whose directory is missing fails its attempt (error kept, retried 2 s
  later) and the retry delivers the line once the directory exists;
- handlers that raise (a bad payload, an unknown kind) fail their task only: the executor
  keeps its pid, runs keep running, the workers keep working;
- maintenance ticks keep their 1 s interval while the next routine is a week away and 100
  runs are queued behind ``max_concurrent_runs = 1``, never two of a kind at once;
- after a day of downtime each maintenance kind is enqueued once.

Timing: short intervals and generous timeouts; no sleep is an assertion.
"""

from __future__ import annotations

import itertools
import os
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import orjson
import pytest

from palyrad.domain.runs import new_ulid
from palyrad.domain.tasks import DELIVERY, MAINTENANCE_KINDS, MEMORY_MAINTENANCE
from palyrad.journal import STATE_MAINTENANCE, Journal, Task
from palyrad.ops.triggers import run_now
from palyrad.runtime.notify import poke_service
from tests.daemon_harness import RPC_ANY_PORTS, Daemon, every, palyra, routine, shell, wait_until

pytestmark = pytest.mark.timeout(120)

DAY_MS = 86_400_000
LEASE_MS = 60_000  # [self_healing] stale_task_ms: far longer than any take-over we accept


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _delivery_of(journal: Journal, run_id: str) -> Task | None:
    for t in journal.tasks.newest(kind=DELIVERY, limit=1_000):
        if orjson.loads(t.payload).get("run_id") == run_id:
            return t
    return None


def _run(d: Daemon, rid: str) -> str:
    out = palyra(d.root, "routines", "run-now", rid, "--json")
    return str(orjson.loads(out.stdout)["run_id"])


def _executor(d: Daemon) -> tuple[int, int]:
    """The running executor's pid and restart count. A restarted executor can hold a task
    before the supervisor has seen its first heartbeat, so this waits for ``running``."""
    return wait_until(lambda: _executor_if_running(d), timeout=30)


def _executor_if_running(d: Daemon) -> tuple[int, int] | None:
    p = d.status().process("executor")
    if p is None or p.pid is None or p.state != "running":
        return None
    return p.pid, p.restarts


@pytest.fixture(scope="module")
def daemon(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Daemon]:
    root = tmp_path_factory.mktemp("queue")
    d = Daemon(root / "home")
    d.home.config.write_text(RPC_ANY_PORTS + f"[self_healing]\nstale_task_ms = {LEASE_MS}\n")
    fifo = root / "reader-gone.fifo"
    os.mkfifo(fifo)
    d.write_definitions(
        [
            routine("to_fifo", {"kind": "manual"}, shell("true"),
                    delivery={"mode": "file", "path": str(fifo)}),
            routine("to_file", {"kind": "manual"}, shell("echo hi"),
                    delivery={"mode": "file", "path": str(root / "later" / "out.jsonl")}),
            routine("tick", every(1000), shell("true")),
        ]
    )  # fmt: skip
    try:
        d.start()
        yield d
    finally:
        d.close()


def test_executor_killed_mid_task_the_restart_takes_it_over_and_delivers_once(
    daemon: Daemon,
) -> None:
    journal = daemon.journal
    fifo = daemon.root.parent / "reader-gone.fifo"
    run_id = _run(daemon, "to_fifo")
    # the handler is inside open(fifo, O_WRONLY): blocked until somebody reads
    first = wait_until(lambda: (t := _delivery_of(journal, run_id)) and t.status == "running" and t)
    assert first.attempt == 1 and first.lease_until_ms is not None
    pid, restarts = _executor(daemon)
    assert first.lease_owner is not None and first.lease_owner.endswith(f":{pid}")
    killed_ms = _now_ms()
    os.kill(pid, signal.SIGKILL)
    second = wait_until(
        lambda: (t := _delivery_of(journal, run_id)) and t.attempt == 2 and t, timeout=30
    )
    assert second.status == "running" and second.lease_token != first.lease_token
    new_pid, new_restarts = _executor(daemon)
    assert new_pid != pid and new_restarts == restarts + 1
    assert second.lease_owner is not None and second.lease_owner.endswith(f":{new_pid}")
    # taken over by the restart, not by the old lease running out
    assert second.started_ms is not None and second.started_ms < first.lease_until_ms
    print(f"take-over {second.started_ms - killed_ms} ms after kill -9 (lease {LEASE_MS} ms)")
    with open(fifo, "rb") as reader:  # the new worker's open completes; it writes and closes
        lines = reader.read().splitlines()
    assert [orjson.loads(line)["run_id"] for line in lines] == [run_id]  # exactly once
    done = wait_until(lambda: (t := _delivery_of(journal, run_id)) and t.finished_ms and t)
    assert (done.status, done.attempt, done.error) == ("succeeded", 2, None)
    assert [t.task_id for t in journal.tasks.newest(kind=DELIVERY, limit=1_000)].count(
        done.task_id
    ) == 1


def test_a_failed_file_delivery_is_retried_with_backoff_and_delivers_once(
    daemon: Daemon,
) -> None:
    journal = daemon.journal
    out = daemon.root.parent / "later" / "out.jsonl"
    run_id = _run(daemon, "to_file")
    failed = wait_until(
        lambda: (t := _delivery_of(journal, run_id)) and t.status == "pending" and t.attempt and t
    )
    assert failed.attempt == 1 and failed.error is not None
    assert "FileNotFoundError" in failed.error and str(out) in failed.error
    assert failed.heartbeat_ms is not None  # when attempt 1 failed
    assert failed.not_before_ms == failed.heartbeat_ms + 2_000
    run = journal.runs.get(run_id)
    assert run is not None and run.status == "succeeded"  # delivery never changes the run
    out.parent.mkdir()
    done = wait_until(
        lambda: (t := _delivery_of(journal, run_id)) and t.status == "succeeded" and t, timeout=30
    )
    assert done.attempt == 2 and done.error is None
    assert done.started_ms is not None and done.started_ms >= failed.not_before_ms
    lines = out.read_bytes().splitlines()
    assert [orjson.loads(line)["run_id"] for line in lines] == [run_id]


def test_raising_handlers_never_kill_the_executor(daemon: Daemon) -> None:
    journal = daemon.journal
    pid, restarts = _executor(daemon)
    now = _now_ms()
    bad = [
        journal.tasks.enqueue(new_ulid(now), DELIVERY, '{"no_run_id": 1}', now, max_attempts=1),
        journal.tasks.enqueue(new_ulid(now), DELIVERY, "not json", now, max_attempts=1),
        journal.tasks.enqueue(new_ulid(now), "no_such_kind", "{}", now, max_attempts=1),
    ]
    assert poke_service(daemon.home.run_dir, "executor")
    failed = wait_until(
        lambda: (
            ts := [journal.tasks.get(t.task_id) for t, _ in bad]
        ) and all(t is not None and t.status == "failed" for t in ts) and ts
    )  # fmt: skip
    errors = [str(t.error) for t in failed if t is not None]
    assert errors[0].startswith("ValueError: payload has no run_id")
    assert errors[1].startswith("JSONDecodeError")
    assert errors[2] == "LookupError: no handler for task kind 'no_such_kind'"
    # the workers go on ...
    now = _now_ms()
    after, _ = journal.tasks.enqueue(new_ulid(now), MEMORY_MAINTENANCE, "{}", now)
    poke_service(daemon.home.run_dir, "executor")
    wait_until(lambda: (t := journal.tasks.get(after.task_id)) and t.status == "succeeded")
    # ... and so do the executor and its runs
    seen = len([r for r in daemon.runs("tick") if r.status == "succeeded"])
    wait_until(lambda: len([r for r in daemon.runs("tick") if r.status == "succeeded"]) >= seen + 2)
    assert _executor(daemon) == (pid, restarts)


# --- maintenance ticks ------------------------------------------------------------------------


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_maintenance_stays_on_time_with_a_routine_a_week_away_and_100_runs_queued(
    tmp_path: Path,
) -> None:
    d = Daemon(tmp_path / "home")
    d.home.config.write_text(
        RPC_ANY_PORTS
        + "[executor]\nmax_concurrent_runs = 1\n[maintenance]\nmemory_interval_ms = 1000\n"
    )
    a_day_ago = _now_ms() - DAY_MS
    d.write_definitions(
        [
            routine("weekly", every(7 * DAY_MS, anchor=_iso(a_day_ago)), shell("true")),
            routine("slow", {"kind": "manual"}, shell("sleep 5"), concurrency="allow"),
        ]
    )
    try:
        d.start()
        journal = d.journal
        for _ in range(100):
            run_now(d.home, journal, "slow", None, _no_definitions)
        weekly = journal.routines.get("weekly")
        assert weekly is not None and weekly.next_fire_ms is not None
        assert weekly.next_fire_ms - _now_ms() > 5 * DAY_MS
        t0 = _now_ms()

        def memory() -> list[Task]:
            ts = journal.tasks.newest(kind=MEMORY_MAINTENANCE, limit=1_000)
            return sorted((t for t in ts if t.created_ms >= t0), key=lambda t: t.created_ms)

        done = wait_until(
            lambda: (ts := memory()) and sum(t.status == "succeeded" for t in ts) >= 6 and ts,
            timeout=40,
        )
        queued = [r for r in d.runs("slow") if r.status == "pending"]
        assert len(queued) >= 95  # the run queue stayed full the whole time
    finally:
        d.close()
    finished = [t for t in done if t.status == "succeeded"]
    gaps = [b.created_ms - a.created_ms for a, b in itertools.pairwise(finished)]
    starts = [t.started_ms - t.created_ms for t in finished if t.started_ms is not None]
    ends = [t.finished_ms - t.created_ms for t in finished if t.finished_ms is not None]
    print(f"memory ticks: gaps {gaps} ms; enqueue→start {starts} ms; enqueue→done {ends} ms")
    assert all(1_000 <= g <= 1_500 for g in gaps), gaps  # every second, and not late
    assert max(ends) <= 1_000, ends  # each done before the next one is due
    # never two at once: each finished before the next was enqueued
    for a, b in itertools.pairwise(finished):
        assert a.finished_ms is not None and a.finished_ms <= b.created_ms


def _no_definitions() -> object:
    raise AssertionError("the daemon's request socket did not answer")


def test_after_a_day_of_downtime_each_maintenance_kind_is_enqueued_once(
    tmp_path: Path,
) -> None:
    d = Daemon(tmp_path / "home")
    d.home.config.write_text(
        RPC_ANY_PORTS + "[maintenance]\nmemory_interval_ms = 60000\nbackfill_interval_ms = 60000\n"
        "skill_reaudit_interval_ms = 60000\nvacuum_interval_ms = 60000\n"
    )
    d.write_definitions([])
    try:
        d.start()
        d.stop()
        journal = d.journal
        assert journal.tasks.newest(limit=10) == []
        # the schedule as a daemon stopped a day ago left it: every kind long overdue
        day_ago = _now_ms() - DAY_MS
        journal.state.set(
            STATE_MAINTENANCE, orjson.dumps(dict.fromkeys(MAINTENANCE_KINDS, day_ago)).decode(),
            day_ago,
        )  # fmt: skip
        started = _now_ms()
        d.start()
        tasks = wait_until(
            lambda: (ts := journal.tasks.newest(limit=100)) and len(ts) >= 4
            and all(t.status == "succeeded" for t in ts) and ts,
            timeout=30,
        )  # fmt: skip
        assert sorted(t.kind for t in tasks) == sorted(MAINTENANCE_KINDS)  # once each
        schedule = orjson.loads(journal.state.get(STATE_MAINTENANCE) or b"{}")
        # the next of each is one interval from the restart: not 1440 missed ones to go
        assert all(started + 59_000 <= schedule[k] <= _now_ms() + 60_000 for k in schedule)
        assert len(journal.tasks.newest(limit=100)) == 4
    finally:
        d.close()
