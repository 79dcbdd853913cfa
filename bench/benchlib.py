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
import time
from collections.abc import Iterable, Sequence
from pathlib import Path


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
