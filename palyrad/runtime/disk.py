"""Free space in the home's file system: one rule for the self-healing ``disk`` incident and
the doctor's ``disk`` check (SPEC §6: less than 5 % or 500 MB free)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

LOW_FRACTION = 0.05
LOW_BYTES = 500 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class DiskSpace:
    free_bytes: int  # available to this (unprivileged) user
    total_bytes: int

    @property
    def free_fraction(self) -> float:
        return self.free_bytes / self.total_bytes if self.total_bytes else 1.0

    def low(self, fraction: float = LOW_FRACTION, min_bytes: int = LOW_BYTES) -> bool:
        """Below either floor. A file system smaller than ``min_bytes`` in total (a small
        tmpfs in a test) is judged by the fraction alone."""
        floor = min_bytes if self.total_bytes > 2 * min_bytes else 0
        return self.free_fraction < fraction or self.free_bytes < floor

    def describe(self) -> str:
        return (
            f"{self.free_bytes / 2**20:.0f} MiB free of {self.total_bytes / 2**20:.0f} MiB"
            f" ({self.free_fraction:.1%})"
        )


def disk_space(path: Path) -> DiskSpace:
    """The space of ``path``'s file system (raises OSError when it cannot be read)."""
    st = os.statvfs(path)
    return DiskSpace(st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize)
