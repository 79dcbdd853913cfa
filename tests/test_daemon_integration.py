"""A real palyrad in a temp home: runs, restarts, crash recovery, hot reload, stop.

Timing: short intervals and generous timeouts; no sleep is an assertion.
"""

from __future__ import annotations

import itertools
import os
import signal
import time
from collections import Counter

import orjson
import pytest

from palyrad.runtime.status import read_status
from tests.daemon_harness import Daemon, every, palyra, routine, shell, wait_until

pytestmark = pytest.mark.timeout(120)


def _succeeded(d: Daemon, rid: str, n: int) -> list[object] | None:
    runs = [r for r in d.runs(rid) if r.status == "succeeded"]
    return runs if len(runs) >= n else None


def test_every_second_routine_runs_repeatedly_with_journal_records(daemon: Daemon) -> None:
    out = daemon.root / "out.txt"
    daemon.write_definitions(
        [
            routine(
                "tick",
                every(1000),
                shell(
                    f'echo "$PALYRA_ROUTINE_ID $PALYRA_ATTEMPT $PALYRA_TRIGGER_KIND '
                    f'$PALYRA_SCHEDULED_FOR $PALYRA_RUN_ID" >> {out}'
                ),
            )
        ]
    )
    status = daemon.start()
    assert status.all_ready
    assert {p.name for p in status.processes} == {
        "scheduler",
        "executor",
        "self_healing",
        "node_rpc",
    }
    wait_until(lambda: _succeeded(daemon, "tick", 3), timeout=30)
    runs = [r for r in daemon.runs("tick") if r.status == "succeeded"]
    ticks = sorted(r.scheduled_for_ms for r in runs if r.scheduled_for_ms is not None)
    assert len(ticks) == len(set(ticks)), "a tick ran twice"
    assert all(t % 1000 == 0 for t in ticks), "every-1s ticks are anchored, not drifting"
    for r in runs:
        assert r.trigger_kind == "schedule" and r.attempt == 1 and r.exit_code == 0
        assert r.started_at_ms is not None and r.finished_at_ms is not None
        assert r.fire_at_ms == r.scheduled_for_ms  # no jitter configured
        assert r.fire_at_ms is not None and r.started_at_ms >= r.fire_at_ms  # never early
        assert r.log_path and os.path.exists(r.log_path)
    lines = out.read_text().splitlines()
    first = lines[0].split()
    assert first[:3] == ["tick", "1", "schedule"]
    assert first[3].endswith("+00:00")
    assert {line.split()[4] for line in lines} <= {r.run_id for r in daemon.runs("tick")}


def test_forbid_ticks_overlapping_a_run_are_skipped_and_none_is_lost(daemon: Daemon) -> None:
    """A 1.3 s run on a 1 s schedule: the ticks that land on a running run are decided on
    their instant (skipped), the others are armed ahead and start on theirs."""
    daemon.write_definitions(
        [routine("slow", every(1000), shell("sleep 1.3"), concurrency="forbid")]
    )
    daemon.start()
    wait_until(lambda: _succeeded(daemon, "slow", 3), timeout=30)
    runs = sorted(
        (r for r in daemon.runs("slow") if r.trigger_kind == "schedule"),
        key=lambda r: r.scheduled_for_ms or 0,
    )
    ran = [r for r in runs if r.started_at_ms is not None]
    skipped = [r for r in runs if r.status == "skipped"]
    assert skipped and all(r.error_kind == "concurrency_forbid" for r in skipped)
    for a, b in itertools.pairwise(ran):
        assert a.finished_at_ms is not None and b.started_at_ms is not None
        assert b.started_at_ms >= a.finished_at_ms, "forbid let two runs overlap"
    for r in ran:
        assert r.fire_at_ms is not None and r.started_at_ms is not None
        assert r.started_at_ms >= r.fire_at_ms
    ticks = [r.scheduled_for_ms for r in runs if r.scheduled_for_ms is not None]
    assert ticks == list(range(ticks[0], ticks[-1] + 1, 1000)), "a tick has no record"


def test_run_now_starts_without_waiting_for_the_tick(daemon: Daemon) -> None:
    daemon.write_definitions([routine("manual", {"kind": "manual"}, shell("echo manual-ok"))])
    daemon.start()
    t0 = time.time()
    proc = palyra(daemon.root, "routines", "run-now", "manual", "--json")
    body = orjson.loads(proc.stdout)
    assert set(body) == {"run_id", "status", "error_kind"}
    run = wait_until(
        lambda: (r := daemon.journal.runs.get(body["run_id"])) and r.status == "succeeded" and r,
        timeout=10,
    )
    assert run.started_at_ms is not None
    assert run.started_at_ms / 1000 - t0 < 10  # far below the scheduler's 15 s idle cap
    out = palyra(daemon.root, "runs", "show", run.run_id, "--output").stdout
    assert out.strip() == "manual-ok"


