"""What ``palyra daemon status`` reports (SPEC §4.1), and how it is read safely.

The supervisor writes ``run/status.json``; whether the daemon is alive is decided by the
pid-file lock, never by the file's contents, so a crash leaves nothing that reads as running
(``palyrad.runtime.liveness.daemon_alive``).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

import orjson

from palyrad.runtime.home import Home
from palyrad.runtime.liveness import daemon_alive
from routines.timefmt import format_rfc3339


@dataclass(frozen=True, slots=True)
class ProcessStatus:
    name: str
    pid: int | None
    state: str  # running | starting | restarting | fatal | stopped
    restarts: int
    last_heartbeat_ms: int | None = None
    info: dict[str, Any] = field(default_factory=dict)
    retry_at_ms: int | None = None  # restarting or fatal: when the supervisor tries again
    # The service's last failed journal write ({"at_ms", "error"}), for the self-healing
    # ``journal`` incident and doctor; None when none failed since the daemon started.
    journal_error: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class DaemonStatus:
    running: bool
    pid: int | None
    instance: str | None
    started_at_ms: int | None
    processes: tuple[ProcessStatus, ...] = ()

    def process(self, name: str) -> ProcessStatus | None:
        return next((p for p in self.processes if p.name == name), None)

    @property
    def fatal(self) -> tuple[ProcessStatus, ...]:
        """Services the supervisor gave up on for now (restarted too often)."""
        return tuple(p for p in self.processes if p.state == "fatal") if self.running else ()

    @property
    def all_ready(self) -> bool:
        return (
            self.running
            and bool(self.processes)
            and all(p.state == "running" for p in self.processes)
        )

    @property
    def endpoints(self) -> dict[str, str | None]:
        """The listeners' bound addresses (SPEC §7); ``None`` for one that is not up."""
        rpc = self.process("node_rpc")
        up = self.running and rpc is not None and rpc.state == "running"
        found = (rpc.info.get("endpoints") if up and rpc is not None else None) or {}
        return {name: found.get(name) for name in ("pairing", "node", "webhook")}

    def to_json(self) -> dict[str, Any]:
        """The SPEC §4.1 shape (``starting`` is reported as ``restarting`` until ready)."""
        return {
            "running": self.running,
            "pid": self.pid if self.running else None,
            "started_at": None
            if self.started_at_ms is None or not self.running
            else format_rfc3339(self.started_at_ms, always_ms=True),
            "processes": [
                {
                    "name": p.name,
                    "pid": p.pid,
                    "state": "restarting" if p.state == "starting" else p.state,
                    "restarts": p.restarts,
                    "last_heartbeat_at": None
                    if p.last_heartbeat_ms is None
                    else format_rfc3339(p.last_heartbeat_ms, always_ms=True),
                    # restarting/fatal: when the supervisor tries again (an addition to §4.1)
                    "retry_at": None
                    if p.retry_at_ms is None or p.state in ("running", "stopped")
                    else format_rfc3339(p.retry_at_ms, always_ms=True),
                }
                for p in self.processes
            ]
            if self.running
            else [],
            "endpoints": self.endpoints,
        }


STOPPED = DaemonStatus(running=False, pid=None, instance=None, started_at_ms=None)


def _status_path(home: Home) -> Any:
    return home.run_dir / "status.json"


def write_status(home: Home, status: DaemonStatus) -> None:
    """Atomically replace run/status.json (supervisor only)."""
    from routines.definitions_file import atomic_write

    data = {
        "running": status.running,
        "pid": status.pid,
        "instance": status.instance,
        "started_at_ms": status.started_at_ms,
        "processes": [
            {
                "name": p.name,
                "pid": p.pid,
                "state": p.state,
                "restarts": p.restarts,
                "last_heartbeat_ms": p.last_heartbeat_ms,
                "info": p.info,
                "retry_at_ms": p.retry_at_ms,
                "journal_error": p.journal_error,
            }
            for p in status.processes
        ],
    }
    atomic_write(_status_path(home), orjson.dumps(data), keep_backup=False, durable=False)


def read_status(home: Home) -> DaemonStatus:
    """The daemon's status; ``STOPPED`` when no supervisor holds the lock."""
    if not daemon_alive(home):
        return STOPPED
    raw: dict[str, Any] = {}
    with contextlib.suppress(OSError, orjson.JSONDecodeError):
        raw = orjson.loads(_status_path(home).read_bytes())
    if not raw:
        with contextlib.suppress(OSError, orjson.JSONDecodeError):
            raw = orjson.loads(home.pid_file.read_bytes())
        return DaemonStatus(True, raw.get("pid"), raw.get("instance"), raw.get("started_at_ms"))
    return DaemonStatus(
        running=True,
        pid=raw.get("pid"),
        instance=raw.get("instance"),
        started_at_ms=raw.get("started_at_ms"),
        processes=tuple(
            ProcessStatus(
                name=p["name"],
                pid=p.get("pid"),
                state=p.get("state", "stopped"),
                restarts=p.get("restarts", 0),
                last_heartbeat_ms=p.get("last_heartbeat_ms"),
                info=p.get("info") or {},
                retry_at_ms=p.get("retry_at_ms"),
                journal_error=p.get("journal_error"),
            )
            for p in raw.get("processes", [])
        ),
    )
