"""A real palyrad in a temp home, for integration tests: start, inspect, kill, clean up."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import orjson

from palyrad.domain.runs import Run
from palyrad.journal import Journal
from palyrad.runtime.home import Home
from palyrad.runtime.status import DaemonStatus, read_status

T = TypeVar("T")

BIN = Path(sys.executable).parent


def palyra(
    home: Path,
    *args: str,
    check: bool = True,
    timeout: float = 60,
    input_data: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the real ``palyra`` console script against ``home`` (``input_data`` on stdin)."""
    proc = subprocess.run(
        [str(BIN / "palyra"), "--home", str(home), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        input=input_data,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"palyra {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def wait_until(fn: Callable[[], T | None], timeout: float = 20.0, interval: float = 0.02) -> T:
    """Poll ``fn`` until it returns something truthy; fail with the last value on timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = fn()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s (last value: {last!r})")


def routine(
    rid: str, trigger: dict[str, Any], action: dict[str, Any], **extra: Any
) -> dict[str, Any]:
    return {"id": rid, "trigger": trigger, "action": action, **extra}


def every(ms: int, anchor: str = "2026-01-01T00:00:00Z") -> dict[str, Any]:
    return {"kind": "schedule", "schedule": {"type": "every", "interval_ms": ms, "anchor": anchor}}


def shell(cmd: str, **extra: Any) -> dict[str, Any]:
    return {"kind": "command", "shell": cmd, **extra}


class Daemon:
    """One palyrad under test."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = Home(root).ensure()
        self._journal: Journal | None = None

    # definitions ----------------------------------------------------------------------
    def write_definitions(self, routines: list[dict[str, Any]], *, in_place: bool = False) -> None:
        data = orjson.dumps({"schema_version": 1, "routines": routines}, option=orjson.OPT_INDENT_2)
        self.write_raw(data, in_place=in_place)

    def write_raw(self, data: bytes, *, in_place: bool = False) -> None:
        path = self.home.definitions
        if in_place:
            with open(path, "r+b" if path.exists() else "wb") as f:
                f.seek(0)
                f.truncate()
                f.write(data)
        else:
            tmp = path.with_name("definitions.json.tmp-test")
            tmp.write_bytes(data)
            os.replace(tmp, path)

    # lifecycle ------------------------------------------------------------------------
    def start(self) -> DaemonStatus:
        palyra(self.root, "daemon", "start")
        return self.status()

    def stop(self) -> None:
        palyra(self.root, "daemon", "stop", check=False)

    def status(self) -> DaemonStatus:
        return read_status(self.home)

    def pids(self) -> list[int]:
        st = self.status()
        out = [st.pid] if st.pid else []
        out += [p.pid for p in st.processes if p.pid]
        return out

    def kill_all(self) -> None:
        """SIGKILL the supervisor and every service (as a crash would). Every process is
        frozen first, so none sees another die and acts on it (an executor noticing its
        supervisor gone would end its runs: on a loaded machine the gap between two kills
        is long enough for that)."""
        pids = self.pids()
        for sig in (signal.SIGSTOP, signal.SIGKILL):
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
        wait_until(lambda: not self.status().running, timeout=10)

    # journal --------------------------------------------------------------------------
    @property
    def journal(self) -> Journal:
        if self._journal is None:
            self._journal = Journal(self.home.journal)
        return self._journal

    def runs(self, routine_id: str, limit: int = 1000) -> list[Run]:
        return self.journal.runs.for_routine(routine_id, limit=limit)

    def close(self) -> None:
        if self._journal is not None:
            self._journal.close()
            self._journal = None
        if self.status().running:
            self.stop()
        if self.status().running:
            self.kill_all()


# The node and webhook listeners on any free port: tests never collide with each other (or
# with a daemon of the machine) on the default 7141/7142/7143.
# [rpc] last: several tests append their own [rpc] keys.
RPC_ANY_PORTS = "[webhooks]\nport = 0\n[rpc]\npairing_port = 0\nnode_port = 0\n"


@contextlib.contextmanager
def started_with_listeners(root: Path) -> Iterator[Daemon]:
    """A started daemon in ``root`` with both node listeners up on free ports; stopped and
    closed afterwards (for module-scoped fixtures)."""
    d = Daemon(root)
    d.home.config.write_text(RPC_ANY_PORTS)
    try:
        d.start()
        yield d
    finally:
        d.close()
