"""The device registry in memory: the one check every node RPC passes (SPEC §5).

A call is allowed when the SHA-256 of the peer's certificate (DER) is a certificate the
journal knows for an *active* device, still within the time it may be used (the current
certificate until it expires; a superseded one until an hour after its renewal), and the
device id in the certificate's SAN is that device. The check costs no query: the registry is
a dict rebuilt from the journal whenever ``devices.version()`` moves (the main loop looks
every 200 ms and on every poke; a revocation made in this process refreshes at once).

The PEM → (fingerprint, device id) step is cached per PEM, because gRPC hands the same
certificate text to every call of a connection.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from cryptography import x509

from certs import cert_sha256_pem, device_id_of
from palyrad.journal import Journal
from palyrad.journal.records import Device

MAX_PEM_CACHE = 4096


class DeviceRefused(Exception):
    """The peer may not call: ``reason`` is the one-line message the node shows."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


REVOKED = "device revoked"
UNKNOWN = "unknown certificate (pair this device: palyra-node pair ...)"
NO_CERTIFICATE = "a client certificate is required"


@dataclass(frozen=True, slots=True)
class Identity:
    """Who is calling: the device and the certificate it called with."""

    device_id: str
    cert_sha256: str
    cert_expires_ms: int
    name: str


@dataclass(frozen=True, slots=True)
class _Entry:
    device_id: str
    name: str
    active: bool
    usable_until_ms: int  # expiry (current) or the end of the grace period (superseded)
    expires_ms: int
    current: bool


class DeviceRegistry:
    """Fingerprint → device, rebuilt from the journal on change; safe to read from any
    thread (a rebuild swaps whole dicts)."""

    def __init__(self) -> None:
        self._by_fp: dict[str, _Entry] = {}
        self._version = -1
        self._pem_cache: dict[bytes, tuple[str, str | None]] = {}
        self._lock = threading.Lock()

    def refresh(self, journal: Journal, *, force: bool = False) -> bool:
        """Rebuild from the journal when its device version moved; True if it did."""
        version = journal.devices.version()
        if version == self._version and not force:
            return False
        with self._lock:
            self._by_fp = self._index(journal.devices.all())
            self._version = version
        return True

    @staticmethod
    def _index(devices: list[Device]) -> dict[str, _Entry]:
        index: dict[str, _Entry] = {}
        for d in devices:
            active = d.state == "active"
            index[d.cert_sha256] = _Entry(
                d.device_id, d.name, active, d.cert_expires_ms, d.cert_expires_ms, True
            )
            if d.prev_cert_sha256 and d.prev_valid_until_ms is not None:
                index[d.prev_cert_sha256] = _Entry(
                    d.device_id, d.name, active, d.prev_valid_until_ms, d.cert_expires_ms, False
                )
        return index

    def _fingerprint(self, pem: bytes) -> tuple[str, str | None]:
        hit = self._pem_cache.get(pem)
        if hit is None:
            try:
                device_id = device_id_of(x509.load_pem_x509_certificate(pem))
                hit = (cert_sha256_pem(pem), device_id)
            except ValueError:
                hit = ("", None)
            if len(self._pem_cache) >= MAX_PEM_CACHE:
                self._pem_cache.clear()
            self._pem_cache[pem] = hit
        return hit

    def identify(self, pem: bytes | None, now_ms: int) -> Identity:
        """The calling device, or DeviceRefused with the reason to show."""
        if not pem:
            raise DeviceRefused(NO_CERTIFICATE)
        fp, san_id = self._fingerprint(pem)
        entry = self._by_fp.get(fp)
        if entry is None or san_id != entry.device_id:
            raise DeviceRefused(UNKNOWN)
        if not entry.active:
            raise DeviceRefused(REVOKED)
        if now_ms >= entry.usable_until_ms:
            raise DeviceRefused(
                "certificate expired (pair again: palyra-node pair ...)"
                if entry.current
                else "certificate superseded by a renewal (use the newest certificate)"
            )
        return Identity(entry.device_id, fp, entry.expires_ms, entry.name)

    def is_current(self, identity: Identity) -> bool:
        """Whether ``identity`` called with its device's newest certificate."""
        entry = self._by_fp.get(identity.cert_sha256)
        return entry is not None and entry.current

    def still_valid(self, identity: Identity, now_ms: int) -> bool:
        """Re-check an open stream's caller (revocation ends streams within a second)."""
        entry = self._by_fp.get(identity.cert_sha256)
        return (
            entry is not None
            and entry.active
            and entry.device_id == identity.device_id
            and now_ms < entry.usable_until_ms
        )
