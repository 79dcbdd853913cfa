"""Rate limits for the listeners: token buckets per source address and one for everyone.

A hostile client on the LAN must not turn the pairing listener into a PIN oracle (the PAKE
already allows one guess per handshake, 20 per window) nor into a CPU sink (each handshake
costs a SPAKE2 exponentiation and an ECDSA verification). Time is a parameter: ``allow``
takes ``now_ms`` from the service's clock.
"""

from __future__ import annotations

import ipaddress
import threading
from dataclasses import dataclass

MAX_TRACKED = 1024  # distinct sources remembered; the oldest are forgotten past this


@dataclass(slots=True)
class _Bucket:
    tokens: float
    at_ms: int


class RateLimiter:
    """``per_minute`` requests a minute per source (bursts up to ``burst``).

    There is deliberately no budget shared by all sources: an attacker with a handful of
    addresses could spend it and keep the real user from pairing. What a flood from many
    sources can cost is bounded elsewhere: the pairing server's small worker pool and its
    cap on concurrent calls. An IPv6 source counts by its /64, which one host can fill."""

    def __init__(self, per_minute: float, burst: int) -> None:
        self._rate = per_minute / 60_000
        self._burst = float(burst)
        self._buckets: dict[str, _Bucket] = {}
        self._lock = threading.Lock()

    def allow(self, key: str, now_ms: int) -> bool:
        """Whether one more request from ``key`` fits now (and consume it if so)."""
        key = _source(key)
        with self._lock:
            b = self._buckets.pop(key, None) or _Bucket(self._burst, now_ms)
            self._buckets[key] = b  # re-inserted: dict order is least recently used first
            if len(self._buckets) > MAX_TRACKED:
                del self._buckets[next(iter(self._buckets))]
            b.tokens = min(self._burst, b.tokens + max(0, now_ms - b.at_ms) * self._rate)
            b.at_ms = now_ms
            if b.tokens < 1:
                return False
            b.tokens -= 1
            return True


def _source(address: str) -> str:
    """The unit a limit counts: the address, or an IPv6 address's /64 network."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if ip.version == 6:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return address


def peer_host(peer: str) -> str:
    """The source address of a gRPC peer string (``ipv4:1.2.3.4:5``, ``ipv6:[::1]:5``)."""
    kind, _, rest = peer.partition(":")
    if kind == "ipv6" and rest.startswith("["):
        return rest[1 : rest.find("]")]
    if kind == "ipv4":
        return rest.rpartition(":")[0]
    return peer
