"""Private keys and certificates on disk.

Keys are ECDSA P-256 everywhere: gRPC's TLS stack (BoringSSL) rejects Ed25519 leaf keys, and
one key type means one set of checks. A private key is written once and never replaced
(``write_private_key`` fails if the file exists): replacing the CA key would silently unpair
every device, so that has to be a visible operator decision (moving ``certs/`` aside). A key
file that others may read is refused on load, as ssh does, rather than used and leaked.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from . import _fs
from .errors import CertError

MAX_FILE_BYTES = 64 * 1024  # a P-256 key or certificate PEM is well under 1 KiB


def generate_private_key() -> ec.EllipticCurvePrivateKey:
    """A new ECDSA P-256 (SECP256R1) key."""
    return ec.generate_private_key(ec.SECP256R1())


def private_key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """PKCS#8 PEM, unencrypted: the file's 0600 mode in a 0700 directory is the protection
    (an encrypted key would need a passphrase at every unattended daemon start)."""
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def cert_der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.DER)


def _read_file(path: Path, what: str, *, private: bool) -> bytes:
    """The bytes of a regular file, checking the mode on the opened file (no race between
    the check and the read)."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise CertError(
            f"cannot read the {what} {path}: {reason}",
            "check that the file exists and that this user may read it",
        ) from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise CertError(f"the {what} {path} is not a regular file", "move it aside")
        if private and st.st_mode & 0o077:
            raise CertError(
                f"the {what} {path} is readable by other users "
                f"(mode {stat.S_IMODE(st.st_mode):04o})",
                f"chmod 600 {path}",
            )
        if st.st_size > MAX_FILE_BYTES:
            raise CertError(
                f"the {what} {path} is too large to be a key or certificate ({st.st_size} bytes)",
                "check that the path names the right file",
            )
        with os.fdopen(fd, "rb", closefd=False) as f:
            return f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise CertError(
            f"cannot read the {what} {path}: {exc.strerror or type(exc).__name__}",
            "check the file and its directory",
        ) from exc
    finally:
        os.close(fd)


def load_private_key(path: Path) -> ec.EllipticCurvePrivateKey:
    """The P-256 key in the PEM file ``path``; ``CertError`` naming the file and the fix if it
    cannot be read, is not an unencrypted PEM key, is another key type, or is group/other
    accessible."""
    data = _read_file(path, "private key", private=True)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError as exc:  # encrypted
        raise CertError(
            f"the private key {path} is encrypted",
            "store it unencrypted (PKCS#8 PEM, mode 0600)",
        ) from exc
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CertError(
            f"{path} does not hold a PEM private key",
            "restore the key from a backup, or move the file aside to create a new one",
        ) from exc
    if not isinstance(key, ec.EllipticCurvePrivateKey) or not isinstance(key.curve, ec.SECP256R1):
        raise CertError(
            f"the private key {path} is not an ECDSA P-256 key",
            "palyra uses P-256 keys only: move the file aside to create a new one",
        )
    return key


class KeyExists(CertError):
    """``write_private_key`` found a file at the path (it was left as it was)."""


def write_private_key(path: Path, key: ec.EllipticCurvePrivateKey) -> None:
    """Write ``key`` to ``path`` (0600; the directory 0700 if it is created here) atomically,
    never over an existing file: ``CertError`` "key exists" if ``path`` is taken, including
    by a process that won a race to create it (read that one instead)."""
    try:
        _fs.create_new(path, private_key_pem(key), 0o600)
    except FileExistsError as exc:
        raise KeyExists(
            f"key exists: {path} was not replaced",
            "a private key is never overwritten: move it aside first if it must be replaced",
        ) from exc


def write_certificate(path: Path, cert: x509.Certificate | bytes) -> None:
    """Write a certificate (an ``x509.Certificate`` or PEM bytes) to ``path``, 0644,
    replacing the previous one atomically (readers see the old or the new one)."""
    data = cert if isinstance(cert, bytes) else cert_pem(cert)
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise CertError(f"not writing {path}: the data is not a PEM certificate")
    _fs.replace(path, data, 0o644)


def create_certificate(path: Path, cert: x509.Certificate) -> bool:
    """Write ``cert`` to ``path`` only if no file is there; False if one is (then the caller
    loads it: this is how two processes creating the same certificate agree on one)."""
    try:
        _fs.create_new(path, cert_pem(cert), 0o644)
    except FileExistsError:
        return False
    return True


def load_certificate(path: Path) -> x509.Certificate:
    """The (first) certificate in the PEM file ``path``; ``CertError`` naming the file."""
    data = _read_file(path, "certificate", private=False)
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError as exc:
        raise CertError(
            f"{path} does not hold a PEM certificate",
            "move the file aside: a missing certificate is issued again",
        ) from exc
