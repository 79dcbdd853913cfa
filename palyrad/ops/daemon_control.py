"""Starting, stopping and asking about a daemon from outside it (CLI, tests, doctor).

``start`` returns only once every service reports ready, or fails with the reason the
daemon printed; ``stop`` is a SIGTERM to the supervisor and a wait for its lock to go.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

import orjson

from palyrad.runtime.config import DaemonConfig, load_config
from palyrad.runtime.home import Home
from palyrad.runtime.liveness import daemon_alive
from palyrad.runtime.notify import POKE_ALL, poke_fifo
from palyrad.runtime.status import DaemonStatus, read_status
from palyrad.runtime.stop_request import write_stop_request
from routines.errors import PalyraError, storage_error


class DaemonControlError(PalyraError, RuntimeError):
    """Starting or stopping failed; the message says why and what to do."""


def preflight(home: Home) -> DaemonConfig:
    """Check what a start needs before anything changes: no other user can write to the home
    (or its certs/, skills/, routines/: SPEC §1), palyra.toml parses and the journal opens
    (and migrates). ``daemon restart`` runs it before stopping a healthy daemon, and palyrad
    itself before it takes the lock and spawns services that could only crash-loop.
    Raises ``UnsafeHome``, ``ConfigError`` (exit 2) or ``JournalError`` naming the file and
    the fix."""
    from palyrad.journal import Journal
    from palyrad.runtime.home_safety import refuse_unsafe_home

    refuse_unsafe_home(home)  # the same judgement palyra doctor's ``home`` check reports
    config = load_config(home.config)
    Journal(home.journal).close()  # JournalError: names the file and the fix
    return config


def _stderr_path(home: Home) -> os.PathLike[str]:
    return home.run_dir / "palyrad.stderr"


def start_daemon(home: Home, *, timeout_s: float = 30.0) -> tuple[DaemonStatus, bool]:
    """Start palyrad in the background; returns (status, started_now)."""
    home.ensure()
    status = read_status(home)
    if status.running:
        return status, False
    err_path = _stderr_path(home)
    try:
        err = open(err_path, "wb")  # noqa: SIM115 (closed below, once palyrad has it)
    except OSError as exc:  # a read-only or full home: say so before anything is spawned
        raise storage_error(exc, "palyrad did not start") from None
    with err:
        proc = subprocess.Popen(
            # -P: a folder named palyrad/ in the caller's cwd must not shadow the daemon
            [sys.executable, "-P", "-m", "palyrad", "--home", str(home.root), "--no-log-stderr"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=err,
            start_new_session=True,
            close_fds=True,
        )
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        code = proc.poll()
        if code is not None:
            reason = ""
            with contextlib.suppress(OSError), open(err_path, encoding="utf-8") as f:
                reason = f.read().strip()
            if reason:  # palyrad's own one-line ``error: what (hint)``
                raise DaemonControlError(reason.splitlines()[-1].removeprefix("error: "))
            raise DaemonControlError(
                f"palyrad exited with code {code}", f"see {home.daemon_log}; run: palyra doctor"
            )
        status = read_status(home)
        if status.all_ready and status.pid == proc.pid:
            return status, True
        fatal = [p.name for p in status.processes if p.state == "fatal"]
        if fatal:
            raise DaemonControlError(
                f"service(s) {', '.join(fatal)} failed to start",
                f"see {home.daemon_log}; run: palyra doctor",
            )
        time.sleep(0.05)
    raise DaemonControlError(
        f"palyrad did not become ready within {timeout_s:.0f} s",
        f"see {home.daemon_log}; run: palyra doctor",
    )


def daemon_pid(home: Home) -> int | None:
    if not daemon_alive(home):
        return None
    with contextlib.suppress(OSError, orjson.JSONDecodeError, KeyError, TypeError):
        return int(orjson.loads(home.pid_file.read_bytes())["pid"])
    return None


def stop_daemon(home: Home, *, timeout_s: float | None = None) -> bool:
    """Graceful stop; False when no daemon was running.

    ``timeout_s`` is how long running runs get between SIGTERM and SIGKILL (default: the
    daemon's ``[daemon] stop_timeout_ms``); it reaches the daemon as a stop request written
    just before the SIGTERM (``runtime.stop_request``). Escalates to SIGKILL of the
    supervisor past that timeout plus a margin."""
    pid = daemon_pid(home)
    if pid is None:
        return False
    if timeout_s is None:
        try:
            grace_s = load_config(home.config).stop_timeout_ms / 1000
        except PalyraError:  # a broken palyra.toml: the running daemon has its own value
            grace_s = DaemonConfig().stop_timeout_ms / 1000
    else:
        grace_s = max(0.0, timeout_s)
        write_stop_request(home, pid, int(grace_s * 1000))
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace_s + 10.0
    while time.monotonic() < deadline:
        if not daemon_alive(home):
            return True
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
    return True


def poke(home: Home, what: bytes = POKE_ALL) -> bool:
    """Wake a running daemon after a journal/definitions change; False if none runs."""
    return poke_fifo(home.notify_fifo, what)
