"""Rate limits for the listeners: token buckets per source address and one for everyone.

A hostile client on the LAN must not turn the pairing listener into a PIN oracle (the PAKE
already allows one guess per handshake, 20 per window) nor into a CPU sink (each handshake
costs a SPAKE2 exponentiation and an ECDSA verification). Time is a parameter: ``allow``
takes ``now_ms`` from the service's clock.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

MAX_TRACKED = 1024  # distinct sources remembered; the oldest are forgotten past this


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at_ms: int


class RateLimiter:
    """``per_minute`` requests a minute per key (bursts up to ``burst``), and
    ``total_per_minute`` across every key."""

    def __init__(self, per_minute: float, burst: int, total_per_minute: float) -> None:
        self._rate = per_minute / 60_000
        self._burst = float(burst)
        self._total_rate = total_per_minute / 60_000
        self._total_burst = max(float(burst), total_per_minute / 6)
        self._buckets: dict[str, _Bucket] = {}
        self._total: _Bucket | None = None
        self._lock = threading.Lock()

    @staticmethod
    def _take(b: _Bucket, rate: float, burst: float, now_ms: int) -> bool:
        b.tokens = min(burst, b.tokens + max(0, now_ms - b.at_ms) * rate)
        b.at_ms = now_ms
        if b.tokens < 1:
            return False
        b.tokens -= 1
        return True

    def allow(self, key: str, now_ms: int) -> bool:
        """Whether one more request from ``key`` fits now (and consume it if so)."""
        with self._lock:
            if self._total is None:
                self._total = _Bucket(self._total_burst, now_ms)
            b = self._buckets.pop(key, None) or _Bucket(self._burst, now_ms)
            self._buckets[key] = b  # re-inserted: dict order is least recently used first
            if len(self._buckets) > MAX_TRACKED:
                del self._buckets[next(iter(self._buckets))]
            if not self._take(b, self._rate, self._burst, now_ms):
                return False
            return self._take(self._total, self._total_rate, self._total_burst, now_ms)


def peer_host(peer: str) -> str:
    """The source address of a gRPC peer string (``ipv4:1.2.3.4:5``, ``ipv6:[::1]:5``)."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv6" and rest.startswith("["):
        return rest[1 : rest.find("]")]
    if kind == "ipv4":
        return rest.rpartition(":")[0]
    return peer
