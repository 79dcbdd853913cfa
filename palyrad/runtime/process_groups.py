"""Killing a run's process group safely, also from a process that did not spawn it.

Runs start in their own session (process group id = pid), so signalling ``-pid`` reaches
everything the action spawned. Before signalling a group we did not spawn ourselves (crash
recovery, stuck-run remediation) we check that the pid still belongs to a process started
around the run's ``started_at`` — a recycled pid must never be killed.

A process group is not everything a run started: a child may ``setsid()`` or ``setpgid()``
out of it (a daemonizing script, ``nohup … &`` under some shells). Every run's environment
carries ``PALYRA_RUN_ID``, which descendants inherit, so ``signal_run`` also signals every
process whose environment names the run (read from /proc on Linux). Not reached: a process
that cleared or rewrote its environment (``env -i``, a daemon that ``execve``s with a fresh
environment), and on systems without /proc only the group is signalled. docs/daemon.md says
so.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
START_TOLERANCE_MS = 5_000


def _boot_time_s() -> float | None:
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except OSError:
        return None
    return None


def process_start_ms(pid: int) -> int | None:
    """When ``pid`` started (Unix ms), from /proc; None when unknown or gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    boot = _boot_time_s()
    if boot is None:
        return None
    return int((boot + int(fields[19]) / _CLK_TCK) * 1000)


def parent_pid(pid: int) -> int | None:
    """``pid``'s parent, from /proc; None when it is gone or there is no /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return int(stat.rsplit(")", 1)[1].split()[1])


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_same_process(pid: int, started_at_ms: int | None) -> bool:
    """Whether ``pid`` is (still) the process spawned at ``started_at_ms``."""
    if started_at_ms is None:
        return False
    start = process_start_ms(pid)
    if start is None:
        # No /proc (macOS): trust the group only if it exists at all.
        return group_alive(pid)
    return abs(start - started_at_ms) <= START_TOLERANCE_MS


def signal_group(pgid: int, sig: int) -> bool:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)
        return True
    return False


def _environs(proc: Path) -> Iterator[tuple[int, bytes]]:
    """(pid, environment) of every process but ours whose environment we may read."""
    me = os.getpid()
    try:
        entries = list(os.scandir(proc))
    except OSError:
        return
    for entry in entries:
        if not entry.name.isdigit() or int(entry.name) == me:
            continue
        try:
            with open(os.path.join(entry.path, "environ"), "rb") as f:
                yield int(entry.name), f.read()
        except OSError:  # gone, a kernel thread, or not ours to read
            continue


def run_processes(run_id: str, *, proc: Path = Path("/proc")) -> list[int]:
    """Pids (other than ours) whose environment carries ``PALYRA_RUN_ID=<run_id>``."""
    marker = b"\0PALYRA_RUN_ID=" + run_id.encode() + b"\0"
    return [pid for pid, environ in _environs(proc) if marker in b"\0" + environ]


def run_process_table(*, proc: Path = Path("/proc")) -> dict[str, list[int]]:
    """Every process carrying a ``PALYRA_RUN_ID``, by run id: one /proc scan for many runs
    (crash recovery kills hundreds of orphans; a scan each cost seconds of the start)."""
    table: dict[str, list[int]] = {}
    for pid, environ in _environs(proc):
        i = environ.find(b"PALYRA_RUN_ID=")
        while i > 0 and environ[i - 1] != 0:  # the name must start a variable
            i = environ.find(b"PALYRA_RUN_ID=", i + 1)
        if i < 0:
            continue
        end = environ.find(b"\0", i)
        run_id = environ[i + 14 : end if end >= 0 else len(environ)]
        table.setdefault(run_id.decode("ascii", "replace"), []).append(pid)
    return table


def signal_run(
    pgid: int | None,
    run_id: str,
    sig: int,
    *,
    table: Mapping[str, Sequence[int]] | None = None,
) -> bool:
    """Signal a run's process group and every process that left it but still carries the
    run's id in its environment (from ``table``, a ``run_process_table`` taken for many
    runs at once, or a scan of its own). True if anything was signalled."""
    hit = pgid is not None and signal_group(pgid, sig)
    pids = run_processes(run_id) if table is None else table.get(run_id, ())
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, sig)
            hit = True
    return hit


def terminate_group(pgid: int, grace_s: float) -> None:
    """SIGTERM the group, then SIGKILL whatever is left after ``grace_s``."""
    if not signal_group(pgid, signal.SIGTERM):
        return
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        if not group_alive(pgid):
            return
        time.sleep(0.05)
    signal_group(pgid, signal.SIGKILL)


def kill_orphan_run(
    run_id: str,
    pid: int | None,
    started_at_ms: int | None,
    *,
    table: Mapping[str, Sequence[int]] | None = None,
) -> bool:
    """SIGKILL what a run left behind when its executor is gone (crash recovery, a stale
    heartbeat): its process group only if the group leader is still the process spawned at
    ``started_at_ms`` (a recycled pid is never killed), and every process carrying the run's
    id in its environment — always, since that match names this run and no other (it also
    reaches a run whose pid was never journaled, or whose leader already exited)."""
    group = pid if pid is not None and is_same_process(pid, started_at_ms) else None
    return signal_run(group, run_id, signal.SIGKILL, table=table)