def test_killed_service_is_restarted_and_routines_keep_running(daemon: Daemon) -> None:
    daemon.write_definitions([routine("tick", every(1000), shell("true"))])
    daemon.start()
    for name in ("executor", "scheduler", "self_healing", "node_rpc"):
        before = daemon.status().process(name)
        assert before is not None and before.pid is not None
        os.kill(before.pid, signal.SIGKILL)
        after = wait_until(
            lambda n=name, b=before: (
                (p := daemon.status().process(n)) and p.state == "running" and p.pid != b.pid and p
            ),
            timeout=20,
        )
        assert after.restarts == before.restarts + 1
    seen = len(_succeeded(daemon, "tick", 0) or [])
    wait_until(lambda: _succeeded(daemon, "tick", seen + 2), timeout=30)


def test_kill_9_mid_run_is_finalized_as_daemon_crashed_and_no_tick_runs_twice(
    daemon: Daemon,
) -> None:
    marker = daemon.root / "started"
    daemon.write_definitions(
        [
            routine("slow", {"kind": "manual"}, shell(f"touch {marker}; sleep 60")),
            routine("tick", every(1000), shell("true")),
        ]
    )
    daemon.start()
    run_id = orjson.loads(palyra(daemon.root, "routines", "run-now", "slow", "--json").stdout)[
        "run_id"
    ]
    wait_until(marker.exists, timeout=15)
    running = wait_until(
        lambda: (r := daemon.journal.runs.get(run_id)) and r.status == "running" and r
    )
    assert running.pid is not None
    daemon.kill_all()
    assert daemon.journal.runs.get(run_id).status == "running"  # nobody finalized it yet
    daemon.start()
    crashed = wait_until(
        lambda: (r := daemon.journal.runs.get(run_id)) and r.status == "failed" and r, timeout=10
    )
    assert crashed.error_kind == "daemon_crashed"
    # Its process group was killed, not left behind.
    wait_until(lambda: not _alive(running.pid), timeout=5)
    wait_until(lambda: _succeeded(daemon, "tick", 3), timeout=30)
    ticks = Counter(
        r.scheduled_for_ms for r in daemon.runs("tick") if r.scheduled_for_ms is not None
    )
    assert ticks and max(ticks.values()) == 1


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie is not alive for our purposes.
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return True


@pytest.mark.parametrize("in_place", [False, True], ids=["atomic-rename", "in-place"])
def test_definitions_edits_are_picked_up(daemon: Daemon, in_place: bool) -> None:
    daemon.write_definitions([routine("a", {"kind": "manual"}, shell("true"))])
    daemon.start()
    t0 = time.monotonic()
    daemon.write_definitions(
        [
            routine("a", {"kind": "manual"}, shell("true")),
            routine("b", {"kind": "manual"}, shell("true")),
        ],
        in_place=in_place,
    )
    wait_until(lambda: "b" in daemon.journal.routines.states(), timeout=10)
    elapsed = time.monotonic() - t0
    print(f"edit picked up after {elapsed * 1000:.0f} ms")


def test_invalid_edit_keeps_the_old_routines_running(daemon: Daemon) -> None:
    daemon.write_definitions([routine("tick", every(1000), shell("true"))])
    daemon.start()
    wait_until(lambda: _succeeded(daemon, "tick", 1), timeout=20)
    daemon.write_raw(b'{"schema_version": 1, "routines": [{"id": "tick", "trigger": ')
    wait_until(lambda: daemon.journal.state.get("definitions_error"), timeout=10)
    seen = len(_succeeded(daemon, "tick", 0) or [])
    wait_until(lambda: _succeeded(daemon, "tick", seen + 2), timeout=20)
    err = orjson.loads(daemon.journal.state.get("definitions_error") or "{}")
    assert "invalid JSON" in err["errors"][0]
    # Fixing the file clears the recorded error and applies it.
    daemon.write_definitions([routine("other", {"kind": "manual"}, shell("true"))])
    wait_until(lambda: daemon.journal.state.get("definitions_error") is None, timeout=10)
    wait_until(lambda: "tick" not in daemon.journal.routines.states(), timeout=10)


