"""The daemon's certificate authority and the two kinds of certificates it issues.

The CA is self-signed, ECDSA P-256, valid 10 years, and may sign leaves only
(``path_length=0``). It issues:

- the **server** certificate of both listeners: EKU serverAuth, SANs for every name and IP
  the daemon is reached by (a node checks the dialled host against them), 90 days;
- **device** certificates: EKU clientAuth only, one SAN ``URI:palyra:device:<id>``. The daemon
  sets every field itself and takes only the public key from the CSR, so a node cannot ask
  for serverAuth, a CA bit, another device's id or a longer life.

Because device certificates chain to the same CA as the server's, "chains to the pinned CA"
does not prove a listener is the daemon: a node also requires serverAuth (``verify``).

All certificates are backdated 5 minutes (``BACKDATE_S``) so a peer whose clock is a little
behind accepts a fresh one, and none outlives the CA that signed it.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from . import san
from ._time import ms_to_datetime
from .checks import not_after_ms, not_before_ms
from .errors import CertError
from .fingerprints import spki_sha256
from .keys import generate_private_key

__all__ = [
    "BACKDATE_S",
    "CA_VALIDITY_DAYS",
    "DEVICE_ID_RE",
    "DEVICE_URI_PREFIX",
    "MIN_DEVICE_TTL_S",
    "SERVER_VALIDITY_DAYS",
    "CertificateAuthority",
    "create_authority",
    "device_id_of",
    "issue_device_certificate",
    "issue_server_certificate",
    "not_after_ms",
    "not_before_ms",
]

CA_VALIDITY_DAYS = 3650
SERVER_VALIDITY_DAYS = 90
BACKDATE_S = 300
MIN_DEVICE_TTL_S = 30
DEVICE_URI_PREFIX = "palyra:device:"
DEVICE_ID_RE = re.compile(r"[A-Za-z0-9_-]{1,64}")
SERVER_CN_FALLBACK = "palyrad"


@dataclass(frozen=True)
class CertificateAuthority:
    """The CA's key and its (self-signed) certificate."""

    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @property
    def spki_sha256(self) -> str:
        """The CA pin: what a QR code carries and a node stores (survives a reissued CA
        certificate, since it names the key)."""
        return spki_sha256(self.cert)


def _require_p256(public_key: object, what: str) -> ec.EllipticCurvePublicKey:
    if not isinstance(public_key, ec.EllipticCurvePublicKey) or not isinstance(
        public_key.curve, ec.SECP256R1
    ):
        raise CertError(f"the {what} key is not an ECDSA P-256 key", "use a P-256 key")
    return public_key


def _window(
    ca: CertificateAuthority | None, now_ms: int, life_s: int
) -> tuple[dt.datetime, dt.datetime]:
    """(not_before, not_after): backdated start, end clamped to the CA's end."""
    start = ms_to_datetime(now_ms) - dt.timedelta(seconds=BACKDATE_S)
    end = ms_to_datetime(now_ms) + dt.timedelta(seconds=life_s)
    if ca is not None:
        end = min(end, ca.cert.not_valid_after_utc)
    if end <= start:
        raise CertError("the CA certificate has expired: nothing it signs would be valid")
    return start, end


def _leaf_builder(
    ca: CertificateAuthority,
    public_key: ec.EllipticCurvePublicKey,
    common_name: str,
    now_ms: int,
    life_s: int,
    usage: x509.ObjectIdentifier,
    names: list[x509.GeneralName],
) -> x509.CertificateBuilder:
    start, end = _window(ca, now_ms, life_s)
    ca_public = _require_p256(ca.cert.public_key(), "CA")
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .issuer_name(ca.cert.subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(digital_signature=True), critical=True)
        .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_public), critical=False
        )
    )


