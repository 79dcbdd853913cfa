"""Unix milliseconds ↔ certificate times.

The library never reads the clock: callers pass ``now_ms`` (the daemon from its ``Clock``,
tests from a fixed value), so issuance and checks are reproducible. Certificates carry whole
seconds, so times are floored to the second before they are written.
"""

from __future__ import annotations

import datetime as dt

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def ms_to_datetime(ms: int) -> dt.datetime:
    """The UTC datetime of ``ms``, floored to the whole second (what X.509 can hold)."""
    return _EPOCH + dt.timedelta(seconds=ms // 1000)


def datetime_to_ms(when: dt.datetime) -> int:
    """Unix milliseconds of an aware datetime (exact: no float rounding)."""
    delta = when - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000
