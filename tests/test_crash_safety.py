"""Issue 9, crash safety: a real palyrad stopping runs (timeouts, cancels, stops, crashes)
reaches everything they started, ends them as what happened, and never runs a tick twice.

Timing: short intervals and generous timeouts; no sleep is an assertion.
"""

from __future__ import annotations

import os
import signal

import orjson
import pytest

from palyrad.domain.runs import Run
from palyrad.runtime.process_groups import run_processes
from tests.daemon_harness import Daemon, palyra, routine, shell, wait_until

pytestmark = pytest.mark.timeout(120)

# A run whose grandchild leaves the process group (its own session) and would outlive a
# signal sent to the group only.
ESCAPING = "setsid sleep 300 & sleep 300"


def _run_now(daemon: Daemon, rid: str) -> str:
    out = palyra(daemon.root, "routines", "run-now", rid, "--json").stdout
    return str(orjson.loads(out)["run_id"])


def _ended(daemon: Daemon, run_id: str) -> Run | None:
    run = daemon.journal.runs.get(run_id)
    return run if run is not None and run.status not in ("pending", "running") else None


def _running_with_grandchild(daemon: Daemon, run_id: str) -> Run:
    """Wait until the run is running and its escaped grandchild exists (2 processes)."""
    run = wait_until(lambda: (r := daemon.journal.runs.get(run_id)) and r.status == "running" and r)
    wait_until(lambda: len(run_processes(run_id)) >= 3, timeout=10)  # sh + 2 sleeps
    return run


def test_timeout_reaches_a_grandchild_that_left_the_group(daemon: Daemon) -> None:
    daemon.write_definitions([routine("esc", {"kind": "manual"}, shell(ESCAPING, timeout_ms=1000))])
    daemon.start()
    run_id = _run_now(daemon, "esc")
    running = _running_with_grandchild(daemon, run_id)
    ended = wait_until(lambda: _ended(daemon, run_id), timeout=15)
    assert ended.status == "failed" and ended.error_kind == "timeout"
    assert running.started_at_ms is not None and ended.finished_at_ms is not None
    # Promptly: the timeout plus a little, not the 2 s EOF grace plus the 1 s forced EOF
    # that a grandchild holding the output pipe used to cost.
    assert ended.finished_at_ms - running.started_at_ms < 1000 + 1500
    wait_until(lambda: not run_processes(run_id), timeout=5)


def test_cancel_reaches_a_grandchild_that_left_the_group(daemon: Daemon) -> None:
    daemon.write_definitions([routine("esc", {"kind": "manual"}, shell(ESCAPING))])
    daemon.start()
    run_id = _run_now(daemon, "esc")
    _running_with_grandchild(daemon, run_id)
    palyra(daemon.root, "routines", "cancel", run_id)
    ended = wait_until(lambda: _ended(daemon, run_id), timeout=15)
    assert ended.status == "cancelled"
    wait_until(lambda: not run_processes(run_id), timeout=5)


def test_crash_recovery_kills_a_grandchild_that_left_the_group(daemon: Daemon) -> None:
    daemon.write_definitions([routine("esc", {"kind": "manual"}, shell(ESCAPING))])
    daemon.start()
    run_id = _run_now(daemon, "esc")
    _running_with_grandchild(daemon, run_id)
    daemon.kill_all()
    assert run_processes(run_id)  # the crash left them all behind
    daemon.start()
    ended = wait_until(lambda: _ended(daemon, run_id), timeout=15)
    assert ended.error_kind == "daemon_crashed"
    wait_until(lambda: not run_processes(run_id), timeout=5)


def test_kill_9_of_the_supervisor_alone_ends_runs_daemon_crashed(daemon: Daemon) -> None:
    """The services see EOF on their pipe and stop: a crash of the daemon, not a stop."""
    daemon.write_definitions(
        [
            routine(
                "slow",
                {"kind": "manual"},
                shell("sleep 300"),
                retry={"max_attempts": 2, "backoff_ms": 60_000},
            )
        ]
    )
    daemon.start()
    pids = daemon.pids()
    run_id = _run_now(daemon, "slow")
    wait_until(lambda: (r := daemon.journal.runs.get(run_id)) and r.status == "running")
    os.kill(pids[0], signal.SIGKILL)  # the supervisor only
    ended = wait_until(lambda: _ended(daemon, run_id), timeout=30)
    assert ended.status == "failed" and ended.error_kind == "daemon_crashed"
    # ... and it follows its retry policy: attempt 2 waits for the next start.
    chain = [r for r in daemon.runs("slow") if r.chain_id == ended.chain_id]
    assert sorted((r.attempt, r.status) for r in chain) == [(1, "failed"), (2, "pending")]
    for pid in pids[1:]:
        wait_until(lambda p=pid: not _alive(p), timeout=15)
    wait_until(lambda: not run_processes(run_id), timeout=5)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


# Traps SIGTERM and exits 0 about 3 s later (the group's `sleep 300` dies at the SIGTERM).
TRAPS_TERM = "trap 'sleep 3; echo trapped; exit 0' TERM; touch {marker}; sleep 300 & wait"


def _trapping_run(daemon: Daemon) -> str:
    marker = daemon.root / "trapping"
    daemon.home.config.write_text("[daemon]\nstop_timeout_ms = 1000\n")
    daemon.write_definitions(
        [routine("trap", {"kind": "manual"}, shell(TRAPS_TERM.format(marker=marker)))]
    )
    daemon.start()
    run_id = _run_now(daemon, "trap")
    wait_until(marker.exists, timeout=15)
    wait_until(lambda: (r := daemon.journal.runs.get(run_id)) and r.status == "running")
    return run_id


def test_daemon_stop_timeout_gives_runs_the_operators_grace(daemon: Daemon) -> None:
    """`--timeout 8` outlasts the run's 3 s clean-up, though palyra.toml says 1 s."""
    run_id = _trapping_run(daemon)
    palyra(daemon.root, "daemon", "stop", "--timeout", "8")
    ended = _ended(daemon, run_id)
    assert ended is not None
    assert ended.status == "succeeded" and ended.exit_code == 0, ended
    assert "trapped" in (ended.output_tail or "")


def test_daemon_stop_without_timeout_uses_stop_timeout_ms(daemon: Daemon) -> None:
    run_id = _trapping_run(daemon)
    palyra(daemon.root, "daemon", "stop")
    ended = _ended(daemon, run_id)
    assert ended is not None
    assert ended.status == "failed" and ended.error_kind == "daemon_stopped"
    assert ended.exit_code == -signal.SIGKILL
