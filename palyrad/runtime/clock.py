"""The clocks behind the ``Clock`` seam: the system's, and a manual one for tests."""

from __future__ import annotations

import time


class SystemClock:
    """Unix milliseconds from the system's real-time clock."""

    __slots__ = ()

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class ManualClock:
    """A clock that moves only when told: DST, outages and backoffs in a test's millisecond."""

    __slots__ = ("_now",)

    def __init__(self, now_ms: int) -> None:
        self._now = now_ms

    def now_ms(self) -> int:
        return self._now

    def set(self, now_ms: int) -> None:
        self._now = now_ms

    def advance(self, ms: int) -> int:
        self._now += ms
        return self._now


SYSTEM_CLOCK = SystemClock()
