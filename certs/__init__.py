"""Palyra's PKI: a pure library (standard library + ``cryptography``), shared by the daemon
and the node. It never reads the clock (every function takes ``now_ms``) and uses ECDSA P-256
keys with SHA-256 signatures throughout.

- ``errors``: ``CertError`` (message + hint)
- ``keys``: key generation, PEM/DER, crash-safe key and certificate files
- ``fingerprints``: certificate and SPKI SHA-256, constant-time comparison
- ``san``: host names and IPs as subjectAltName entries
- ``checks``: small predicates (issued by, CA, EKU, validity)
- ``authority``: the daemon CA, server and device certificates
- ``csr``: building (node) and checking (daemon) certificate signing requests
- ``server_files``: the daemon's ``certs/`` directory (load, create, renew)
- ``verify``: the node's checks of a listener's chain and of its own certificate
"""

from __future__ import annotations

from .authority import (
    CertificateAuthority,
    create_authority,
    device_id_of,
    issue_device_certificate,
    issue_server_certificate,
    not_after_ms,
    not_before_ms,
)
from .csr import MAX_CSR_BYTES, build_csr, check_csr
from .errors import CertError
from .fingerprints import cert_sha256, cert_sha256_pem, same_fingerprint, spki_sha256
from .keys import (
    cert_der,
    cert_pem,
    generate_private_key,
    load_certificate,
    load_private_key,
    private_key_pem,
    write_certificate,
    write_private_key,
)
from .server_files import (
    DaemonPKI,
    load_or_create,
    renew_server,
    san_names,
    server_needs_renewal,
)
from .verify import fetch_presented_chain, verify_device_certificate, verify_server_chain

__all__ = [
    "MAX_CSR_BYTES",
    "CertError",
    "CertificateAuthority",
    "DaemonPKI",
    "build_csr",
    "cert_der",
    "cert_pem",
    "cert_sha256",
    "cert_sha256_pem",
    "check_csr",
    "create_authority",
    "device_id_of",
    "fetch_presented_chain",
    "generate_private_key",
    "issue_device_certificate",
    "issue_server_certificate",
    "load_certificate",
    "load_or_create",
    "load_private_key",
    "not_after_ms",
    "not_before_ms",
    "private_key_pem",
    "renew_server",
    "same_fingerprint",
    "san_names",
    "server_needs_renewal",
    "spki_sha256",
    "verify_device_certificate",
    "verify_server_chain",
    "write_certificate",
    "write_private_key",
]