def _key_usage(*, digital_signature: bool = False, ca: bool = False) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=digital_signature,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def create_authority(
    now_ms: int,
    key: ec.EllipticCurvePrivateKey | None = None,
    common_name: str = "Palyra daemon CA",
) -> CertificateAuthority:
    """A new self-signed CA certificate, for ``key`` (a new key if None). Given an existing
    key, the new certificate keeps the CA's pin (SPKI) and still verifies everything the
    key signed before."""
    if not common_name.strip():
        raise CertError("the CA needs a non-empty common name")
    key = key if key is not None else generate_private_key()
    public = _require_p256(key.public_key(), "CA")
    start, end = _window(None, now_ms, CA_VALIDITY_DAYS * 86_400)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name[:64])])
    ski = x509.SubjectKeyIdentifier.from_public_key(public)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(digital_signature=True, ca=True), critical=True)
        .add_extension(ski, critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False
        )
        .sign(key, hashes.SHA256())
    )
    return CertificateAuthority(key=key, cert=cert)


def issue_server_certificate(
    ca: CertificateAuthority,
    public_key: ec.EllipticCurvePublicKey,
    names: Sequence[str],
    now_ms: int,
    validity_s: int = SERVER_VALIDITY_DAYS * 86_400,
) -> x509.Certificate:
    """The listeners' certificate: SAN for each of ``names`` (IP or DNS name; empty ones and
    duplicates skipped; ``CertError`` for one that is neither), EKU serverAuth."""
    if isinstance(names, str):
        raise CertError("names must be a list of host names, not one string")
    if validity_s <= 0:
        raise CertError(f"invalid server certificate validity {validity_s} s")
    entries = san.general_names(names)
    if not entries:
        raise CertError("no host name or IP for the server certificate")
    common_name = next(
        (e.value for e in entries if isinstance(e, x509.DNSName) and len(e.value) <= 64),
        SERVER_CN_FALLBACK,
    )
    builder = _leaf_builder(
        ca,
        _require_p256(public_key, "server"),
        common_name,
        now_ms,
        validity_s,
        ExtendedKeyUsageOID.SERVER_AUTH,
        entries,
    )
    return builder.sign(ca.key, hashes.SHA256())


def issue_device_certificate(
    ca: CertificateAuthority,
    public_key: ec.EllipticCurvePublicKey,
    device_id: str,
    now_ms: int,
    ttl_s: int,
) -> x509.Certificate:
    """A device's client certificate: subject CN and SAN URI from ``device_id``, EKU
    clientAuth only, valid ``ttl_s`` seconds from ``now_ms`` (at least ``MIN_DEVICE_TTL_S``)."""
    if ttl_s < MIN_DEVICE_TTL_S:
        raise CertError(
            f"device certificate lifetime {ttl_s} s is too short",
            f"use at least {MIN_DEVICE_TTL_S} s",
        )
    if not isinstance(device_id, str) or not DEVICE_ID_RE.fullmatch(device_id):
        raise CertError(
            f"invalid device id {device_id!r}",
            "1 to 64 characters: letters, digits, '_' and '-'",
        )
    builder = _leaf_builder(
        ca,
        _require_p256(public_key, "device"),
        device_id,
        now_ms,
        ttl_s,
        ExtendedKeyUsageOID.CLIENT_AUTH,
        [x509.UniformResourceIdentifier(DEVICE_URI_PREFIX + device_id)],
    )
    return builder.sign(ca.key, hashes.SHA256())


def device_id_of(cert: x509.Certificate) -> str | None:
    """The device id in the certificate's ``palyra:device:`` SAN URI; None if there is none,
    more than one, or it is not a valid id."""
    try:
        entries = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (x509.ExtensionNotFound, ValueError):
        return None
    uris = [
        u
        for u in entries.get_values_for_type(x509.UniformResourceIdentifier)
        if u.startswith(DEVICE_URI_PREFIX)
    ]
    if len(uris) != 1:
        return None
    device_id = uris[0][len(DEVICE_URI_PREFIX) :]
    return device_id if DEVICE_ID_RE.fullmatch(device_id) else None
