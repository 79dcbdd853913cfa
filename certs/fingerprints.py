"""Fingerprints: what the registry stores, what a QR code pins, what the operator compares.

- ``cert_sha256``: SHA-256 of a certificate's DER. The node listener checks it on every RPC
  against the device registry, so ``cert_sha256_pem`` computes it straight from the PEM that
  gRPC hands over (base64 → DER → hash), without building an X.509 object per call.
- ``spki_sha256``: SHA-256 of the SubjectPublicKeyInfo DER. It names a *key*, not one
  certificate: the CA pin survives a reissued CA certificate, and the operator compares it
  (from the CSR) with what ``palyra-node pair`` prints.

All are lowercase hex; ``same_fingerprint`` compares two in constant time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from .errors import CertError

_BEGIN = b"-----BEGIN CERTIFICATE-----"
_END = b"-----END CERTIFICATE-----"


def cert_sha256(cert: x509.Certificate | bytes) -> str:
    """Hex SHA-256 of the certificate's DER (``bytes`` are taken to be DER)."""
    der = cert if isinstance(cert, bytes) else cert.public_bytes(serialization.Encoding.DER)
    return hashlib.sha256(der).hexdigest()


def pem_to_der(pem: bytes | str) -> bytes:
    """The DER of the first certificate in ``pem``, by decoding its base64 body."""
    data = pem.encode("ascii", "replace") if isinstance(pem, str) else pem
    start = data.find(_BEGIN)
    end = data.find(_END, start + len(_BEGIN)) if start >= 0 else -1
    if start < 0 or end < 0:
        raise CertError("not a PEM certificate (no BEGIN/END CERTIFICATE lines)")
    body = b"".join(data[start + len(_BEGIN) : end].split())
    try:
        der = base64.b64decode(body, validate=True)
    except binascii.Error as exc:
        raise CertError("not a PEM certificate (the body is not base64)") from exc
    if not der:
        raise CertError("not a PEM certificate (empty body)")
    return der


def cert_sha256_pem(pem: bytes | str) -> str:
    """``cert_sha256`` of the first certificate in ``pem`` (equal to it for the same
    certificate); ``CertError`` if ``pem`` holds no certificate block."""
    return hashlib.sha256(pem_to_der(pem)).hexdigest()


def spki_sha256(
    obj: x509.Certificate | ec.EllipticCurvePublicKey | ec.EllipticCurvePrivateKey,
) -> str:
    """Hex SHA-256 of the SubjectPublicKeyInfo DER of a certificate's or a key's public key."""
    if isinstance(obj, x509.Certificate):
        spki = obj.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    else:
        public = obj.public_key() if isinstance(obj, ec.EllipticCurvePrivateKey) else obj
        spki = public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    return hashlib.sha256(spki).hexdigest()


def same_fingerprint(a: str, b: str) -> bool:
    """Whether two hex fingerprints are equal, ignoring case, in constant time (a pin check
    must not tell an attacker how many leading digits matched)."""
    try:
        return hmac.compare_digest(a.lower().encode("ascii"), b.lower().encode("ascii"))
    except UnicodeEncodeError:
        return False
