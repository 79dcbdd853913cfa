"""The daemon's PKI on disk: ``certs/`` with ``ca.key``, ``ca.crt``, ``server.key``,
``server.crt``.

``load_or_create`` is called at every daemon start (and by the CLI before it prints a pairing
address). It creates what is missing and never regenerates over a key: the CA key is the
identity every paired device trusts, so losing it must be loud (``CertError`` telling the
operator to restore it or start over), never papered over with a fresh CA. Everything derived
from the keys (the certificates) is reissued when missing, expired, about to expire, or not
naming every host the daemon is reached by.

Two processes may run it at once (a daemon starting while ``palyra`` runs): keys are created
with link semantics (``keys.write_private_key``), so exactly one key wins and the loser loads
it; a missing CA certificate is created the same way. Server certificates are replaced
atomically, and either racer's certificate is valid for the same key.
"""

from __future__ import annotations

import dataclasses
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from . import _fs, san
from .authority import (
    SERVER_VALIDITY_DAYS,
    CertificateAuthority,
    create_authority,
    issue_server_certificate,
)
from .checks import is_self_signed_ca, issued_by, not_after_ms, not_before_ms
from .errors import CertError
from .fingerprints import spki_sha256
from .keys import (
    KeyExists,
    cert_pem,
    create_certificate,
    generate_private_key,
    load_certificate,
    load_private_key,
    private_key_pem,
    write_certificate,
    write_private_key,
)

CA_KEY = "ca.key"
CA_CERT = "ca.crt"
SERVER_KEY = "server.key"
SERVER_CERT = "server.crt"

# A CA certificate with less than this left is reissued from the same key (same pin), so a
# server certificate is never cut short by the CA's end.
CA_RENEW_BEFORE_MS = SERVER_VALIDITY_DAYS * 86_400 * 1000


@dataclass(frozen=True)
class DaemonPKI:
    """The CA and the listeners' key and certificate, as loaded from ``directory``."""

    ca: CertificateAuthority
    server_key: ec.EllipticCurvePrivateKey
    server_cert: x509.Certificate
    directory: Path

    def ca_pem(self) -> bytes:
        return cert_pem(self.ca.cert)

    def server_chain_pem(self) -> bytes:
        """Server certificate then CA certificate: a pairing node finds the CA it pins in the
        chain the listener presents."""
        return cert_pem(self.server_cert) + cert_pem(self.ca.cert)

    def server_key_pem(self) -> bytes:
        return private_key_pem(self.server_key)


def san_names(cert: x509.Certificate) -> list[str]:
    """The DNS names and IPs (as strings) in the certificate's SAN, in order."""
    return [
        e.value if isinstance(e, x509.DNSName) else str(e.value)
        for e in san.cert_general_names(cert)
    ]


def server_needs_renewal(
    pki_or_cert: DaemonPKI | x509.Certificate, names: Sequence[str], now_ms: int
) -> bool:
    """True when the server certificate is not yet valid, has less than a third of its life
    left, or lacks one of ``names`` (``CertError`` if one of ``names`` is not a host name)."""
    cert = pki_or_cert.server_cert if isinstance(pki_or_cert, DaemonPKI) else pki_or_cert
    start, end = not_before_ms(cert), not_after_ms(cert)
    if now_ms < start or 3 * (end - now_ms) < (end - start):
        return True
    have = {_normalized(e) for e in san.cert_general_names(cert)}
    return any(_normalized(e) not in have for e in san.general_names(names))


def _normalized(entry: x509.GeneralName) -> x509.GeneralName:
    return x509.DNSName(entry.value.lower()) if isinstance(entry, x509.DNSName) else entry


def renew_server(pki: DaemonPKI, names: Sequence[str], now_ms: int) -> DaemonPKI:
    """A new server certificate for the same key, naming ``names`` and every name of the
    current one, written over ``server.crt`` atomically."""
    cert = issue_server_certificate(
        pki.ca, pki.server_key.public_key(), [*san_names(pki.server_cert), *names], now_ms
    )
    write_certificate(pki.directory / SERVER_CERT, cert)
    return dataclasses.replace(pki, server_cert=cert)


