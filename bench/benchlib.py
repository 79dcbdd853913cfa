"""Helpers shared by the benchmark scripts (statistics, formatting, running the CLI).

Benchmarks are scripts run as ``python bench/NAME.py``, so this module is imported from the
script's own directory.
"""

from __future__ import annotations

import contextlib
import math
import platform
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any


def now_ms() -> int:
    """The same clock the daemon stamps runs with (routines.timefmt.now_ms)."""
    return time.time_ns() // 1_000_000


def pct(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    s = sorted(values)
    k = max(0, math.ceil(q / 100 * len(s)) - 1)
    return float(s[k])


def med(values: Iterable[float | None]) -> float | None:
    v = [x for x in values if x is not None]
    return statistics.median(v) if v else None


def worst(values: Iterable[float | None], *, higher_is_worse: bool = True) -> float | None:
    v = [x for x in values if x is not None]
    if not v:
        return None
    return max(v) if higher_is_worse else min(v)


def fmt(x: float | None, unit: str = "", digits: int = 0) -> str:
    return "—" if x is None else f"{x:.{digits}f}{unit}"


def palyra_cli() -> str:
    exe = Path(sys.executable).parent / "palyra"
    return str(exe) if exe.exists() else "palyra"


def cli(home: Path, *args: str, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [palyra_cli(), "--home", str(home), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def package_version(name: str) -> str:
    """An installed distribution's version, or ``?``."""
    from importlib.metadata import version

    try:
        return version(name)
    except Exception:
        return "?"


def palyra_version(root: Path) -> str:
    """``0.1.0 (abc1234)``, with ``+dirty`` when the daemon's code has local changes."""
    git = "?"
    with contextlib.suppress(Exception):
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "palyrad", "routines", "palyra_cli"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        git = head + ("+dirty" if dirty else "")
    return f"{package_version('palyra')} ({git})"


def cpu_model() -> str:
    model = platform.processor() or "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return model


# --- process sampling (psutil) -------------------------------------------------------------


class ProcSampler:
    """Samples summed RSS of a process set every ``interval`` s; CPU seconds on demand.

    ``pids()`` returns the set to measure (re-evaluated at every sample, so a restarted
    service is followed). Only the processes themselves count: the actions they spawn are
    grandchildren of the supervisor and are not part of the daemon's footprint. ``peak_total``
    covers the sampler's life, ``peak_window`` the samples taken while ``in_window``.
    """

    def __init__(
        self,
        pids: Callable[[], list[int]],
        interval: float = 0.2,
        names: dict[int, str] | None = None,
    ) -> None:
        import psutil

        self.psutil = psutil
        self.pids = pids
        self.names = names or {}
        self.interval = interval
        self.peak_total = 0
        self.peak_window = 0
        self.in_window = False
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._procs: dict[int, Any] = {}

    def _proc(self, pid: int) -> Any:
        p = self._procs.get(pid)
        if p is None:
            p = self._procs[pid] = self.psutil.Process(pid)
        return p

    def rss(self) -> int:
        total = 0
        for pid in self.pids():
            with contextlib.suppress(self.psutil.Error):
                total += self._proc(pid).memory_info().rss
        return total

    def cpu(self) -> float:
        return sum(self.cpu_by_process().values())

    def cpu_by_process(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for pid in self.pids():
            with contextlib.suppress(self.psutil.Error):
                t = self._proc(pid).cpu_times()
                name = self.names.get(pid, f"pid {pid}")
                out[name] = out.get(name, 0.0) + t.user + t.system
        return out

    def cpu_reaped_children(self) -> float:
        """CPU of the (reaped) actions these processes spawned."""
        total = 0.0
        for pid in self.pids():
            with contextlib.suppress(self.psutil.Error):
                t = self._proc(pid).cpu_times()
                total += t.children_user + t.children_system
        return total

    def _sample(self) -> None:
        r = self.rss()
        self.peak_total = max(self.peak_total, r)
        if self.in_window:
            self.peak_window = max(self.peak_window, r)

    def _run(self) -> None:
        while True:
            self._sample()
            if self._stop.wait(self.interval):
                return

    def start(self) -> ProcSampler:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self._sample()


def daemon_sampler(home: Path) -> ProcSampler:
    """A sampler of a running daemon: the supervisor (its status file's pid) + its direct
    children (the services and multiprocessing's resource tracker), named by service."""
    import psutil

    from palyrad.runtime.home import Home
    from palyrad.runtime.status import read_status

    st = read_status(Home.at(home))
    if not st.running or not st.pid:
        raise RuntimeError("daemon not running after start")
    sup = psutil.Process(int(st.pid))
    names = {int(p.pid): p.name for p in st.processes if p.pid}
    names[sup.pid] = "supervisor"
    listed = set(names) - {sup.pid}

    def pids() -> list[int]:
        try:
            kids = {c.pid for c in sup.children(recursive=False)}
        except psutil.Error:
            kids = set()
        return [sup.pid, *sorted(kids | listed)]

    return ProcSampler(pids, names=names)


def host_busy_fraction(before: Any, after: Any) -> float:
    """Share of all cores busy between two psutil.cpu_times() snapshots (all processes)."""
    idle = (after.idle + getattr(after, "iowait", 0)) - (before.idle + getattr(before, "iowait", 0))
    total = sum(after) - sum(before)
    return 0.0 if total <= 0 else max(0.0, 1.0 - idle / total)


def sqlite_claim_complete_bound(
    tmp: Path, seconds: float, rows: int = 200_000
) -> tuple[int, float]:
    """The raw SQLite limit of a queue (BENCHMARKS.md "The limit"): single-row claim +
    complete, each its own BEGIN IMMEDIATE transaction, back to back, on a file under
    ``tmp`` (the homes' disk); WAL + synchronous=NORMAL as the journal. (items, seconds)."""
    import sqlite3
    import tempfile

    with tempfile.TemporaryDirectory(prefix="palyra-bench-sqlite-", dir=tmp) as d:
        db = sqlite3.connect(str(Path(d) / "bound.sqlite3"), isolation_level=None, timeout=10)
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute(
            "CREATE TABLE q (id INTEGER PRIMARY KEY, status TEXT NOT NULL, owner TEXT,"
            " started_ms INTEGER, finished_ms INTEGER)"
        )
        db.execute("CREATE INDEX q_pending ON q(id) WHERE status = 'pending'")
        db.execute("BEGIN IMMEDIATE")
        db.executemany("INSERT INTO q (status) VALUES ('pending')", [()] * rows)
        db.execute("COMMIT")
        done = 0
        t_begin = time.perf_counter()
        t_end = t_begin + seconds
        while time.perf_counter() < t_end:
            db.execute("BEGIN IMMEDIATE")
            row = db.execute(
                "SELECT id FROM q WHERE status = 'pending' ORDER BY id LIMIT 1"
            ).fetchone()
            now = time.time_ns() // 1_000_000
            db.execute(
                "UPDATE q SET status = 'running', owner = 'x', started_ms = ? WHERE id = ?",
                (now, row[0]),
            )
            db.execute("COMMIT")
            db.execute("BEGIN IMMEDIATE")
            db.execute(
                "UPDATE q SET status = 'done', finished_ms = ? WHERE id = ? AND owner = 'x'",
                (time.time_ns() // 1_000_000, row[0]),
            )
            db.execute("COMMIT")
            done += 1
        elapsed = time.perf_counter() - t_begin
        db.close()
    return done, elapsed
