"""Killing everything a run started, including what left its process group (issue 9 item
12): a ``setsid`` grandchild is found by the ``PALYRA_RUN_ID`` in its environment."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from pathlib import Path

import pytest

from palyrad.runtime.process_groups import run_process_table, run_processes, signal_run
from tests.daemon_harness import wait_until

pytestmark = pytest.mark.timeout(30)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers kill(0); it has exited for our purposes
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_signal_run_reaches_a_grandchild_that_left_the_group(tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild.pid"
    script = f"setsid sh -c 'echo $$ > {pidfile}; exec sleep 300' & exec sleep 300"
    env = {**os.environ, "PALYRA_RUN_ID": "01RUNTEST"}
    proc = subprocess.Popen(["/bin/sh", "-c", script], env=env, start_new_session=True)
    try:
        grandchild = int(wait_until(lambda: pidfile.exists() and pidfile.read_text().strip()))
        assert os.getpgid(grandchild) != proc.pid  # it really left the run's group
        assert set(run_processes("01RUNTEST")) >= {proc.pid, grandchild}
        assert run_processes("01RUNTES") == []  # a prefix of the id is another run
        assert signal_run(proc.pid, "01RUNTEST", signal.SIGKILL)
        proc.wait(timeout=5)
        wait_until(lambda: not _alive(grandchild), timeout=5)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def test_a_run_that_started_nothing_is_not_signalled() -> None:
    assert not signal_run(None, "01NOSUCHRUN", signal.SIGKILL)


def test_one_scan_finds_the_processes_of_many_runs() -> None:
    procs = [
        subprocess.Popen(
            ["sleep", "300"],
            env={**os.environ, "PALYRA_RUN_ID": run_id, "X_PALYRA_RUN_ID": "01DECOY"},
            start_new_session=True,
        )
        for run_id in ("01TABLEA", "01TABLEB")
    ]
    try:
        # (a process's environ reads empty for an instant while it execs: wait for both)
        table = wait_until(
            lambda: (t := run_process_table()).keys() >= {"01TABLEA", "01TABLEB"} and t
        )
        assert table.get("01TABLEA") == [procs[0].pid]
        assert table.get("01TABLEB") == [procs[1].pid]
        assert "01DECOY" not in table  # a variable whose name only ends so is not the run id
        assert signal_run(None, "01TABLEA", signal.SIGKILL, table=table)
        procs[0].wait(timeout=5)
    finally:
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait(timeout=5)