def load_or_create(directory: Path, names: Sequence[str], now_ms: int) -> DaemonPKI:
    """The PKI in ``directory``, creating what is missing (see the module docstring)."""
    _check_directory(directory)
    ca = _load_or_create_ca(directory, now_ms)
    server_key = _load_or_create_key(directory / SERVER_KEY)
    server_cert = _load_or_issue_server(directory, ca, server_key, names, now_ms)
    return DaemonPKI(ca=ca, server_key=server_key, server_cert=server_cert, directory=directory)


def _check_directory(directory: Path) -> None:
    _fs.ensure_dir(directory)
    st = os.stat(directory)
    if not stat.S_ISDIR(st.st_mode):
        raise CertError(f"{directory} is not a directory", "move it aside")
    if st.st_mode & 0o022:
        raise CertError(
            f"the certificate directory {directory} can be written by other users "
            f"(mode {stat.S_IMODE(st.st_mode):04o})",
            f"chmod 700 {directory}",
        )


def lost_ca_key(directory: Path) -> CertError | None:
    """The error for a CA certificate without its key (never papered over with a new CA:
    every paired device trusts the old one), or None. Shared with ``palyra doctor``.

    The certificate is looked at first: the key is always written before it, so a
    certificate without a key is a lost key, not a race with a process creating both."""
    key_path, cert_path = directory / CA_KEY, directory / CA_CERT
    if os.path.lexists(cert_path) and not os.path.lexists(key_path):
        return CertError(
            f"CA key missing: {cert_path} exists but {key_path} does not",
            f"restore {key_path} from a backup, or move {directory} aside to start a new CA; "
            "paired devices must pair again",
        )
    return None


def _load_or_create_key(path: Path) -> ec.EllipticCurvePrivateKey:
    if os.path.lexists(path):
        return load_private_key(path)
    key = generate_private_key()
    try:
        write_private_key(path, key)
    except KeyExists:  # another process created it first: use theirs
        return load_private_key(path)
    return key


def _load_or_create_ca(directory: Path, now_ms: int) -> CertificateAuthority:
    key_path, cert_path = directory / CA_KEY, directory / CA_CERT
    lost = lost_ca_key(directory)
    if lost is not None:
        raise lost
    key = _load_or_create_key(key_path)
    if os.path.lexists(cert_path):
        cert = load_certificate(cert_path)
    else:
        cert = create_authority(now_ms, key).cert
        if not create_certificate(cert_path, cert):
            cert = load_certificate(cert_path)
    if spki_sha256(cert) != spki_sha256(key):
        raise CertError(
            f"the CA certificate {cert_path} does not belong to the CA key {key_path}",
            f"restore the matching pair, or move {cert_path} aside to rebuild it from the key",
        )
    if not is_self_signed_ca(cert):
        raise CertError(
            f"{cert_path} is not a self-signed CA certificate",
            f"move {cert_path} aside to rebuild it from the key",
        )
    if not_after_ms(cert) - now_ms < CA_RENEW_BEFORE_MS:
        cert = create_authority(now_ms, key).cert  # same key: same pin, same signatures
        write_certificate(cert_path, cert)
    return CertificateAuthority(key=key, cert=cert)


def _load_or_issue_server(
    directory: Path,
    ca: CertificateAuthority,
    key: ec.EllipticCurvePrivateKey,
    names: Sequence[str],
    now_ms: int,
) -> x509.Certificate:
    path = directory / SERVER_CERT
    cert: x509.Certificate | None = None
    if os.path.lexists(path):
        try:
            cert = load_certificate(path)
        except CertError:
            cert = None  # derived data: a damaged one is simply issued again
    ours = cert is not None and issued_by(cert, ca.cert) and spki_sha256(cert) == spki_sha256(key)
    if cert is not None and ours and not server_needs_renewal(cert, names, now_ms):
        return cert
    keep = san_names(cert) if cert is not None and ours else []
    new = issue_server_certificate(ca, key.public_key(), [*names, *keep], now_ms)
    write_certificate(path, new)
    return new
