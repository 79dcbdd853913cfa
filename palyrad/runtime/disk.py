"""Free space in the home's file system: one rule for the self-healing ``disk`` incident and
the doctor's ``disk`` check (SPEC §6: less than 5 % or 500 MB free)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

LOW_FRACTION = 0.05
LOW_BYTES = 500 * 1000**2  # 500 MB, as SPEC §6 says


@dataclass(frozen=True, slots=True)
class DiskSpace:
    free_bytes: int  # available to this (unprivileged) user
    total_bytes: int

    @property
    def free_fraction(self) -> float:
        return self.free_bytes / self.total_bytes if self.total_bytes else 1.0

    def low(self, fraction: float = LOW_FRACTION, min_bytes: int = LOW_BYTES) -> bool:
        """Below either floor (a file system smaller than the floor is always low: the
        journal and run logs need that much room)."""
        return self.free_fraction < fraction or self.free_bytes < min_bytes

    def describe(self) -> str:
        return (
            f"{self.free_bytes / 2**20:.0f} MiB free of {self.total_bytes / 2**20:.0f} MiB"
            f" ({self.free_fraction:.1%})"
        )


def disk_space(path: Path) -> DiskSpace:
    """The space of ``path``'s file system (raises OSError when it cannot be read)."""
    st = os.statvfs(path)
    return DiskSpace(st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize)
