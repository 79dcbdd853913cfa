"""Helpers shared by the benchmark scripts (statistics, formatting, running the CLI).

Benchmarks are scripts run as ``python bench/NAME.py``, so this module is imported from the
script's own directory.
"""

from __future__ import annotations

import math
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
