"""Certificate signing requests: built on the device, checked by the daemon.

The CSR only proves that its sender holds the private key of the public key in it. The daemon
checks that proof and the key type and then ignores everything else in the request (subject,
extensions, attributes): the certificate it issues is built from the daemon's own decisions,
so a CSR cannot ask for more than a device certificate. The size cap bounds the work an
unauthenticated peer on the pairing listener can cause.
"""

from __future__ import annotations

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from .errors import CertError

MAX_CSR_BYTES = 4096
_DEFAULT_NAME = "palyra-node"


def build_csr(key: ec.EllipticCurvePrivateKey, name: str) -> bytes:
    """A DER CSR for ``key`` with subject CN ``name`` (cut to 64 characters; a convenience
    for logs on the device side, the daemon does not read it)."""
    common_name = name.strip()[:64] or _DEFAULT_NAME
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]))
        .sign(key, hashes.SHA256())
    )
    return csr.public_bytes(serialization.Encoding.DER)


def check_csr(der: bytes) -> ec.EllipticCurvePublicKey:
    """The P-256 public key of a valid, self-signed (ECDSA SHA-256) DER CSR; ``CertError``
    saying what is wrong otherwise. Nothing else of the CSR is returned, on purpose."""
    if len(der) > MAX_CSR_BYTES:
        raise CertError(f"the CSR is too large ({len(der)} bytes; at most {MAX_CSR_BYTES})")
    try:
        csr = x509.load_der_x509_csr(der)
    except ValueError as exc:
        raise CertError("the CSR is not a valid DER certificate signing request") from exc
    try:
        public_key = csr.public_key()
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CertError("the CSR's public key cannot be read") from exc
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        raise CertError("the CSR's key is not an ECDSA key: palyra uses P-256 keys only")
    if not isinstance(public_key.curve, ec.SECP256R1):
        raise CertError(
            f"the CSR's key is on curve {public_key.curve.name}: palyra uses P-256 keys only"
        )
    try:
        algorithm = csr.signature_hash_algorithm
    except UnsupportedAlgorithm as exc:
        raise CertError("the CSR's signature algorithm is not supported") from exc
    if not isinstance(algorithm, hashes.SHA256):
        raise CertError("the CSR is not signed with SHA-256")
    try:
        valid = csr.is_signature_valid
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CertError("the CSR's signature cannot be checked") from exc
    if not valid:
        raise CertError("the CSR's signature is invalid: it was not made with its own key")
    return public_key
