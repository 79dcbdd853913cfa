"""Small predicates on certificates, shared by the daemon's and the node's checks.

Each answers one question without raising, so the callers (``verify``, ``server_files``)
decide which failure is an error and how to word it.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID

from ._time import datetime_to_ms

SERVER_AUTH = ExtendedKeyUsageOID.SERVER_AUTH
CLIENT_AUTH = ExtendedKeyUsageOID.CLIENT_AUTH


def not_before_ms(cert: x509.Certificate) -> int:
    return datetime_to_ms(cert.not_valid_before_utc)


def not_after_ms(cert: x509.Certificate) -> int:
    return datetime_to_ms(cert.not_valid_after_utc)


def valid_at(cert: x509.Certificate, now_ms: int) -> bool:
    """Whether ``now_ms`` lies in the certificate's validity (both ends included, as X.509)."""
    return not_before_ms(cert) <= now_ms <= not_after_ms(cert)


def signed_by(cert: x509.Certificate, issuer_key: object) -> bool:
    """Whether ``cert``'s signature is ECDSA with SHA-256 and verifies with ``issuer_key``
    (the only signature palyra makes; anything else is not ours)."""
    if not isinstance(issuer_key, ec.EllipticCurvePublicKey):
        return False
    try:
        algorithm = cert.signature_hash_algorithm
    except UnsupportedAlgorithm:
        return False
    if not isinstance(algorithm, hashes.SHA256):
        return False
    try:
        issuer_key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return False
    return True


def issued_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    """Whether ``ca`` issued ``cert``: the issuer name matches and the signature verifies."""
    return cert.issuer == ca.subject and signed_by(cert, ca.public_key())


def is_ca(cert: x509.Certificate) -> bool:
    """BasicConstraints present with ca=True (a certificate without it is not a CA)."""
    try:
        return cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except (x509.ExtensionNotFound, ValueError):  # ValueError: malformed extensions
        return False


def is_self_signed_ca(cert: x509.Certificate) -> bool:
    return is_ca(cert) and issued_by(cert, cert)


def has_eku(cert: x509.Certificate, usage: x509.ObjectIdentifier) -> bool:
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except (x509.ExtensionNotFound, ValueError):
        return False
    return usage in eku