def test_sigterm_stops_everything_and_leaves_no_orphan(daemon: Daemon) -> None:
    marker = daemon.root / "started"
    daemon.write_definitions(
        [routine("slow", {"kind": "manual"}, shell(f"touch {marker}; sleep 60 & wait"))]
    )
    daemon.start()
    pids = daemon.pids()
    run_id = orjson.loads(palyra(daemon.root, "routines", "run-now", "slow", "--json").stdout)[
        "run_id"
    ]
    wait_until(marker.exists, timeout=15)
    run = wait_until(lambda: (r := daemon.journal.runs.get(run_id)) and r.pid and r)
    os.kill(daemon.status().pid or 0, signal.SIGTERM)
    wait_until(lambda: not read_status(daemon.home).running, timeout=30)
    for pid in [*pids, run.pid]:
        wait_until(lambda p=pid: not _alive(p), timeout=10)
    # No process of the run's group survives (the backgrounded sleep included).
    wait_until(lambda: not _group_alive(run.pid), timeout=10)
    final = daemon.journal.runs.get(run_id)
    assert final.status == "failed" and final.error_kind == "daemon_stopped"


def _group_alive(pgid: int) -> bool:
    """Whether any non-zombie process is left in the group."""
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":
            return True
    return False


def test_second_daemon_on_same_home_is_refused(daemon: Daemon) -> None:
    daemon.start()
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "palyrad", "--home", str(daemon.root)],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 1
    assert "already running" in proc.stderr
    status = palyra(daemon.root, "daemon", "status", "--json").stdout
    assert orjson.loads(status)["running"] is True


def test_status_when_stopped_and_after_crash(daemon: Daemon) -> None:
    body = orjson.loads(palyra(daemon.root, "daemon", "status", "--json").stdout)
    stopped_endpoints = {"pairing": None, "node": None, "webhook": None}
    assert body == {
        "running": False,
        "pid": None,
        "started_at": None,
        "processes": [],
        "endpoints": stopped_endpoints,
    }
    daemon.start()
    body = orjson.loads(palyra(daemon.root, "daemon", "status", "--json").stdout)
    assert body["running"] is True and len(body["processes"]) == 4
    assert all(p["state"] == "running" for p in body["processes"])
    daemon.kill_all()
    # A stale pid file after a crash reads as stopped.
    body = orjson.loads(palyra(daemon.root, "daemon", "status", "--json").stdout)
    assert body["running"] is False
    assert body["endpoints"] == stopped_endpoints


def test_stuck_run_is_failed_and_killed_by_self_healing(daemon: Daemon) -> None:
    daemon.home.config.write_text(
        "[executor]\nheartbeat_interval_ms = 200\n[self_healing]\nstale_run_ms = 1500\n"
    )
    marker = daemon.root / "started"
    daemon.write_definitions(
        [routine("stuck", {"kind": "manual"}, shell(f"touch {marker}; sleep 60"))]
    )
    daemon.start()
    run_id = orjson.loads(palyra(daemon.root, "routines", "run-now", "stuck", "--json").stdout)[
        "run_id"
    ]
    wait_until(marker.exists, timeout=15)
    run = wait_until(lambda: (r := daemon.journal.runs.get(run_id)) and r.pid and r)
    executor = daemon.status().process("executor")
    assert executor is not None and executor.pid is not None
    os.kill(executor.pid, signal.SIGSTOP)  # the executor hangs: no more heartbeats
    try:
        failed = wait_until(
            lambda: (r := daemon.journal.runs.get(run_id)) and r.status == "failed" and r,
            timeout=20,
        )
        assert failed.error_kind == "heartbeat_lost"
        wait_until(lambda: not _group_alive(run.pid), timeout=10)
    finally:
        os.kill(executor.pid, signal.SIGCONT)


def test_runs_show_follow_streams_until_the_run_ends(daemon: Daemon) -> None:
    daemon.write_definitions(
        [
            routine(
                "chatty",
                {"kind": "manual"},
                shell("for i in 1 2 3; do echo line$i; sleep 0.3; done"),
            )
        ]
    )
    daemon.start()
    run_id = orjson.loads(palyra(daemon.root, "routines", "run-now", "chatty", "--json").stdout)[
        "run_id"
    ]
    out = palyra(daemon.root, "runs", "show", run_id, "--follow", timeout=30).stdout
    assert out.splitlines() == ["line1", "line2", "line3"]
    assert daemon.journal.runs.get(run_id).status == "succeeded"
